"""The LightningModule: cross-entropy, accuracy and the optimizer around any image classifier."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import Metric

from lenet_exp.errors import UserError, check_value


class WeightedMean(Metric):
    """The mean of values given with weights (batch means with batch sizes), summed across processes.

    torchmetrics' MeanMetric either checks every value for NaN (a device sync per step) or, with
    ``nan_strategy="disable"``, ignores the weights; this one does neither, and a NaN shows.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: int) -> None:
        self.total += value * weight
        self.weight += weight

    def compute(self) -> Tensor:
        return self.total / self.weight


class Accuracy(Metric):
    """The share of correct top-1 predictions, counted on the device and summed across processes.

    torchmetrics' MulticlassAccuracy counts through ``torch.bincount``, which on a GPU reads the
    largest value back to the host: a device sync per step. Counting matches needs none.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        self.correct += (logits.argmax(1) == target).sum()
        self.total += len(target)

    def compute(self) -> Tensor:
        return self.correct.float() / self.total


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
ADAM_1E3 = partial(torch.optim.Adam, lr=1e-3)  # the book's optimizer


class Classifier(pl.LightningModule):
    """Trains ``net`` (images -> logits) with cross-entropy; logs loss and accuracy once per epoch.

    ``optimizer`` is a partial optimizer (Hydra's ``_partial_: true``) that is given the parameters.
    With ``ema_decay`` (such as 0.999) an exponential moving average of the weights (and batch-norm
    statistics) is kept after every step, and evaluation, test and prediction use it. With
    ``flip_average`` they average the class probabilities of each image and its mirror image.
    Per-epoch evaluation is logged as ``test/*`` when the datamodule evaluates the test set after
    every epoch (the book's protocol) and as ``val/*`` when it holds out a validation split.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[[Iterable[Tensor]], torch.optim.Optimizer] = ADAM_1E3,
        num_classes: int = 10,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        augment: nn.Module | None = None,
        label_smoothing: float = 0.0,
        compile: bool | str = False,
        ema_decay: float | None = None,
        flip_average: bool = False,
    ) -> None:
        super().__init__()
        lr = getattr(optimizer, "keywords", {}).get("lr")  # a partial optimizer's learning rate
        if lr is not None:
            check_value("model.optimizer.lr", lr, "number", 0.001)
        check_value("model.label_smoothing", label_smoothing, "number", 0.1, low=0, high=1)
        if ema_decay is not None:
            check_value("model.ema_decay", ema_decay, "number", 0.999, low=0, high=1)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "augment"], logger=False)
        self.net = net
        # The average is a submodule, so checkpoints hold it and a resumed run continues it exactly.
        self.ema = None
        if ema_decay is not None:
            self.ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            self.ema.requires_grad_(False)  # not trained: the optimizer and DDP leave it alone
        self.flip_average = flip_average
        self.optimizer, self.scheduler = optimizer, scheduler
        self.augment, self.label_smoothing = augment, label_smoothing
        # torch.compile wraps the same parameters; kept out of the module tree so that
        # checkpoints hold the plain net's keys and load with or without compiling.
        # A string is torch.compile's mode, such as "reduce-overhead" (CUDA graphs on a GPU).
        if isinstance(compile, str) and compile not in COMPILE_MODES:
            raise UserError(f"model.compile={compile!r} is not known; use true, false or one of {list(COMPILE_MODES)}.")
        mode = compile if isinstance(compile, str) else None
        object.__setattr__(self, "_compiled", torch.compile(net, mode=mode) if compile else None)
        # Metric states accumulate on the training device; nothing is synced until the epoch ends.
        self.train_loss = WeightedMean()
        self.train_acc = Accuracy()
        self.eval_loss = WeightedMean()
        self.eval_acc = Accuracy()
        # The first step of this epoch whose loss was NaN or infinite (-1: none), kept on the device
        # so that finding it costs no per-step sync; it is read once, at the end of the epoch.
        self.register_buffer("first_bad_step", torch.tensor(-1), persistent=False)
        # Lets Lightning's model summary show each layer's output shape and FLOPs (a compiled net is left
        # out: one more compilation, for a batch of one, only to print them).
        self.example_input_array = None if compile else torch.zeros(1, 1, 28, 28)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, classes) of images (N, 1, 28, 28): in training mode the trained net's, in eval mode
        (validation, test, predict) those of ``_evaluated``."""
        return self._trained(x) if self.training else self._evaluated(x)

    def _trained(self, x: Tensor) -> Tensor:
        return self._compiled(x) if self._compiled is not None else self.net(x)

    def _evaluated(self, x: Tensor) -> Tensor:
        """The weight average's logits with ``ema_decay``, else the trained net's; with ``flip_average``, the log
        of the mean probabilities of each image and its mirror image (softmax gives those back)."""
        net = self.ema.module if self.ema is not None else self._trained
        if not self.flip_average:
            return net(x)
        both = net(torch.cat([x, x.flip(-1)])).log_softmax(1).view(2, len(x), -1)
        return both.logsumexp(0) - math.log(2)  # log of the mean of the two probabilities

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Augments training batches on the device they are on."""
        if self.augment is not None and self.trainer.training and isinstance(batch, tuple | list):
            x, y = batch
            return self.augment(x, self.global_step), y
        return batch

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        # Only accumulate here: a self.log call per step costs about 0.8 ms, a third of a
        # LeNet step on a 2-core CPU. The epoch's values are logged once, in on_train_epoch_end.
        self.train_loss.update(loss.detach(), weight=len(y))
        self.train_acc.update(logits.detach(), y)
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, batch_idx, self.first_bad_step)
        return loss

    def on_train_epoch_end(self) -> None:
        steps = self.all_gather(self.first_bad_step).view(-1)  # every rank stops together under DDP
        if (steps >= 0).any():
            step = int(steps[steps >= 0].min())
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            raise UserError(
                f"the training loss became NaN or infinite in epoch {self.current_epoch + 1} at step "
                f"{step + 1}, so training stopped before saving this epoch (the last checkpoint holds the "
                f"last good one); lower the learning rate (it is {lr:g}) and run again."
            )
        self.log("train/loss", self.train_loss)
        self.log("train/acc", self.train_acc)
        self._epoch_as_step()

    def _epoch_as_step(self) -> None:
        """Loggers get the epoch (from 0) as the step of this hook's metrics, so that runs of any batch size
        line up; Lightning takes a logged "step" as the step, and then adds no "epoch" metric of its own.
        After training (the final test) it is the number of epochs trained."""
        self.log("step", float(self.current_epoch), sync_dist=True)

    def _evaluate(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        x, y = batch
        logits = self(x)
        self.eval_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.eval_acc.update(logits, y)
        self.log(f"{split}/loss", self.eval_loss, on_step=False, on_epoch=True)
        self.log(f"{split}/acc", self.eval_acc, on_step=False, on_epoch=True)
        return logits.argmax(1)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, getattr(self.trainer.datamodule, "eval_split", "val"))

    def on_validation_epoch_end(self) -> None:
        self._epoch_as_step()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Returns the predicted classes (N,), for callbacks such as TestImages."""
        return self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._epoch_as_step()

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        try:
            optimizer = self.optimizer(self.net.parameters())
        except ValueError as err:  # torch's own checks: "Invalid learning rate: -0.1", ...
            raise UserError(f"model.optimizer is refused by torch ({err}); use e.g. model.optimizer.lr=0.001.") from err
        if self.scheduler is None:
            return optimizer
        # A schedule over the whole run (OneCycleLR's total_steps, CosineAnnealingLR's T_max) is
        # given the run's length in optimizer steps, and is stepped after every step.
        wanted = inspect.signature(getattr(self.scheduler, "func", self.scheduler)).parameters
        given = getattr(self.scheduler, "keywords", {})
        length = {k: self.trainer.estimated_stepping_batches for k in ("total_steps", "T_max") if k in wanted}
        scheduler = self.scheduler(optimizer, **{k: v for k, v in length.items() if k not in given})
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
