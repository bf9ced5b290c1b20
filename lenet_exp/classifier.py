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

from lenet_exp import steps
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
    """The share of correct top-1 predictions, counted on the device and summed across processes;
    ``update`` takes how many predictions were correct and how many were made.

    torchmetrics' MulticlassAccuracy counts through ``torch.bincount``, which on a GPU reads the
    largest value back to the host: a device sync per step. Counting matches needs none.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, correct: Tensor, total: int | Tensor) -> None:
        self.correct += correct
        self.total += total

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

    With ``steps_per_call`` other than 1 (the data module's, which then serves that many batches at
    once) one ``training_step`` takes that many optimizer steps, with Lightning's manual optimization;
    the steps, their order, augmentation, schedules, EMA and metrics are those of one step per call.
    On CUDA, with ``cuda_graph``, each of those steps is a replayed CUDA graph (lenet_exp.steps);
    on a CPU ``cuda_graph`` has no effect.
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
        steps_per_call: int | str = 1,
        cuda_graph: bool = True,
    ) -> None:
        super().__init__()
        steps.check_steps_per_call(steps_per_call, "model.steps_per_call")
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
        self.steps_per_call, self.cuda_graph = steps_per_call, cuda_graph
        self._graph_on = False  # decided in setup, once the device is known
        self._graphed: steps.GraphedStep | None = None
        self._held: steps.DeviceHyperparameters | None = None
        self._first_step_of_epoch = 0
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
        # The graph path's counters, updated in place so that a captured graph keeps finding them: the
        # step within the epoch, and the sums of one call (loss x images, correct predictions, images).
        self.register_buffer("step_in_epoch", torch.tensor(0), persistent=False)
        self.register_buffer("call_sums", torch.zeros(3), persistent=False)
        self._example = not compile

    @property
    def example_input_array(self) -> Tensor | None:
        """Lets Lightning's model summary show each layer's output shape and FLOPs (a compiled net is left
        out: one more compilation, for a batch of one, only to print them). In the weights' dtype: the summary
        feeds it to the net as it is, without the precision plugin's conversion (trainer.precision=64-true)."""
        return torch.zeros(1, 1, 28, 28, dtype=next(self.net.parameters()).dtype) if self._example else None

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

    def setup(self, stage: str) -> None:
        """One step per call: Lightning's automatic optimization. More: this module's steps (manual
        optimization), on CUDA as CUDA graphs unless ``cuda_graph`` is false."""
        if stage != "fit":
            return
        device = self.trainer.strategy.root_device
        per_call = steps.resolve(self.steps_per_call, device, self.trainer.world_size)
        self.automatic_optimization = per_call == 1
        self._graph_on = per_call != 1 and self.cuda_graph and device.type == "cuda"
        if self._graph_on and self._compiled is not None:
            raise UserError(
                "model.compile and model.cuda_graph both compile the training step; "
                "set model.cuda_graph=false or model.compile=false."
            )
        if self._graph_on and str(self.trainer.precision).startswith("16"):
            raise UserError(
                f"trainer.precision={self.trainer.precision} scales the loss, which a captured CUDA graph "
                "cannot do; use trainer.precision=bf16-mixed or model.cuda_graph=false."
            )

    def on_train_epoch_start(self) -> None:
        self._first_step_of_epoch = self.global_step
        self.step_in_epoch.zero_()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None and self.automatic_optimization:
            self.ema.update_parameters(self.net)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Augments training batches on the device they are on (with several steps per call: per step)."""
        if self.augment is not None and self.trainer.training and isinstance(batch, tuple | list):
            if not self.automatic_optimization:
                return batch
            x, y = batch
            return self.augment(x, self.global_step), y
        return batch

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        """One batch (B,...) with automatic optimization; else K batches (K,B,...), one optimizer step each."""
        if self.automatic_optimization:
            x, y = batch
            return self._loss(x, y, batch_idx)
        if self._graph_on and self._graphed is None:
            self._held = steps.DeviceHyperparameters(self.trainer.optimizers[0], self.device)
            self._graphed = steps.GraphedStep(self._whole_step)
        if self._graphed is not None:
            self.call_sums.zero_()
        for x, y in zip(*batch, strict=True):
            if self.augment is not None:  # seeded by the step, as with one step per call
                x = self.augment(x, self.global_step)
            if self._graphed is not None:
                self._graphed(x, y)
                self._count_step()
            else:
                optimizer = self.optimizers()
                optimizer.zero_grad()
                self.manual_backward(self._loss(x, y, self.global_step - self._first_step_of_epoch))
                optimizer.step()
            self._after_step()
        if self._graphed is not None:  # the call's sums into the epoch's metrics, on the device
            images = self.call_sums[2]
            self.train_loss.update(self.call_sums[0] / images, images)
            self.train_acc.update(self.call_sums[1].long(), images.long())
        return None

    def _loss(self, x: Tensor, y: Tensor, step: int | Tensor) -> Tensor:
        """The training loss of a batch; accumulates the metrics and notes a NaN at ``step`` (of the epoch)."""
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        # Only accumulate here: a self.log call per step costs about 0.8 ms, a third of a
        # LeNet step on a 2-core CPU. The epoch's values are logged once, in on_train_epoch_end.
        self.train_loss.update(loss.detach(), weight=len(y))
        self.train_acc.update((logits.detach().argmax(1) == y).sum(), len(y))
        self._note_bad(loss.detach(), step)
        return loss

    def _note_bad(self, loss: Tensor, step: int | Tensor) -> None:
        bad = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step.copy_(torch.where(bad, step, self.first_bad_step))  # in place: a graph may hold it

    def _whole_step(self, x: Tensor, y: Tensor) -> None:
        """One optimizer step that reads nothing back to the host, so that it can be captured as a CUDA
        graph: the torch optimizer itself (Lightning's wrapper keeps host-side counts; _count_step does)."""
        optimizer = self.trainer.optimizers[0]
        optimizer.zero_grad(set_to_none=True)
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        loss.backward()
        optimizer.step()
        loss = loss.detach()
        self.call_sums[0] += loss * len(y)
        self.call_sums[1] += (logits.detach().argmax(1) == y).sum()
        self.call_sums[2] += len(y)
        self._note_bad(loss, self.step_in_epoch)
        self.step_in_epoch += 1

    def _count_step(self) -> None:
        """Counts a replayed step where Lightning counts manual optimizer steps (what global_step reads)."""
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()

    def _after_step(self) -> None:
        """What follows every optimizer step of a call, as Lightning does it after one step per call."""
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]
            if self._held is not None:
                self._held.refresh()
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint of the graph path holds plain numbers, as an eager run's does (it loads into either)."""
        if self._held is not None:
            checkpoint["optimizer_states"] = [
                steps.DeviceHyperparameters.plain(s) for s in checkpoint["optimizer_states"]
            ]

    def on_train_epoch_end(self) -> None:
        bad_steps = self.all_gather(self.first_bad_step).view(-1)  # every rank stops together under DDP
        if (bad_steps >= 0).any():
            step = int(bad_steps[bad_steps >= 0].min())
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
        self.eval_acc.update((logits.argmax(1) == y).sum(), len(y))
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
        if self._graph_on and type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW):
            raise UserError(
                f"model.cuda_graph=true captures Adam and AdamW steps only, not {type(optimizer).__name__}; "
                "set model.cuda_graph=false or use torch.optim.Adam or AdamW."
            )
        if self.scheduler is None:
            return optimizer
        # A schedule over the whole run (OneCycleLR's total_steps, CosineAnnealingLR's T_max) is
        # given the run's length in optimizer steps, and is stepped after every step.
        wanted = inspect.signature(getattr(self.scheduler, "func", self.scheduler)).parameters
        given = getattr(self.scheduler, "keywords", {})
        missing = [k for k in ("total_steps", "T_max") if k in wanted and k not in given]
        total = self.trainer.estimated_stepping_batches  # Lightning counts calls of training_step
        if missing and not math.isfinite(total):  # trainer.max_epochs=-1, ended by max_time or early stopping
            raise UserError(
                f"model.scheduler.{missing[0]} is the run's length, which trainer.max_epochs=-1 leaves open; give "
                f"trainer.max_steps (such as 10000), a number of epochs, or model.scheduler.{missing[0]}."
            )
        groups = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        if isinstance(groups, steps.BatchGroups):  # several optimizer steps per call
            total = total // len(groups) * groups.steps
        scheduler = self.scheduler(optimizer, **{k: total for k in missing})
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
