"""A SLURM job that runs again (``scontrol requeue``, preemption, or submitit's requeue before the time
limit, ``hydra.launcher.max_num_timeout``) starts the same Hydra job in the same job folder: there it
continues from that folder's last completed epoch instead of starting over."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lenet_exp.runtime.run_folder import last_checkpoint

log = logging.getLogger("lenet_exp")


def requeued_checkpoint(run_dir: Path, ckpt_path: str | None) -> Path | None:
    """The folder's last.ckpt when this process is a SLURM job's second (or later) run and the job named
    no checkpoint of its own; else None."""
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    if ckpt_path or not restarts.isdigit() or int(restarts) == 0:
        return None
    last = last_checkpoint(run_dir)
    if not last.is_file():
        return None  # killed before its first epoch ended: it starts again from the beginning
    log.info(f"SLURM runs this job again (restart {restarts}): continuing {run_dir} from {last}")
    return last
