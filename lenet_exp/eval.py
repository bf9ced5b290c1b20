"""``python -m lenet_exp.eval ckpt_path=<ckpt> [accelerator=auto] [data.key=value ...] [trust=your.Class,...]``

Evaluates a checkpoint on the 10,000 test images in one process, prints the accuracy and
appends it to ``evaluations.jsonl`` in the checkpoint's run folder. The model and data
settings come from the config stored in the checkpoint; ``data.*`` overrides change them.
A class of your own that the checkpoint names is built only when you name it with ``trust=``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from lenet_exp.errors import UserError, exit_on_user_error, first_line
from lenet_exp.runtime.cli import answer_help, key_values, names, require
from lenet_exp.runtime.console import log_to_console

log = logging.getLogger("lenet_exp")


def evaluate(
    ckpt_path: str | Path, accelerator: str = "auto", overrides: list[str] = (), trust: list[str] = ()
) -> dict[str, Any]:
    """Test-set metrics of the checkpoint at ``ckpt_path``, also appended to its run's evaluations.jsonl."""
    from lenet_exp.runtime.checks import check_accelerator, checkpoint_file

    check_accelerator(accelerator, key="accelerator")  # before any loading
    path = checkpoint_file(ckpt_path)  # and before Lightning takes its seconds to load

    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from lenet_exp.runtime.checkpoints import rebuild
    from lenet_exp.runtime.results import append_jsonl, flat_metrics, git_revision
    from lenet_exp.runtime.run_folder import evaluations_file
    from lenet_exp.runtime.stored_config import open_stored

    stored = open_stored(path, trust, given=overrides, builds=("model", "data"))  # it builds both
    module = rebuild(stored)
    datamodule = instantiate(stored.config.data)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    try:
        trainer.test(module, datamodule=datamodule, verbose=False)
    except SystemExit as stop:  # Lightning's answer to Ctrl-C or SIGTERM, after its own line
        from lenet_exp.runtime.faults import interrupt_status

        log.error(f"interrupted before the test ended; nothing was recorded in {evaluations_file(stored.run)}")
        raise SystemExit(interrupt_status(stop)) from stop
    result = {
        "ckpt_path": str(path.resolve()),
        "epochs": stored.checkpoint["epoch"] + 1,  # saved at an epoch's end, Lightning stores that epoch's index
        **flat_metrics(trainer.callback_metrics),
        "images": len(datamodule.splits["test"]),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "git_rev": git_revision(),
    }
    record = evaluations_file(stored.run)
    said = (
        f"test acc {result['test_acc']:.4f} on {result['images']} images: {path} "
        f"(after {result['epochs']} epoch{'s' * (result['epochs'] != 1)})"
    )
    try:
        append_jsonl(record, result)
    except OSError as err:  # a read-only or full run folder: the result is said all the same, then the fault
        from lenet_exp.runtime.faults import write_advice, write_fault

        log.info(said)
        reason = write_fault(err) or first_line(err)
        raise UserError(
            f"the result above was not recorded in {record} ({reason}); {write_advice(err)} to keep it there."
        ) from None
    log.info(f"{said}; recorded in {record}")
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    answer_help(argv, __doc__, __file__)
    log_to_console()
    usage = (
        "usage: python -m lenet_exp.eval ckpt_path=<file.ckpt> [accelerator=auto|cpu|gpu] [data.key=value] "
        "[trust=your.Class,...]"
    )
    args, overrides = key_values(argv, usage, {"ckpt_path", "accelerator", "trust"}, prefix="data.")
    require(args, ("ckpt_path",), usage)
    accelerator, trust = str(args.get("accelerator", "auto")), names(args.get("trust"))
    exit_on_user_error(lambda: evaluate(args["ckpt_path"], accelerator, overrides, trust))


if __name__ == "__main__":
    main()
