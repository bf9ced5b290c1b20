"""``python -m lenet_exp.resume <run folder>``: continue a run in place from its last checkpoint.

Same folder, same overrides (so the same config, as long as conf/ is unchanged), same
TensorBoard run, from the epoch after the one ``checkpoints/last.ckpt`` holds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from lenet_exp.errors import UserError, exit_on_user_error


def resume_command(run_dir: str | Path) -> list[str]:
    """The ``python -m lenet_exp ...`` command line that continues ``run_dir``."""
    run = Path(run_dir).resolve()
    overrides_file, last = run / ".hydra" / "overrides.yaml", run / "checkpoints" / "last.ckpt"
    if not overrides_file.is_file():
        raise UserError(
            f"{run} is not a lenet_exp run folder (it has no .hydra/overrides.yaml); give the folder "
            "a run printed at its end, such as outputs/<date>/<time>."
        )
    if not last.is_file():
        raise UserError(f"{run} has no checkpoints/last.ckpt (no epoch was completed); start the run again instead.")
    overrides = [o for o in OmegaConf.load(overrides_file) if not o.lstrip("+~").startswith("ckpt_path=")]
    # hydra.mode=RUN: a sweep job (an Optuna trial's overrides name hparams_search) resumes as one run
    return [
        sys.executable,
        "-m",
        "lenet_exp",
        *overrides,
        "hydra.mode=RUN",
        f"hydra.run.dir='{run}'",
        f"ckpt_path='{last}'",
    ]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.exit("usage: python -m lenet_exp.resume <run folder>")
    command = exit_on_user_error(lambda: resume_command(argv[0]))
    print("resuming: python", " ".join(command[1:]), flush=True)
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
