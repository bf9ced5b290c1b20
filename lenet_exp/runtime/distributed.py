"""DDP under Hydra: ranks that Lightning starts join the current run (or sweep job), and nothing
of one DDP run stays behind in the process for the next job of a sweep, and a dead rank stops the run.
With Lightning's spawned or forked ranks (ddp_spawn, ddp_fork, ddp_notebook), what the run records comes
back from rank 0 to this process, and the ranks' log lines go to this run's console and log file."""

from __future__ import annotations

import importlib.util
import logging
import logging.handlers
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_utilities.core.apply_func import apply_to_collection
from omegaconf import OmegaConf, read_write
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from pytorch_lightning.trainer.states import TrainerFn
from torchmetrics import Metric

from lenet_exp.errors import UserError, first_line
from lenet_exp.runtime.run_folder import resume_hint

log = logging.getLogger("lenet_exp")


def point_ddp_ranks_at_this_job() -> None:
    """Lightning starts DDP ranks 1.. by running this command line again with
    ``hydra.run.dir=<HydraConfig run.dir>``. In a sweep job that command line is the whole
    sweep and run.dir is not the job's folder, so the ranks would start sweeps of their own
    in other folders (and hang). Make both describe this job alone."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hydra_cfg = HydraConfig.get()
    typed = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)  # an interpolation as the job got it
    sys.argv = [sys.argv[0], *typed, "hydra.mode=RUN"]  # an Optuna trial's overrides say MULTIRUN
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    main = sys.modules["__main__"]
    if getattr(main.__spec__, "name", "lenet_exp") not in ("lenet_exp", "lenet_exp.__main__"):
        # A worker process of a launcher (joblib's loky, submitit's local one): Lightning would start the
        # ranks as copies of that worker. They are this job's command instead (ddp_scope puts it back).
        main.__spec__ = importlib.util.find_spec("lenet_exp.__main__")


def torchrun_run_dir(run_dir: str) -> str:
    """The run folder of every rank that torchrun started: rank 0's.

    Each torchrun rank is a whole ``python -m lenet_exp`` that names its folder by its own clock; ranks that
    start in different seconds (or on different nodes) would write different folders. Rank 0 posts its folder
    in the store torchrun's agent keeps for the ranks (at MASTER_ADDR:MASTER_PORT), and the others wait for it
    there. Outside torchrun, or with one rank, ``run_dir`` as it is."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if "TORCHELASTIC_RUN_ID" not in os.environ or world < 2:
        return run_dir
    from datetime import timedelta

    rank, wait = int(os.environ.get("RANK", "0")), timedelta(seconds=TORCHRUN_WAIT)
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    key = f"lenet_exp/run_dir/{os.environ['TORCHELASTIC_RUN_ID']}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    try:
        store = torch.distributed.TCPStore(host, port, is_master=False, timeout=wait)
        if rank == 0:
            store.set(key, os.path.abspath(run_dir))
            return os.path.abspath(run_dir)
        return store.get(key).decode()  # waits for rank 0, at most TORCHRUN_WAIT seconds
    except (RuntimeError, OSError) as err:  # torch's DistStoreError is a RuntimeError
        raise UserError(
            f"rank {rank} could not learn rank 0's run folder from torchrun's store at {host}:{port} "
            f"({first_line(err)}); check that every node's torchrun "
            "has the same --master-addr and --master-port and that rank 0 started, or give every node the same "
            "hydra.run.dir=<folder>."
        ) from None


TORCHRUN_WAIT = 300  # seconds a rank waits for rank 0 (a node's imports on a slow file system take long)


# What Lightning's DDP launcher (and train, for a threads given) leaves in this process's environment (and
# process group): the next job of a sweep in this process, and the processes it starts, must not inherit it.
DDP_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")


@contextmanager
def ddp_scope() -> Iterator[None]:
    """Leaves no trace of a DDP run in this process, so that the next job of a sweep starts its own
    ranks instead of taking itself for an already launched rank (and waiting forever)."""
    saved = {key: os.environ.get(key) for key in DDP_ENVIRONMENT}
    argv, spec = list(sys.argv), sys.modules["__main__"].__spec__  # point_ddp_ranks_at_this_job may change them
    try:
        yield
    finally:
        sys.argv, sys.modules["__main__"].__spec__ = argv, spec
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _dead_rank(procs: list[subprocess.Popen]) -> str | None:
    """ "DDP rank N (PID p) was killed by signal 9" for the first child rank that died, if any."""
    for rank, proc in enumerate(procs, start=1):
        code = proc.poll()
        if code:  # None: running; 0: finished as it should
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            return f"DDP rank {rank} (PID {proc.pid}) {how}"
    return None


def child_ranks(trainer: pl.Trainer) -> list[subprocess.Popen]:
    """The ranks 1.. that Lightning started as copies of this command (spawned or forked ranks are watched by
    torch.multiprocessing, which raises ProcessExitedException when one dies)."""
    procs = getattr(trainer.strategy.launcher, "procs", None) or []
    return [proc for proc in procs if isinstance(proc, subprocess.Popen)]


@contextmanager
def dead_ranks_named(trainer: pl.Trainer, run_dir: str) -> Iterator[None]:
    """A collective that fails because a child rank died ("connection reset by peer") becomes one
    sentence naming that rank; the other ranks are stopped."""
    try:
        yield
    except torch.multiprocessing.ProcessExitedException as err:  # a spawned or forked rank died
        how = f"was killed by signal {err.signal_name}" if err.signal_name else f"exited with status {err.exit_code}"
        raise UserError(
            f"DDP rank {err.error_index} (PID {err.error_pid}) {how}, so every rank of this run was stopped; "
            f"{resume_hint(run_dir)}"
        ) from err
    except Exception as err:
        procs = child_ranks(trainer)
        deadline = time.monotonic() + 3  # the dead rank's exit status may lag its closed sockets
        while procs and (dead := _dead_rank(procs)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not procs or dead is None:
            raise
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        raise UserError(f"{dead}, so every rank of this run was stopped; {resume_hint(run_dir)}") from err


class RankWatch(pl.Callback):
    """On rank 0 of a run whose other ranks Lightning started as child processes: when one of them
    dies (killed, out of memory), say which, stop the others, and exit, instead of waiting in a
    collective for a rank that will never answer. (Lightning's own watcher kills every process,
    rank 0 included, with SIGKILL, so nothing gets to say what happened: this one takes over its work.)"""

    def __init__(self, run_dir: str, period: float = 0.5) -> None:
        self.run_dir, self.period = run_dir, period

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        procs = child_ranks(trainer)
        if procs and trainer.is_global_zero:
            end_lightnings_watcher()
            threading.Thread(target=self._watch, args=(procs,), daemon=True, name="rank-watch").start()

    def _watch(self, procs: list[subprocess.Popen]) -> None:
        while True:
            time.sleep(self.period)
            if (dead := _dead_rank(procs)) is not None:
                time.sleep(5)  # a collective that fails at once lets dead_ranks_named say it; one that hangs not
                log.error(f"error: {dead}, so every rank of this run was stopped; {resume_hint(self.run_dir)}")
                for other in procs:
                    if other.poll() is None:
                        other.kill()
                logging.shutdown()
                os._exit(1)  # this process is inside a collective that never returns
            if all(proc.poll() == 0 for proc in procs):
                return


def end_lightnings_watcher() -> None:
    """End the thread with which Lightning watches the ranks it started (every 5 s; on a death it SIGKILLs every
    process, this one included). Left running, it would kill the run within 5 s of a rank's death, whichever
    of RankWatch's grace or dead_ranks_named's sentence was under way. Lightning offers no way to stop it: its
    private list of processes is emptied, and with none to watch it ends at its next look."""
    from lightning_fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

    for thread in threading.enumerate():
        if isinstance(thread, _ChildProcessObserver):
            thread._child_processes = []


# Loggers that Lightning gives a console handler of its own when it is imported before logging is set up,
# as it is in a spawned rank (it propagates to the root's handlers where the run set them up first).
LIBRARY_LOGGERS = ("pytorch_lightning", "lightning_fabric")


class RankZeroResults(_MultiProcessingLauncher):
    """Lightning's launcher of spawned or forked ranks (ddp_spawn, ddp_fork, ddp_notebook), which also brings
    back from rank 0 what this process records after fitting: the fit loop's progress (``current_epoch``,
    ``global_step``), every callback's plain state (the epoch timer, best.ckpt's path and best epoch, early
    stopping's and a trial's counts) and rank 0's torch thread count. Lightning brings back only
    ``callback_metrics``, the last weights and the first checkpoint callback's ``best_model_path``;
    ``get_extra_results`` and ``update_main_process_results`` are its hooks for more.

    The launcher class is private to Lightning, and so are its start method, the function each rank runs and
    the one that takes rank 0's weights back (``_start_method``, ``_wrapping_function``,
    ``_recover_results_in_main_process``): subclassing it is the one way to reach those hooks, and the
    ddp_spawn tests (test_trainer_args.py, test_launchers.py) fail if Lightning changes them.

    Spawned ranks start with no logging set up: their records are sent to this process's handlers (the
    console and the run's log file, which one writer keeps whole), with this process's warning filters.
    Forked ranks inherit both."""

    def __init__(self, strategy: Any, start_method: str = "spawn") -> None:
        super().__init__(strategy, start_method=start_method)
        self.threads: int | None = None  # rank 0's torch threads during the last fit
        self._log_queue: Any = None  # set while spawned ranks run: where their log records go
        self._logging: dict[str, Any] = {}
        self._warning_filters: list[Any] = []

    @classmethod
    def install(cls, trainer: pl.Trainer) -> None:
        """Put one in place of the trainer's Lightning launcher, if it has one of spawned or forked ranks. The
        strategy keeps its launcher in ``_launcher`` (the public ``launcher`` property has no setter)."""
        launcher = trainer.strategy.launcher
        if type(launcher) is _MultiProcessingLauncher:
            trainer.strategy._launcher = cls(trainer.strategy, start_method=launcher._start_method)

    def launch(self, function: Any, *args: Any, trainer: pl.Trainer | None = None, **kwargs: Any) -> Any:
        if self._start_method != "spawn":
            return super().launch(function, *args, trainer=trainer, **kwargs)
        root = logging.getLogger()
        self._log_queue = torch.multiprocessing.get_context("spawn").Queue()
        self._logging = {
            "level": root.level,
            **{name: logging.getLogger(name).level for name in LIBRARY_LOGGERS},
        }
        self._warning_filters = list(warnings.filters)
        listener = logging.handlers.QueueListener(self._log_queue, *root.handlers, respect_handler_level=True)
        listener.start()
        try:
            return super().launch(function, *args, trainer=trainer, **kwargs)
        finally:
            listener.stop()  # after the last record of every rank
            self._log_queue.close()
            self._log_queue = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        """In a spawned rank, as it receives the launcher: its logging goes to the launching process."""
        self.__dict__.update(state)
        if self._log_queue is None:
            return
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(logging.handlers.QueueHandler(self._log_queue))
        root.setLevel(self._logging["level"])
        for name in LIBRARY_LOGGERS:
            library = logging.getLogger(name)
            for handler in list(library.handlers):
                library.removeHandler(handler)
            library.propagate, library.level = True, self._logging[name]
        warnings.filters[:] = self._warning_filters

    def _wrapping_function(self, process_idx: int, trainer: Any, function: Any, args: Any, kwargs: Any, *rest: Any):
        """A rank's entry point (Lightning's, which unshares the modules' parameters and buffers on the CPU):
        torchmetrics' states too. Spawning shares every tensor it sends, so each rank would add its counts
        into the same memory as the others, and leave them in this process's module for the final test."""
        if self._start_method == "spawn":
            apply_to_collection((args, kwargs), dtype=torch.nn.Module, function=_unshare_metrics)
        return super()._wrapping_function(process_idx, trainer, function, args, kwargs, *rest)

    def _recover_results_in_main_process(self, worker_output: Any, trainer: pl.Trainer) -> None:
        """Lightning's, which loads rank 0's last weights from a file in a temporary folder of its own and removes
        the file: the folder too, so that a run leaves nothing in the system's temporary folder."""
        super()._recover_results_in_main_process(worker_output, trainer)
        if worker_output.weights_path is not None:
            shutil.rmtree(os.path.dirname(worker_output.weights_path), ignore_errors=True)

    def get_extra_results(self, trainer: pl.Trainer) -> dict[str, Any]:
        extra = super().get_extra_results(trainer)
        if trainer.state.fn != TrainerFn.FITTING:
            return extra
        results = {
            "fit_loop": trainer.fit_loop.state_dict(),
            "callbacks": [(type(c).__qualname__, plain_state(c)) for c in trainer.callbacks],
            "threads": torch.get_num_threads(),
        }
        # Through a file, as Lightning sends the weights: rank 0 cannot end before the launching process reads
        # what it sent, which it does after every rank ended, so the queue holds only what its pipe's buffer can.
        path = os.path.join(tempfile.mkdtemp(), "rank_zero_results.pt")
        torch.save(results, path)
        return {**extra, "lenet_exp": path}

    def update_main_process_results(self, trainer: pl.Trainer, extra: dict[str, Any]) -> None:
        super().update_main_process_results(trainer, extra)
        if "lenet_exp" not in extra:
            return
        path = extra["lenet_exp"]
        results = torch.load(path, map_location="cpu", weights_only=True)  # no CUDA here: ddp_fork forks again
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        trainer.fit_loop.load_state_dict(results["fit_loop"])
        for callback, (kind, state) in zip(trainer.callbacks, results["callbacks"], strict=False):
            if type(callback).__qualname__ == kind:  # rank 0's list is a copy of this one, in the same order
                callback.__dict__.update(state)
        self.threads = results["threads"]


def _unshare_metrics(module: torch.nn.Module) -> torch.nn.Module:
    for metric in module.modules():
        if isinstance(metric, Metric):
            metric._apply(torch.clone)  # torchmetrics applies it to the metric's states as well
    return module


def plain_state(callback: pl.Callback) -> dict[str, Any]:
    """The attributes of ``callback`` that are data (numbers, strings, tensors, and lists, tuples and dicts of
    them): what it counted or measured; not its references to the trainer, files, servers or threads."""
    return {key: value for key, value in vars(callback).items() if _plain(value)}


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(each) for each in value)
    if isinstance(value, dict):
        return all(isinstance(key, str | int) and _plain(each) for key, each in value.items())
    return False
