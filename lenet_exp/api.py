"""lenet_exp from Python (a notebook, a script): ``run``, ``sweep`` and ``load``.

    import lenet_exp
    book = lenet_exp.run()                                  # python -m lenet_exp
    quick = lenet_exp.run("debug=limit", "seed=1")          # python -m lenet_exp debug=limit seed=1
    jobs = lenet_exp.sweep("debug=limit", "seed=1,2")       # python -m lenet_exp -m debug=limit seed=1,2
    model = lenet_exp.load(book.checkpoint)                 # python -m lenet_exp.predict ckpt_path=...
    model.predict(["shoe.png", "shirt.jpg"]).classes

A call composes the config the command line would from the same conf/ (or ``config_dir``, like
``--config-dir``), runs it through Hydra's own job runner with conf/hydra's callbacks, and writes the
same run folder. Calls follow one another in one process: each leaves Hydra's global state, the
logging handlers, the environment (DDP's variables), the working folder, the Ctrl-C handler and
torch's thread count as it found them. A user error raises lenet_exp.errors.UserError with its one
sentence, and Ctrl-C (a notebook's interrupt) KeyboardInterrupt; never SystemExit.

Hydra's public entry (``@hydra.main``) ends the process, and ``compose`` runs no job: the steps of its own
``Hydra.run`` and ``Hydra.multirun`` (``hydra._internal``: the Hydra object, its config search path and its
callbacks) are the only way to run a job as the command line does and return, so they are used here, pinned
by hydra-core's version range and covered by the tests of this module.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lenet_exp.errors import INTERRUPTED, UserError, first_line, resolving, unwrap_user_errors
from lenet_exp.predict import Predictions, TrainedModel, load_model
from lenet_exp.processes import distributed, processes
from lenet_exp.runtime.cli import names
from lenet_exp.runtime.run_folder import (
    as_written,
    best_checkpoint,
    error_file,
    job_folders,
    last_checkpoint,
    metrics_file,
    overrides_file,
)

__all__ = ["Predictions", "Run", "TrainedModel", "load", "run", "sweep"]


@dataclass
class Run:
    """A finished run (or job of a sweep): its folder and what it wrote to ``metrics.json``."""

    run_dir: Path
    metrics: dict[str, Any]  # metrics.json; empty for a job of a sweep that failed
    overrides: list[str] = field(default_factory=list)  # as in .hydra/overrides.yaml
    error: str | None = None  # why a job of a sweep failed (its error.txt)

    @property
    def checkpoint(self) -> Path | None:
        """The weights the final test used: checkpoints/best.ckpt (chosen by validation) or last.ckpt; None for a
        run that kept none (``debug=fast_dev_run``, ``~callbacks.checkpoint``). The path still, once the run folder
        was moved or deleted: loading it then says so."""
        tested_best = self.metrics.get("tested") == "best"
        path = best_checkpoint(self.run_dir) if tested_best else last_checkpoint(self.run_dir)
        return path if path.is_file() or not self.run_dir.is_dir() else None


def run(*overrides: str, config_dir: str | Path | None = None) -> Run:
    """Train once, as ``python -m lenet_exp <overrides>`` (``--config-dir <config_dir>``) would; return the run."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.utils import JobStatus, run_job
    from hydra.types import HydraContext, RunMode

    from lenet_exp.__main__ import CONFIG_NAME, job
    from lenet_exp.runtime.hydra_callbacks import check_no_earlier_run, checked_by_caller
    from lenet_exp.runtime.lock import run_lock

    with _hydra(config_dir) as app:  # the steps of Hydra.run, with a folder of the run's own
        cfg = _compose(app, overrides, RunMode.RUN)
        with resolving(cfg):
            folder = _own_folder(cfg, "run")
        with run_lock(folder):  # a folder another process writes: a UserError here (RunLock would exit)
            # a folder that holds a run: a UserError here (EarlierRun would exit)
            with resolving(cfg):
                check_no_earlier_run(folder, cfg.get("ckpt_path"))
            callbacks = Callbacks(cfg)
            with checked_by_caller():  # the folder's checks are made above, once
                callbacks.on_run_start(config=cfg, config_name=CONFIG_NAME)
            ret = run_job(
                hydra_context=HydraContext(config_loader=app.config_loader, callbacks=callbacks),
                task_function=job,
                config=cfg,
                job_dir_key="hydra.run.dir",
                job_subdir_key=None,
            )
            callbacks.on_run_end(config=cfg, config_name=CONFIG_NAME, job_return=ret)
            # JobReturn's private field: its public return_value raises the error (and prints Hydra's line) instead
            if ret.status == JobStatus.FAILED and isinstance(ret._return_value, UserError):
                _log_to_file(ret._return_value, folder)  # while the run's log file is still open
    if ret.status == JobStatus.FAILED:
        # a UserError (job() unwraps them) or a bug, with its traceback; the public return_value would raise it
        # too, after printing Hydra's "Error executing job" line
        raise ret._return_value
    return Run(Path(ret.hydra_cfg.hydra.runtime.output_dir), ret.return_value, list(ret.overrides))


def _log_to_file(error: UserError, folder: Path) -> None:
    """A refused run's sentence in its log file in ``folder``, as the command line writes it there; not on the
    console, since the caller gets the UserError itself."""
    from lenet_exp.runtime.console import to_log_file

    to_log_file(f"error: {first_line(error)}", folder)


def sweep(*overrides: str, config_dir: str | Path | None = None) -> list[Run]:
    """Run a sweep, as ``python -m lenet_exp -m <overrides>`` would; return each job, in job order.

    A job that fails with a user error fails the sweep with its sentence once the other jobs have run
    (Hydra's basic sweeper), except under sweepers that carry on (Optuna): there it is a Run with ``error``,
    unless every trial of the study failed, which raises the list of them.
    """
    from hydra.types import RunMode

    from lenet_exp.runtime.hydra_callbacks import check_sweep, lock_folder
    from lenet_exp.runtime.lock import release

    with _hydra(config_dir) as app:  # the steps of Hydra.multirun, with a folder of the sweep's own
        cfg = _compose(app, overrides, RunMode.MULTIRUN)
        with resolving(cfg):
            check_sweep(cfg)  # settings that would fail every job: a UserError here (SweepChecks would exit)
            # absolute, as run()'s folder is: the jobs returned stay valid when the caller changes folder later
            folder = Path(os.path.abspath(_own_folder(cfg, "sweep")))
            # a UserError here (RunLock would exit); held until the sweep ends
            locked = lock_folder(cfg, "sweep")
        try:
            return _swept(app, cfg, folder)
        finally:
            if locked:
                release(folder)
            _end_joblib_workers()


def _swept(app: Any, cfg: Any, folder: Path) -> list[Run]:
    """The rest of ``sweep``, with its folder locked."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext
    from omegaconf import OmegaConf

    from lenet_exp.__main__ import CONFIG_NAME, job
    from lenet_exp.runtime.hydra_callbacks import FailedJob, SweepRefused, check_no_earlier_sweep, checked_by_caller

    with resolving(cfg):
        check_no_earlier_sweep(cfg)  # a UserError here (EarlierRun would exit)
    callbacks = Callbacks(cfg)
    with checked_by_caller():  # the sweep's settings and folder are checked above and in sweep(), once
        callbacks.on_multirun_start(config=cfg, config_name=CONFIG_NAME)
    context = HydraContext(config_loader=app.config_loader, callbacks=callbacks)
    sweeper = Plugins.instance().instantiate_sweeper(config=cfg, hydra_context=context, task_function=job)
    try:
        with unwrap_user_errors(), _composed():  # a job's own composition: a swept key of a typo, say
            sweeper.sweep(arguments=OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False))
    except FailedJob as ended:  # the sweep's own end, the list of its failed jobs: every trial of a study failed
        raise UserError(f"{str(ended).removeprefix('error: ')} (the sweep folder {folder})") from None
    except SweepRefused as refused:  # the sweeper's own, not a job's: a study's storage that went away or failed
        raise UserError(str(refused).removeprefix("error: ")) from None
    except UserError as cause:
        failed = next((j for j in job_folders(folder) if error_file(j).is_file()), None)
        which = f"job {failed.relative_to(folder)}" if failed else "a job"
        raise UserError(f"{which} of the sweep in {folder} failed: {cause}") from None
    callbacks.on_multirun_end(config=cfg, config_name=CONFIG_NAME)
    return [_finished(job) for job in job_folders(folder)]


def _end_joblib_workers() -> None:
    """The worker processes a joblib sweep leaves behind for the next (loky keeps them for 300 s, about 0.8 GB
    each): ended with the sweep, so that a notebook's memory is its own again."""
    loky = sys.modules.get("joblib.externals.loky")
    if loky is not None:
        loky.get_reusable_executor().shutdown(wait=True)


def load(checkpoint: str | Path | Run, trust: Sequence[str] | str = ()) -> TrainedModel:
    """The trained model in ``checkpoint`` (a .ckpt file, such as ``run.checkpoint``, or the Run itself), read as
    data: only lenet_exp's classes and those named in ``trust`` are built, and its weights must fit the model."""
    if isinstance(checkpoint, Run):  # load(run) for load(run.checkpoint)
        checkpoint = checkpoint.checkpoint
    if checkpoint is None:  # run.checkpoint of a run that kept none
        raise UserError(
            "load takes the path of a .ckpt file, not None (the checkpoint of a run that kept none: "
            "debug=fast_dev_run, ~callbacks.checkpoint); train with checkpoints to load the weights."
        )
    if not isinstance(checkpoint, str | os.PathLike):
        raise UserError(f"load takes the path of a .ckpt file, such as run.checkpoint, not {checkpoint!r}.")
    if not isinstance(trust, str | Sequence) or not all(isinstance(each, str) for each in trust):
        raise UserError(f"trust={trust!r} must name classes, such as trust=['my_models.SmallCNN'].")
    return load_model(checkpoint, names(trust) if isinstance(trust, str) else list(trust))


def _finished(job: Path) -> Run:
    import json

    metrics, error = metrics_file(job), error_file(job)
    return Run(
        job,
        json.loads(metrics.read_text()) if metrics.is_file() else {},
        [str(o) for o in as_written(overrides_file(job))],  # an interpolation in one stays as it was typed
        error.read_text().strip() if error.is_file() else None,
    )


@contextmanager
def _hydra(config_dir: str | Path | None) -> Iterator[Any]:
    """Hydra set up as ``@hydra.main`` sets it up for lenet_exp's command line (plus ``--config-dir``),
    and everything a run changes in this process put back afterwards, also when it fails."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra

    from lenet_exp.__main__ import check_config_dir, search_path

    if config_dir is not None:  # what _run_hydra does with --config-dir
        if not isinstance(config_dir, str | os.PathLike):
            raise UserError(f"config_dir={config_dir!r} must be the path of a folder, such as config_dir='my_configs'.")
        if not Path(os.path.expanduser(config_dir)).resolve().is_dir():
            raise UserError(f"config_dir={config_dir} is not a folder; give the folder that holds your configs.")
        check_config_dir(config_dir, "config_dir")

    # Lightning gives its loggers a console handler of their own, for good, when it is first imported under a root
    # logger without handlers (a notebook's): imported here, it decides from the caller's logging, not the run's
    import pytorch_lightning  # noqa: F401

    saved, base, caller = _State(), version.getbase(), GlobalHydra.instance().hydra  # the caller's own compose()
    for library in (logging.getLogger("pytorch_lightning"), logging.getLogger("lightning_fabric")):
        library.handlers, library.propagate = [], True  # during the run, into its log file and console (put back)
    version.setbase("1.3")  # as @hydra.main(version_base="1.3")
    GlobalHydra.instance().clear()
    try:
        app = Hydra.create_main_hydra2(task_name="__main__", config_search_path=search_path(config_dir))
        yield app
    except SystemExit as stop:
        if stop.code != INTERRUPTED:  # SIGTERM (143): this process is asked to end
            raise
        # Lightning answers Ctrl-C (a notebook's "interrupt") with SystemExit, after the run said what it
        # kept (faults.resumable): interrupted it is, and the kernel lives on.
        raise KeyboardInterrupt from None
    finally:
        GlobalHydra.instance().clear()
        GlobalHydra.instance().hydra, version.VersionBase.instance().version_base = caller, base
        saved.restore()


def _compose(app: Any, overrides: Sequence[str], mode: Any) -> Any:
    """The config (Hydra's node included) of the command line with ``overrides``, in ``mode``; Hydra's
    composition errors (no such option or key, bad syntax) as one UserError."""
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    # also a list of them, as Hydra's compose takes it: run(["trainer=cpu", "seed=1"])
    overrides = [o for each in overrides for o in (each if isinstance(each, list | tuple) else [each])]
    for each in overrides:
        if isinstance(each, str) and each.startswith("-"):  # the command line's flags: -m, --cfg, -cn, ...
            raise UserError(
                f"{each} is a flag of the command line, not an override; lenet_exp.sweep runs a sweep (-m), and "
                "config_dir= adds a folder of configs (--config-dir)."
            )
        if not isinstance(each, str):
            raise UserError(f"overrides are strings such as 'seed=1' or 'trainer.max_epochs=2', not {each!r}.")
    try:
        chosen = app.get_mode(config_name="config", overrides=overrides)  # hydra.mode= in overrides or configs
        if chosen == RunMode.MULTIRUN and mode == RunMode.RUN:
            raise UserError("hydra.mode=MULTIRUN asks for a sweep; call lenet_exp.sweep instead of lenet_exp.run.")
        mode_override = [f"hydra.mode={mode.name}"] if chosen != mode else []  # as _run_app adds it
        cfg = app.compose_config(
            config_name="config",
            overrides=[*overrides, *mode_override],
            run_mode=mode,
            from_shell=False,  # Hydra's advice on quoting, then, is for Python strings, not for a shell
            with_log_configuration=True,
        )
    except Exception as err:
        from lenet_exp.__main__ import yaml_sentence

        if (sentence := yaml_sentence(err)) is not None:  # a config file of one's own: its line, not a traceback
            raise UserError(sentence) from None
        if not isinstance(err, HydraException | OmegaConfBaseException):
            raise
        for each in overrides:  # a command line pasted whole, which Hydra's grammar cannot read
            if len(pairs := each.split()) > 1 and all(re.match(r"[+~]{0,2}[A-Za-z_][\w.@/-]*=", p) for p in pairs):
                raise UserError(
                    f"{each!r} holds {len(pairs)} overrides in one string; give each as a string of its own: "
                    f"({', '.join(map(repr, pairs))})."
                ) from None
        sweep = "call lenet_exp.sweep" if mode == RunMode.RUN else "give it to lenet_exp.sweep"
        raise UserError(_composition_sentence(err).replace("add --multirun to your command line", sweep)) from None
    strategy, devices = str(cfg.trainer.get("strategy", "auto")), cfg.trainer.get("devices", 1)
    if distributed(cfg.trainer) and processes(cfg.trainer) != 1:  # Lightning's auto strategy too, with devices=2
        nodes = cfg.trainer.get("num_nodes", 1)
        asked = f"trainer.devices={devices}" + (f" and trainer.num_nodes={nodes}" if nodes != 1 else "")
        raise UserError(
            f"trainer.strategy={strategy} with {asked} starts its other processes as copies of a "
            "command line, which a Python session is not; run it as python -m lenet_exp with the same overrides."
        )
    return cfg


def _composition_sentence(err: BaseException) -> str:
    """Hydra's message of a config it could not compose (no such option or key, bad syntax), on one line."""
    message = str(err).split("Config search path:")[0]  # the folders Hydra looked in are known
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines) or type(err).__name__


@contextmanager
def _composed() -> Iterator[None]:
    """A config Hydra could not compose for a job of a sweep (each job composes its own, from its swept values)
    as one UserError; anything else a job raised as it is."""
    from hydra.errors import ConfigCompositionException, OverrideParseException

    try:
        yield
    except (ConfigCompositionException, OverrideParseException) as err:
        raise UserError(_composition_sentence(err)) from None


def _own_folder(cfg: Any, kind: str) -> Path:
    """The run (``kind="run"``) or sweep folder, created and writable. One named by the clock (``${now:...}``,
    as by default) gets ``_1``, ``_2``... when a run of the same second already made it."""
    from omegaconf import OmegaConf, read_write

    from lenet_exp.runtime.hydra_callbacks import check_folder_name, check_output_folder

    node, key = cfg.hydra[kind], f"hydra.{kind}.dir"
    check_folder_name(node.dir, key)
    folder = Path(node.dir)
    if "${now:" in str(OmegaConf.to_container(node, resolve=False)["dir"]):
        candidate, n = folder, 0
        while True:
            try:
                candidate.mkdir(parents=True)
                break
            except FileExistsError:
                n += 1
                candidate = folder.with_name(f"{folder.name}_{n}")
            except OSError:
                break  # check_output_folder says why
        if candidate != folder:
            folder = candidate
            with read_write(cfg.hydra):
                node.dir = str(folder)
                # A sweep's launcher composes each job again from these overrides: the jobs go there too.
                quoted = str(folder).replace("\\", "\\\\").replace("'", "\\'")
                cfg.hydra.overrides.hydra.append(f"{key}='{quoted}'")
    check_output_folder(str(folder), key)
    return folder


class _State:
    """What a run changes in this process beyond its folder, saved when made and put back by ``restore``."""

    def __init__(self) -> None:
        self.environ = dict(os.environ)  # DDP's MASTER_ADDR/WORLD_SIZE..., PL_GLOBAL_SEED, hydra.job.env_set
        self.argv, self.cwd = list(sys.argv), os.getcwd()
        self.raise_exceptions = logging.raiseExceptions
        self.loggers = {each: (each.level, list(each.handlers), each.propagate, each.disabled) for each in _loggers()}
        torch = sys.modules.get("torch")
        self.threads = torch.get_num_threads() if torch else None
        # trainer.deterministic and trainer.benchmark switch torch's algorithms for the whole process (Lightning
        # leaves them so), and an MLflow logger points mlflow's own module-level calls at its run's server
        self.algorithms = (
            (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
            if torch
            else None
        )
        self.cudnn_benchmark = torch.backends.cudnn.benchmark if torch else None
        self.tracking_uri = _mlflow_tracking_uri()
        self.sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores Ctrl-C once it has answered one

    def restore(self) -> None:
        for logger in _loggers():
            level, handlers, propagate, disabled = self.loggers.get(
                logger,
                (logger.level, [], logger.propagate, logger.disabled),  # one the run made: only its handlers go
            )
            for handler in logger.handlers:
                if handler not in handlers:  # the run's console and log file handlers
                    handler.close()
            logger.handlers, logger.propagate, logger.disabled = handlers, propagate, disabled
            logger.setLevel(level)
        logging.raiseExceptions = self.raise_exceptions
        if "mlflow" in sys.modules and _mlflow_tracking_uri() != self.tracking_uri:  # (it sets the environment too)
            sys.modules["mlflow"].set_tracking_uri(self.tracking_uri)  # None: mlflow's default again
        for key in set(os.environ) - set(self.environ):
            del os.environ[key]
        os.environ.update(self.environ)
        sys.argv[:] = self.argv
        os.chdir(self.cwd)
        if threading.current_thread() is threading.main_thread():  # only there can handlers be set
            signal.signal(signal.SIGINT, self.sigint)
        if "torch" in sys.modules:
            from lenet_exp.runtime.threads import DEFAULT_THREADS  # torch's own, before any run changed it

            torch = sys.modules["torch"]
            torch.set_num_threads(self.threads or DEFAULT_THREADS)
            enabled, warn_only = self.algorithms or (False, False)
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
            torch.backends.cudnn.benchmark = bool(self.cudnn_benchmark)


def _mlflow_tracking_uri() -> str | None:
    """The tracking URI set in mlflow's module (``mlflow.set_tracking_uri``), if mlflow is imported and one is."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return None
    # private: mlflow.get_tracking_uri() gives the default it derives when none is set, which set_tracking_uri
    # would then fix for good
    from mlflow.tracking._tracking_service.utils import _tracking_uri

    return _tracking_uri


def _loggers() -> list[logging.Logger]:
    manager = logging.Logger.manager
    return [logging.getLogger(), *(each for each in manager.loggerDict.values() if isinstance(each, logging.Logger))]
