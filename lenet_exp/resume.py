"""``python -m lenet_exp.resume <run folder> [trust=your.Class,...] [key=value ...]``: finish a run in place.

Replays the run's own config, as it was composed when the run started (its ``.hydra/config.yaml``),
whatever ``conf/`` holds today: same folder, same TensorBoard run, from the epoch after the one
``checkpoints/last.ckpt`` holds (from the start when no epoch was completed). The folder is data:
every class its config names must be allowed (lenet_exp's own, torch optimizers and schedulers,
and the classes given with ``trust=``) before anything is built; it writes only inside itself and
contacts no server its config names, unless the user gives that key again (``key=value``, such as
``callbacks.checkpoint.dirpath=/elsewhere``). All of that is the gate every stored config passes
(runtime/stored_config.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lenet_exp.errors import UserError, exit_on_user_error, fail, first_line, user_error
from lenet_exp.runtime.cli import answer_help, names
from lenet_exp.runtime.confine import confinable
from lenet_exp.runtime.console import log_to_console, traceback_to_log_file
from lenet_exp.runtime.lock import launched_rank
from lenet_exp.runtime.run_folder import last_checkpoint, log_file, metrics_file, overrides_file, value_at

if TYPE_CHECKING:
    from lenet_exp.runtime.stored_config import StoredRun

log = logging.getLogger("lenet_exp")
USAGE = "usage: python -m lenet_exp.resume <run folder> [trust=your.Class,...] [key=value for a folder or server]"


def resume(
    run_dir: str | Path, trust: list[str] = (), job_name: str | None = None, given: list[str] = ()
) -> dict[str, Any]:
    """Finish the run in ``run_dir``; return its metrics.json. ``job_name`` names the log file
    (Lightning gives DDP ranks 1.. their own, ``hydra.job.name=train_ddp_process_N``); ``given`` are
    the user's ``key=value`` for folders to write into or servers the stored config names."""
    from omegaconf import OmegaConf

    from lenet_exp.runtime.stored_config import read_run

    run = Path(os.path.expanduser(run_dir)).resolve()
    if not run.is_dir():
        raise UserError(f"{run} is not a folder; give a run folder, such as outputs/<date>/<time>.")
    files = read_run(run)
    if metrics_file(run).is_file():
        try:
            metrics = json.loads(metrics_file(run).read_bytes())
        except (OSError, ValueError) as err:
            metrics = f"{type(err).__name__}: {first_line(err)}"
        if not isinstance(metrics, dict):
            raise UserError(
                f"{metrics_file(run)} cannot be read ({metrics if isinstance(metrics, str) else 'no mapping'}), so "
                "the run's record is damaged; remove it and resume again to test the last checkpoint and write it anew."
            )
        log.info(f"{run} is finished (it has metrics.json); nothing to resume.")
        return metrics
    # read as written, not resolved: the folder's values pass the gate (in _resume) before any is resolved
    if value_at(OmegaConf.to_container(files.config, resolve=False), "trainer", "enable_checkpointing") is False:
        raise UserError(
            f"{run} was run with trainer.enable_checkpointing=false, so it kept no checkpoint to resume from; "
            f"run it again (its overrides are in {overrides_file(run)})."
        )

    # torch and Lightning are imported only after this: they take seconds to load, and a wrong or busy
    # folder is said at once.
    from lenet_exp.runtime.lock import run_lock

    with run_lock(run):  # before anything is written into the folder
        return _resume(files, trust, job_name, given)


def _append_log(run: Path, job_name: str) -> logging.Handler:
    """The handler that appends to the run's log file, as the run did; one that cannot be opened (a file made
    immutable, a folder at its path) is one sentence, before anything in the folder has changed."""
    from lenet_exp.runtime.faults import write_advice, write_fault
    from lenet_exp.runtime.writes import AppendLog

    try:
        return AppendLog(log_file(run, job_name))
    except OSError as err:
        if (reason := write_fault(err)) is None:
            raise
        raise UserError(
            f"{log_file(run, job_name)} cannot be appended to ({reason}), and resume keeps the run's log there; "
            f"{write_advice(err)}, then resume again (nothing in {run} was changed)."
        ) from None


def _no_checkpoint_elsewhere(cfg: Any, run: Path) -> None:
    """Refuse to start again a run whose checkpoints were kept outside its folder (callbacks.checkpoint.dirpath
    given): resume continues from the folder's checkpoints/last.ckpt only, and the run started again would replace
    the checkpoint it kept there."""
    from omegaconf import OmegaConf

    dirpath = OmegaConf.select(cfg, "callbacks.checkpoint.dirpath", default=None)
    filename = OmegaConf.select(cfg, "callbacks.checkpoint.filename", default=None) or "last"
    if not dirpath or Path(dirpath).resolve() == last_checkpoint(run).parent.resolve():
        return
    kept = Path(dirpath) / f"{filename}.ckpt"
    if kept.is_file():
        raise UserError(
            f"{run} kept its checkpoints in {dirpath} (callbacks.checkpoint.dirpath), outside its folder, and resume "
            f"continues from the folder's checkpoints/last.ckpt only: started again, the run would replace {kept}; "
            f"train on from it into a new folder with python -m lenet_exp ckpt_path={kept} and the settings in "
            f"{overrides_file(run)}."
        )


def _resume(files: StoredRun, trust: list[str], job_name: str | None, given: list[str]) -> dict:
    from lenet_exp.runtime.results import git_revision
    from lenet_exp.runtime.stored_config import GIT_KEY, open_stored

    run = files.run
    stored = open_stored(files, trust, given=given, usage=USAGE)  # the gate: its config and last.ckpt, as data
    cfg = stored.config
    cfg.trusted_targets = list(trust)  # what the user allows now, not what the folder says
    logging.raiseExceptions = False  # a full disk under the log file: the run's own writes report it, once
    appended = _append_log(run, job_name or files.job_name)  # appends, as the run did; from here on, so
    appended.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    logging.getLogger().addHandler(appended)  # that the log says where the run resumed, and with which code
    if stored.checkpoint is not None:
        then, now = stored.checkpoint.get(GIT_KEY, "unknown"), git_revision()
        if "unknown" not in (then, now) and then != now:
            log.warning(f"note: {run} was started by the code at {then}; the code now is {now}. Going on.")
        cfg.ckpt_path = str(stored.checkpoint_path)
        log.info(f"resuming {run} after epoch {stored.checkpoint['epoch'] + 1}")
    else:
        _no_checkpoint_elsewhere(cfg, run)
        log.info(  # a run stopped in its first epoch, or one whose checkpoints were removed or never kept
            f"{run} holds no checkpoints/last.ckpt to continue from: running it again from the start"
        )

    from lenet_exp.runtime.checks import check_run
    from lenet_exp.train import train

    try:  # checked as a new run's settings are; resume takes no key=value for them, so the file is what to correct
        tested = check_run(cfg, new=False)
    except UserError as err:
        raise UserError(
            f"{stored.source} holds a setting that cannot run here: {str(err).rstrip('.')}; correct it in that "
            "file and resume again."
        ) from None
    try:
        return train(cfg, finishing=True, tested=tested, opened=stored)  # the checkpoint the gate read, not read again
    except Exception as err:
        if user_error(err) is None:  # a fault of code: its traceback in the log too, as the training command's
            traceback_to_log_file(run)
        raise


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    answer_help(argv, __doc__, __file__)
    log_to_console()
    # a folder's name may hold "=" (a sweep's job folders named by hydra.job.override_dirname: data.batch_size=64)
    folders = [a for a in argv if "=" not in a or Path(os.path.expanduser(a)).is_dir()]
    if len(folders) != 1 or folders[0].startswith("-"):
        fail(f"give one run folder; {USAGE}")
    # Lightning starts DDP ranks 1.. as this command plus hydra.run.dir, hydra.job.name, hydra.output_subdir
    pairs = [a for a in argv if a not in folders]
    hydra = [a for a in pairs if a.startswith("hydra.")]
    trust = [a.split("=", 1)[1] for a in pairs if a.startswith("trust=")]
    given = [a for a in pairs if a not in hydra and not a.startswith("trust=")]
    unknown = [a.split("=", 1)[0] for a in given if not confinable(a.split("=", 1)[0])]
    if hydra and not launched_rank():  # the user's: a run resumes in its own folder, with its own settings
        unknown = [a.split("=", 1)[0] for a in hydra] + unknown
    if unknown:
        fail(f"{unknown[0]} is not an argument of this command; {USAGE}")
    job_name = next((a.split("=", 1)[1] for a in hydra if a.startswith("hydra.job.name=")), None)
    exit_on_user_error(lambda: resume(folders[0], names(",".join(trust)), job_name, given))


if __name__ == "__main__":
    main()
