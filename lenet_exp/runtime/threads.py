"""How many CPU threads a job's torch may use, so that parallel sweep jobs do not fight over cores."""

from __future__ import annotations

import os

import torch
from hydra.core.hydra_config import HydraConfig

from lenet_exp.errors import check_value

DEFAULT_THREADS = torch.get_num_threads()  # before any job of this process changed it


def torch_threads(requested: int | None) -> int:
    """``requested`` if given; under the joblib launcher, cores / n_jobs; otherwise torch's default."""
    if requested is not None:
        return check_value("threads", requested, "whole", "4 (or null for the default)", low=1)
    cores = os.cpu_count() or 1
    launcher = HydraConfig.get().launcher if HydraConfig.initialized() else {}
    n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    if n_jobs:  # joblib's convention: -1 is all cores, -2 all but one, ...
        return max(1, cores // (n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)))
    return DEFAULT_THREADS
