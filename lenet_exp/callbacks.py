"""Callbacks: the book's per-epoch line, a terminal-only progress bar, the config in checkpoints."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, TQDMProgressBar

log = logging.getLogger("lenet_exp")


class EpochLine(Callback):
    """Logs ``epoch 1, loss 0.5803, train acc 0.781, test acc 0.806, time 2.4 sec`` per epoch.

    The time is the wall time of the epoch's training plus its evaluation; ``seconds`` keeps
    every epoch's, for ``metrics.json``. Lightning runs callbacks' ``on_train_epoch_end`` before
    the module's, where the training metrics are logged, so the line is written when the next
    epoch starts (or training ends).
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start: float | None = None
        self._epoch = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)
        self._start = time.perf_counter()
        self._epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)

    def _write(self, trainer: pl.Trainer) -> None:
        if self._start is None or len(self.seconds) == 0 or not trainer.is_global_zero:
            return
        self._start = None  # written once
        m = trainer.callback_metrics
        split = getattr(trainer.datamodule, "eval_split", "val")
        evaluated = f", {split} acc {m[f'{split}/acc']:.3f}" if f"{split}/acc" in m else ""
        log.info(
            f"epoch {self._epoch + 1}, loss {m['train/loss']:.4f}, "
            f"train acc {m['train/acc']:.3f}{evaluated}, time {self.seconds[-1]:.1f} sec"
        )


class TerminalProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, shown only when stderr is a terminal, so log files and CI stay clean."""

    def __init__(self, refresh_rate: int = 20) -> None:
        super().__init__(refresh_rate=refresh_rate)
        if not sys.stderr.isatty():
            self.disable()


class ConfigInCheckpoint(Callback):
    """Stores the resolved run config (plain types only) in every checkpoint.

    A checkpoint then says how to rebuild its model, and loads with ``weights_only=True``.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["lenet_exp_config"] = self.config
