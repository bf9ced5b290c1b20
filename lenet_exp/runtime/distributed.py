"""DDP under Hydra: ranks that Lightning starts join the current run (or sweep job), and nothing
of one DDP run stays behind in the process for the next job of a sweep."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write


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


# What Lightning's DDP launcher leaves in this process's environment (and process group).
DDP_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def ddp_scope() -> Iterator[None]:
    """Leaves no trace of a DDP run in this process, so that the next job of a sweep starts its own
    ranks instead of taking itself for an already launched rank (and waiting forever)."""
    saved = {key: os.environ.get(key) for key in DDP_ENVIRONMENT}
    argv = list(sys.argv)  # point_ddp_ranks_at_this_job rewrites it for the ranks
    try:
        yield
    finally:
        sys.argv = argv
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
