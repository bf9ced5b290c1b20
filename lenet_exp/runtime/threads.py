"""How many CPU threads a job's torch may use and which GPU it trains on, so that parallel sweep jobs
do not fight over cores or all crowd onto cuda:0."""

from __future__ import annotations

import os

import torch
from hydra.core.hydra_config import HydraConfig

from lenet_exp.errors import check_value

DEFAULT_THREADS = torch.get_num_threads()  # before any job of this process changed it


def torch_threads(requested: int | None) -> int:
    """``requested`` if given; in a SLURM task, the CPUs SLURM gave it; under the joblib launcher,
    cores / n_jobs; otherwise torch's default."""
    if requested is not None:
        return check_value("threads", requested, "whole", "4 (or null for the default)", low=1)
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():  # SLURM may not pin a task to its CPUs
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    cores = os.cpu_count() or 1
    n_jobs = joblib_jobs()
    if n_jobs:  # joblib's convention: -1 is all cores, -2 all but one, ...
        return max(1, cores // (n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)))
    return DEFAULT_THREADS


def joblib_jobs() -> int | None:
    """``n_jobs`` of Hydra's joblib launcher when this job runs under it, else None."""
    launcher = HydraConfig.get().launcher if HydraConfig.initialized() else {}
    return launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None


def job_devices(accelerator: object, devices: object) -> object:
    """``trainer.devices`` for this job: GPUs of its own when the joblib launcher runs several jobs at once on
    a machine with enough GPUs (``devices=k``: job n gets the k GPUs of slot n % (GPUs // k)); else ``devices``."""
    n_jobs = joblib_jobs()
    if not isinstance(devices, int) or devices < 1 or n_jobs in (None, 1) or accelerator not in ("gpu", "cuda", "auto"):
        return devices
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2 * devices:
        return devices  # not enough GPUs for two jobs: they share them, as they would without lenet_exp
    slot = HydraConfig.get().job.num % (torch.cuda.device_count() // devices)
    return list(range(slot * devices, (slot + 1) * devices))
