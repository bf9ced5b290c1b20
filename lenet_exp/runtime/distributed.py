"""DDP under Hydra: ranks that Lightning starts join the current run (or sweep job), and nothing
of one DDP run stays behind in the process for the next job of a sweep, and a dead rank stops the run."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

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
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task, "hydra.mode=RUN"]  # an Optuna trial's overrides say MULTIRUN
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


@contextmanager
def dead_ranks_named(trainer: pl.Trainer, run_dir: str) -> Iterator[None]:
    """A collective that fails because a child rank died ("connection reset by peer") becomes one
    sentence naming that rank; the other ranks are stopped."""
    try:
        yield
    except Exception as err:
        procs = list(getattr(trainer.strategy.launcher, "procs", None) or [])
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
    rank 0 included, with SIGKILL, so nothing gets to say what happened.)"""

    def __init__(self, run_dir: str, period: float = 0.5) -> None:
        self.run_dir, self.period = run_dir, period

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        procs = list(getattr(trainer.strategy.launcher, "procs", None) or [])
        if procs and trainer.is_global_zero:
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
