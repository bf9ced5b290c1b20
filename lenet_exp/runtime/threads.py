"""How many CPU threads a job's torch may use and which GPU it trains on, so that parallel sweep jobs
do not fight over cores or all crowd onto cuda:0; and torch's CUDA check kept cheap on a machine without one."""

from __future__ import annotations

import ctypes
import os

import torch
from hydra.core.hydra_config import HydraConfig

from lenet_exp.errors import check_value

DEFAULT_THREADS = torch.get_num_threads()  # before any job of this process changed it
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"  # "1": torch.cuda.is_available() asks NVML first


def torch_threads(requested: int | None) -> int:
    """``requested`` if given; in a SLURM task, the CPUs SLURM gave it (submitit's local launcher, a cluster
    sweep's dry run, runs its jobs at once on this machine: its ``cpus_per_task``); under the joblib launcher,
    cores / n_jobs; otherwise torch's default."""
    if requested is not None:
        return check_value("threads", requested, "whole", "4 (or null for the default)", low=1)
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():  # SLURM may not pin a task to its CPUs
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    launcher = HydraConfig.get().launcher if HydraConfig.initialized() else {}
    given = launcher.get("cpus_per_task")
    if "submitit" in str(launcher.get("_target_", "")) and isinstance(given, int) and given >= 1:
        return given
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


def skip_absent_nvml() -> None:
    """Lets ``torch.cuda.is_available()`` ask the CUDA runtime at once where NVML (the NVIDIA driver's
    libnvidia-ml) cannot be loaded.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 when it is imported, so that the check does not initialise
    CUDA before a fork. torch's optimizers make that check in every step (whether a CUDA graph is being
    captured), and without NVML each check first fails to load libnvidia-ml and then asks the runtime anyway:
    with a CUDA build of torch on a machine without a GPU driver, 0.15 ms more per Adam step of LeNet, 1-2 %
    of an epoch on a CPU. Where NVML loads (a GPU machine) Lightning's setting stays as it is.
    """
    if os.environ.get(NVML_CHECK) != "1" or torch.version.cuda is None:  # a CPU-only torch checks nothing
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ[NVML_CHECK]  # torch's default: the runtime's device count, 0 here, in under a microsecond
