"""The LightningModule: cross-entropy, accuracy and the optimizer around any image classifier."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

ADAM_1E3 = partial(torch.optim.Adam, lr=1e-3)  # the book's optimizer


class Classifier(pl.LightningModule):
    """Trains ``net`` (images -> logits) with cross-entropy; logs loss and accuracy once per epoch.

    ``optimizer`` is a partial optimizer (Hydra's ``_partial_: true``) that is given the parameters.
    Per-epoch evaluation is logged as ``test/*`` when the datamodule evaluates the test set after
    every epoch (the book's protocol) and as ``val/*`` when it holds out a validation split.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[[Iterable[Tensor]], torch.optim.Optimizer] = ADAM_1E3,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.net = net
        self.optimizer = optimizer
        # Metric states accumulate on the training device; nothing is synced until the epoch ends.
        self.train_loss = MeanMetric()
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.eval_loss = MeanMetric()
        self.eval_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        # Only accumulate here: a self.log call per step costs about 0.8 ms, a third of a
        # LeNet step on a 2-core CPU. The epoch's values are logged once, in on_train_epoch_end.
        self.train_loss.update(loss.detach(), weight=len(y))
        self.train_acc.update(logits.detach(), y)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss", self.train_loss)
        self.log("train/acc", self.train_acc)

    def _evaluate(self, batch: tuple[Tensor, Tensor], split: str) -> None:
        x, y = batch
        logits = self(x)
        self.eval_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.eval_acc.update(logits, y)
        self.log(f"{split}/loss", self.eval_loss, on_step=False, on_epoch=True)
        self.log(f"{split}/acc", self.eval_acc, on_step=False, on_epoch=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, getattr(self.trainer.datamodule, "eval_split", "val"))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.parameters())
