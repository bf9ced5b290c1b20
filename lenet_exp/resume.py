"""``python -m lenet_exp.resume <run folder> [trust=your.Class,...] [key=value ...]``: finish a run in place.

Replays the run's own config, as it was composed when the run started (its ``.hydra/config.yaml``),
whatever ``conf/`` holds today: same folder, same TensorBoard run, from the epoch after the one
``checkpoints/last.ckpt`` holds (from the start when no epoch was completed). The folder is data:
every class its config names must be allowed (lenet_exp's own, torch optimizers and schedulers,
and the classes given with ``trust=``) before anything is built; it writes only inside itself and
contacts no server its config names, unless the user gives that key again (``key=value``, such as
``callbacks.checkpoint.dirpath=/elsewhere``; runtime/confine.py).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from lenet_exp.errors import UserError, exit_on_user_error, fail, first_line
from lenet_exp.runtime.cli import answer_help, names
from lenet_exp.runtime.confine import confinable
from lenet_exp.runtime.console import log_to_console
from lenet_exp.runtime.run_folder import hydra_file, last_checkpoint, metrics_file

log = logging.getLogger("lenet_exp")
USAGE = "usage: python -m lenet_exp.resume <run folder> [trust=your.Class,...] [key=value for a folder or server]"


def read_run(run: Path) -> tuple[Any, Any]:
    """The run's job config and Hydra config, as plain YAML values (nothing is built from them)."""
    from omegaconf import DictConfig, OmegaConf

    files = [hydra_file(run, "config.yaml"), hydra_file(run, "hydra.yaml")]
    if not all(f.is_file() for f in files):
        raise UserError(
            f"{run} is not a lenet_exp run folder (it has no .hydra/config.yaml and .hydra/hydra.yaml); give the "
            "folder a run printed at its end, such as outputs/<date>/<time>."
        )
    try:
        cfg, stored = (OmegaConf.load(f) for f in files)
        hydra = stored.hydra if isinstance(stored, DictConfig) else None
        if not isinstance(cfg, DictConfig) or not isinstance(hydra, DictConfig) or "run" not in hydra:
            raise ValueError("not a mapping of a run's settings")
    except Exception as err:  # YAML syntax, unreadable bytes, missing keys: all mean "damaged"
        raise UserError(
            f"{run}/.hydra cannot be read ({first_line(err)}); the folder is damaged, so start the run again instead."
        ) from err
    return cfg, hydra


def as_this_process(cfg: Any, hydra: Any, run: Path) -> None:
    """Make ``${hydra:...}`` in the run's config mean what it meant in the run, written into ``run``."""
    from hydra.conf import HydraConf
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf, open_dict

    setup_globals()  # the ${hydra:...} and ${now:...} resolvers, as in the run
    schema = OmegaConf.structured(HydraConf)
    OmegaConf.set_struct(schema, False)  # keys that plugins (launchers, sweepers) added to the run's file
    try:
        hydra = OmegaConf.merge(schema, hydra)
        hydra.runtime.output_dir, hydra.run.dir, hydra.mode = str(run), str(run), "RUN"  # a sweep job resumes alone
        full = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
        with open_dict(full):
            full.hydra = hydra
    except Exception as err:  # values of the wrong type: the file was edited or damaged
        raise UserError(
            f"{hydra_file(run, 'hydra.yaml')} cannot be used ({first_line(err)}); start the run again."
        ) from err
    HydraConfig.instance().set_config(full)


def resume(
    run_dir: str | Path, trust: list[str] = (), job_name: str | None = None, given: list[str] = ()
) -> dict[str, Any]:
    """Finish the run in ``run_dir``; return its metrics.json. ``job_name`` names the log file
    (Lightning gives DDP ranks 1.. their own, ``hydra.job.name=train_ddp_process_N``); ``given`` are
    the user's ``key=value`` for folders to write into or servers the stored config names."""
    run = Path(run_dir).expanduser().resolve()
    if not run.is_dir():
        raise UserError(f"{run} is not a folder; give a run folder, such as outputs/<date>/<time>.")
    stored, hydra = read_run(run)
    if metrics_file(run).is_file():
        log.info(f"{run} is finished (it has metrics.json); nothing to resume.")
        return json.loads(metrics_file(run).read_text())
    if (stored.get("trainer") or {}).get("enable_checkpointing") is False:
        raise UserError(
            f"{run} was run with trainer.enable_checkpointing=false, so it kept no checkpoint to resume from; "
            f"run it again (its overrides are in {hydra_file(run, 'overrides.yaml')})."
        )

    # torch and Lightning are imported only after this: they take seconds to load, and a wrong or busy
    # folder is said at once.
    from lenet_exp.runtime.lock import run_lock

    with run_lock(run):  # before anything is written into the folder
        return _resume(run, stored, hydra, trust, job_name, given)


def _resume(run: Path, stored: Any, hydra: Any, trust: list[str], job_name: str | None, given: list[str]) -> dict:
    from omegaconf import OmegaConf

    from lenet_exp.runtime.atomic import AppendLog
    from lenet_exp.runtime.checkpoints import GIT_KEY, load_checkpoint
    from lenet_exp.runtime.confine import check_confined, give_again
    from lenet_exp.runtime.results import git_revision
    from lenet_exp.runtime.trust import check_targets
    from lenet_exp.runtime.versions import check_version

    as_this_process(stored, hydra, run)
    last = last_checkpoint(run)
    checkpoint = load_checkpoint(last, trust) if last.is_file() else None
    source, then = str(hydra_file(run, "config.yaml")), (checkpoint or {}).get(GIT_KEY, "unknown")
    config, keys = give_again(check_targets(stored, source, trust), given, source, USAGE)
    check_confined(config, run, source, keys)  # writes only inside the folder, contacts no server it names
    check_version(config, source, then)  # every key still means something to this version's classes
    cfg = OmegaConf.create(config)
    cfg.trusted_targets = list(trust)  # what the user allows now, not what the folder says
    if checkpoint is not None:
        now = git_revision()
        if "unknown" not in (then, now) and then != now:
            log.warning(f"note: {run} was started by the code at {then}; the code now is {now}. Going on.")
        cfg.ckpt_path = str(last)
        log.info(f"resuming {run} after epoch {checkpoint['epoch'] + 1}")
    else:
        log.info(f"{run} has no completed epoch: running it again from the start")
    log_file = AppendLog(run / f"{job_name or hydra.job.name}.log")  # appends, as the run did
    log_file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    logging.getLogger().addHandler(log_file)

    from lenet_exp.train import train

    return train(cfg, finishing=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    answer_help(argv, __doc__)
    log_to_console()
    folders = [a for a in argv if "=" not in a]
    if len(folders) != 1 or folders[0].startswith("-"):
        fail(f"give one run folder; {USAGE}")
    # Lightning starts DDP ranks 1.. as this command plus hydra.run.dir, hydra.job.name, hydra.output_subdir
    pairs = [a for a in argv if "=" in a]
    hydra = [a for a in pairs if a.startswith("hydra.")]
    trust = [a.split("=", 1)[1] for a in pairs if a.startswith("trust=")]
    given = [a for a in pairs if a not in hydra and not a.startswith("trust=")]
    unknown = [a.split("=", 1)[0] for a in given if not confinable(a.split("=", 1)[0])]
    if unknown:
        fail(f"{unknown[0]} is not an argument of this command; {USAGE}")
    job_name = next((a.split("=", 1)[1] for a in hydra if a.startswith("hydra.job.name=")), None)
    exit_on_user_error(lambda: resume(folders[0], names(",".join(trust)), job_name, given))


if __name__ == "__main__":
    main()
