"""Ctrl-C and SIGTERM during training: say what was kept and how to go on, then exit 130 / 143."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger("lenet_exp")


@contextmanager
def resumable(trainer: pl.Trainer, run_dir: Path) -> Iterator[None]:
    """Lightning answers Ctrl-C and SIGTERM with SystemExit, after its on_exception hooks."""
    try:
        yield
    except SystemExit as stop:
        last = run_dir / "checkpoints" / "last.ckpt"
        kept = (
            f"{last} holds epoch {trainer.current_epoch}; resume with: python -m lenet_exp.resume {run_dir}"
            if trainer.current_epoch and last.is_file()
            else "no epoch was completed, so there is nothing to resume"
        )
        log.error(f"interrupted during epoch {trainer.current_epoch + 1}; {kept}")
        raise SystemExit(143 if isinstance(stop, SIGTERMException) else 130) from stop
