"""``python -m lenet_exp [overrides]`` (or ``lenet-exp``): one training run (or a sweep with ``-m``) from conf/."""

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lenet_exp.errors import (
    UserError,
    chain,
    check_resolves,
    fail,
    first_line,
    interruption,
    say,
    sigterm_interrupts,
    unwrap_user_errors,
    user_error,
)

# The configs, as an absolute path so that every command finds them from any folder: an installed
# wheel carries conf/ as lenet_exp/conf/; a checkout (also installed editable) has no such folder and
# reads the repository's conf/ itself, so edits to conf/ apply at once.
_PACKAGE = Path(__file__).resolve().parent
CONF_DIR = str(_PACKAGE / "conf" if (_PACKAGE / "conf" / "config.yaml").is_file() else _PACKAGE.parent / "conf")
CONFIG_NAME = "config"


def job(cfg: DictConfig) -> dict[str, Any]:
    """One run's work, for the command line, lenet_exp.run and each job of a sweep alike: check, train,
    return metrics.json's values (lenet_exp's Optuna sweeper tells the study its ``optimized_metric``, or
    that the job was pruned). A user error comes out as the UserError itself (Hydra's instantiate may have
    wrapped it), so that Hydra marks a sweep's job failed and runs the others (hydra_callbacks.FailedJobs)."""
    from lenet_exp.runtime.checks import check_run, check_top_level

    logging.raiseExceptions = False  # a full disk under the log file: the run's own writes report it, once
    try:
        with unwrap_user_errors():
            check_resolves(cfg)  # ${oc.env:NAME} of a variable not set, say: the key named, not a traceback later
            check_top_level(cfg)  # a typo of a key in a config file (a new run's: a stored one is data)
            cfg = from_the_launch_folder(cfg)
            tested = check_run(cfg)  # a wrong setting is said at once, before torch and Lightning take seconds
            from lenet_exp.train import train  # imported here so that --help and --cfg stay fast too

            return train(cfg, tested=tested)
    except Exception as err:
        if user_error(err) is None:  # a fault of code (a network of one's own, say): its traceback in the log too
            from lenet_exp.runtime.console import traceback_to_log_file

            traceback_to_log_file()
        raise
    except KeyboardInterrupt as err:  # outside Lightning's loops (which say their own): the imports, building the run
        from lenet_exp.runtime.run_folder import kept, metrics_file

        run = Path(cfg.run_dir)
        done = f"its result is complete in {metrics_file(run)}" if metrics_file(run).is_file() else kept(run)
        what, status = interruption(err)
        say(f"interrupted ({what}); {done}")
        raise SystemExit(status) from None


# The settings that name a file or folder to read: typed relative to the folder the command started in.
USER_PATHS = ("data.data_dir", "ckpt_path")


def from_the_launch_folder(cfg: DictConfig) -> DictConfig:
    """With ``hydra.job.chdir=true`` Hydra runs the job inside its run folder; a path the user typed relative to
    the folder the command started in (``data.data_dir=data``, ``ckpt_path=...``) keeps meaning that folder
    (Hydra's ``to_absolute_path``), instead of ``<run>/data``, which would not exist, and the data search would go
    on to another copy."""
    from hydra.utils import to_absolute_path
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or not HydraConfig.get().job.get("chdir"):
        return cfg
    for key in USER_PATHS:  # this job's own config: Hydra composes one per job
        if isinstance(value := OmegaConf.select(cfg, key), str):
            OmegaConf.update(cfg, key, to_absolute_path(os.path.expanduser(value)), merge=False)
    return cfg


# The name lenet_exp.sweep gave Hydra's launchers before: submitit pickles the task function by that name
# into a SLURM sweep's folder, and a job that starts (or is requeued) after an upgrade unpickles it.
sweep_job = job


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> dict[str, Any] | None:
    """Train once (a run, or a job of a sweep); a user error in a run ends it with ``error: <sentence>``."""
    try:
        with sigterm_interrupts():  # as Ctrl-C: the command's sentence (lenet_exp.run leaves the signal alone)
            return job(cfg)
    except UserError as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            from lenet_exp.runtime.hydra_callbacks import FailedJob

            # Hydra marks the job failed and runs the others (hydra_callbacks.FailedJobs), then ends with the list
            sweep_dir = str(Path(HydraConfig.get().runtime.output_dir).resolve().parent)
            raise FailedJob(str(err), sweep_dir) from None
        fail(err)


# Hydra's modes, of which a command takes one: its options, by the short name said in refusals.
_MODES = {"-r": "-r", "--run": "-r", "-m": "-m", "--multirun": "-m", "-c": "-c", "--cfg": "-c", "-i": "-i"}
_MODES |= {"--info": "-i", "-sc": "-sc", "--shell-completion": "-sc"}
# Hydra's options that only print (help, the config, what Hydra sees) and train nothing.
_PRINTING = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion")


def command() -> None:
    """``python -m lenet_exp`` and the ``lenet-exp`` script. An option that only prints, read by a reader that
    stops early (``--help | head``), ends the command quietly, as Unix tools end, not with Hydra's report of
    Python's BrokenPipeError. (A run keeps training when its reader stops: its log file has every line.)"""
    modes = list(dict.fromkeys(_MODES[a.split("=")[0]] for a in sys.argv[1:] if a.split("=")[0] in _MODES))
    if len(modes) > 1:  # Hydra's ValueError, in a traceback
        extra = "; to see a sweep's config, show one job's: leave out -m and give each key one value" * ("-m" in modes)
        fail(
            f"{' and '.join(modes)} cannot be given together: Hydra does one of running (-r), a sweep (-m), "
            f"showing the config (-c), showing its sources (-i) and shell completion (-sc){extra}."
        )
    printing = any(arg.split("=")[0] in _PRINTING for arg in sys.argv[1:])
    if printing:
        import signal

        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    check_own_configs(sys.argv[1:], printing)
    try:
        with sigterm_interrupts():  # a sweep's own process too, while a launcher's processes run its jobs
            main()
    except KeyboardInterrupt as err:  # there (a run's, and a job's in this process, end in their own sentence)
        from lenet_exp.runtime.hydra_callbacks import running_sweep

        what, status = interruption(err)
        if running_sweep is None:  # a run, before or after its job (Hydra's composing, its callbacks)
            say(f"interrupted ({what})")
        elif "joblib" in running_sweep[1]:  # joblib ends its processes' jobs, each keeping its last completed epoch
            say(
                f"interrupted ({what}): the sweep in {running_sweep[0]} stopped, and its running jobs with it, each "
                "keeping its last completed epoch: finish one with python -m lenet_exp.resume <its job folder>, and "
                "run the jobs that have no folder yet as a sweep of their own (docs/sweeps.md)."
            )
        elif running_sweep[1].endswith(".BasicLauncher"):  # its jobs run here, each answering for itself: between two
            say(
                f"interrupted ({what}) between two jobs of the sweep in {running_sweep[0]}: the jobs before are "
                "complete; run the rest as a sweep of their own (docs/sweeps.md)."
            )
        else:  # submitit's: this process only waited for them
            say(
                f"interrupted ({what}): this command stopped waiting for the sweep in {running_sweep[0]}; each job "
                "says at the end of its folder's lenet_exp.log what it kept and how to resume it (a job that a SLURM "
                "cluster runs goes on: squeue lists it, scancel stops it)."
            )
        raise SystemExit(status) from None


def search_path(config_dir: str | Path | None = None, primary: str = CONF_DIR) -> Any:
    """Hydra's config search path as its main builds it: lenet_exp's configs (or ``primary``, -cp's folder, in
    their place), then ``config_dir``, the folder of --config-dir."""
    # Hydra's private helper, as @hydra.main calls it: its public API builds no search path to hand on (see
    # lenet_exp/api.py's docstring on using Hydra's internals; pinned by hydra-core's version range)
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    path = create_automatic_config_search_path(None, None, primary)
    if config_dir is not None:
        folder = f"file://{Path(os.path.expanduser(config_dir)).resolve()}"
        path.prepend(provider="command-line", path=folder, anchor=SearchPathQuery(provider="schema"))
    return path


def check_config_dir(config_dir: str | Path, flag: str) -> None:
    """Beside lenet_exp's configs (``--config-dir``, ``config_dir=``), a file of the user's with the name of one of
    lenet_exp's own (``config.yaml``, ``model/lenet.yaml`` in a copy of conf/) is never read: Hydra finds
    lenet_exp's first. One that differs from lenet_exp's would have its changes ignored without a word: refused,
    saying what to do. (Only those names are looked at: the folder may hold anything else.)"""
    folder = Path(os.path.expanduser(config_dir)).resolve()
    own = Path(CONF_DIR)
    for theirs in sorted(own.rglob("*.yaml")):
        name = theirs.relative_to(own)
        path = folder / name
        if not path.is_file() or path.read_bytes() == theirs.read_bytes():
            continue  # no such file, or an unchanged copy
        group = name.parent.as_posix()
        rename = (
            "an experiment of its own (experiment/mine.yaml, beginning # @package _global_, chosen with "
            "experiment=mine) to change lenet_exp's settings"
            if group == "."
            else f"a name of its own ({group}/mine.yaml, chosen with {group}=mine)"
        )
        raise UserError(
            f"{flag}={config_dir} holds {name.as_posix()}, the name of one of lenet_exp's own configs, which Hydra "
            f"reads instead, so your changes to it would be ignored; give it {rename}."
        )


def yaml_sentence(err: BaseException) -> str | None:
    """A config file Hydra could not parse, as one sentence naming it, its line and the problem; None for an error
    that is not the YAML parser's."""
    import yaml

    err = next((each for each in chain(err) if isinstance(each, yaml.YAMLError)), None)
    if err is None:
        return None
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(err, "problem", None) or first_line(err)
    name = mark.name if mark else "a config file"
    return f"{name} cannot be read as YAML ({at}{problem}); correct it, or choose another config."


# lenet_exp's Hydra callbacks (conf/hydra/default.yaml) that keep a run from writing over another's files.
_GUARDS = ("output_folder", "run_lock", "earlier_run")


def check_own_configs(argv: list[str], printing: bool = False) -> None:
    """Configs of the user's own, checked before Hydra starts (it would print its traceback, or write its .hydra/
    files first): a changed copy of one of lenet_exp's files in ``--config-dir`` (``check_config_dir``); a file
    Hydra reads that is not YAML, one sentence where Hydra printed the parser's traceback; and, for a run, a primary
    config of one's own (``-cn mine``, Hydra's way) that leaves out lenet_exp's Hydra settings, which would run
    without the callbacks that refuse a folder holding a run. (Anything else about a config is left to Hydra,
    which says it.)"""
    from hydra._internal.utils import get_args_parser  # private: Hydra's own reading of its flags (-cn, -cp, ...)

    args, _ = get_args_parser().parse_known_args(argv)
    # (-cp replaces lenet_exp's folder of configs, so its config.yaml too; -cd adds a folder after lenet_exp's)
    own = args.config_name not in (None, CONFIG_NAME) or args.config_path is not None
    if args.config_dir is not None and args.config_path is None and Path(args.config_dir).is_dir():
        try:  # (a -cd that is no folder: Hydra's words)
            check_config_dir(args.config_dir, "--config-dir")
        except UserError as err:
            fail(err)
    if not (own or args.config_dir is not None) or args.experimental_rerun:
        return
    from hydra import version
    from hydra._internal.hydra import Hydra  # private, as in lenet_exp/api.py: composing as the command would
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    primary = CONF_DIR if args.config_path is None else args.config_path
    if "://" not in primary:  # pkg://... as it is; a folder relative to this module's, as Hydra reads it
        primary = str(Path(_PACKAGE, primary))  # (an absolute one stays)
    version.setbase("1.3")  # as @hydra.main(version_base="1.3") sets it
    mode = RunMode.MULTIRUN if args.multirun else RunMode.RUN
    try:
        app = Hydra.create_main_hydra2(task_name="__main__", config_search_path=search_path(args.config_dir, primary))
        hydra_settings = app.compose_config(args.config_name or CONFIG_NAME, args.overrides, run_mode=mode).hydra
    except Exception as err:  # noqa: BLE001  (Hydra composes it again and says what else is wrong)
        if (sentence := yaml_sentence(err)) is not None:
            fail(sentence)
        return
    finally:
        GlobalHydra.instance().clear()
    if own and not printing and not all(guard in (hydra_settings.get("callbacks") or {}) for guard in _GUARDS):
        name = args.config_name or CONFIG_NAME
        base = "build it on lenet_exp's config (defaults: [config, _self_])"
        if args.config_path is not None:  # -cp: lenet_exp's configs are not on Hydra's search path at all
            base = f"give its folder with -cd instead (beside lenet_exp's configs), and {base} under another name"
        fail(
            f"the config {name} leaves out lenet_exp's Hydra settings (hydra/default.yaml), whose checks keep a run "
            f"from writing over another run's files; add - hydra: default to its defaults list, or {base}."
        )


if __name__ == "__main__":
    command()
