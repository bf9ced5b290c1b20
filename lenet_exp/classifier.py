"""The LightningModule: cross-entropy, accuracy, the optimizer and its schedule around any image classifier, and
the weights it evaluates (an exponential moving average, flip averaging)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from lenet_exp import many_steps
from lenet_exp.arguments import AUGMENT_ADVICE, check_logits, check_model
from lenet_exp.errors import UserError, nan_loss
from lenet_exp.metrics import Accuracy, WeightedMean
from lenet_exp.step_draws import step_draws

ADAM_1E3 = partial(torch.optim.Adam, lr=1e-3)  # the book's optimizer
EPOCH_METRICS = "lenet_exp_epoch_metrics"  # in a checkpoint: its epoch's logged metrics, as plain numbers


class Classifier(pl.LightningModule):
    """Trains ``net`` (images -> logits) with cross-entropy; logs loss and accuracy once per epoch.

    ``optimizer`` is a partial optimizer (Hydra's ``_partial_: true``) that is given the parameters.
    With ``ema_decay`` (such as 0.999) an exponential moving average of the weights (and batch-norm
    statistics) is kept after every step, and evaluation, test and prediction use it. With
    ``flip_average`` they average the class probabilities of each image and its mirror image.
    Per-epoch evaluation is logged as ``test/*`` when the datamodule evaluates the test set after
    every epoch (the book's protocol) and as ``val/*`` when it holds out a validation split.

    When the data module serves several batches per training step (``steps_per_call``; this argument is
    only accepted, for stored configs), lenet_exp.many_steps takes their steps with the same loss, metrics,
    schedule and EMA, on CUDA with ``cuda_graph`` each a replayed CUDA graph (no effect on a CPU).
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
        steps_per_call: int | str | None = None,
        cuda_graph: bool = True,
    ) -> None:
        super().__init__()
        lr = getattr(optimizer, "keywords", {}).get("lr")  # a partial optimizer's learning rate
        check_model(lr, label_smoothing, ema_decay, compile, flip_average, cuda_graph)
        if augment is not None and not callable(augment):
            raise UserError(f"model.augment={augment!r} is not an augmentation; {AUGMENT_ADVICE}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "augment", "steps_per_call"], logger=False)
        self.net = net
        # The average is a submodule, so checkpoints hold it and a resumed run continues it exactly.
        self.ema = None
        if ema_decay is not None:
            self.ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            self.ema.requires_grad_(False)  # not trained: the optimizer and DDP leave it alone
        self.flip_average, self.cuda_graph = flip_average, cuda_graph
        self.optimizer, self.scheduler = optimizer, scheduler
        self.augment, self.label_smoothing = augment, label_smoothing
        self.many_steps: many_steps.ManySteps | None = None  # set per fit, in setup
        # torch.compile wraps the same parameters, out of the module tree: checkpoints hold the plain net's keys.
        # A string is torch.compile's mode, such as "reduce-overhead" (CUDA graphs on a GPU).
        mode = compile if isinstance(compile, str) else None
        object.__setattr__(self, "_compiled", torch.compile(net, mode=mode) if compile else None)
        # Metric states accumulate on the training device; nothing is synced until the epoch ends.
        self.train_loss, self.eval_loss = WeightedMean(), WeightedMean()
        self.train_acc, self.eval_acc = Accuracy(), Accuracy()
        # The epoch's first step whose loss was NaN or infinite (-1: none), on the device: read once, at its end.
        self.register_buffer("first_bad_step", torch.tensor(-1), persistent=False)
        self._example = not compile
        self.epoch_metrics: dict[str, float] = {}  # the last epoch's train/* and evaluation, kept in checkpoints

    @property
    def example_input_array(self) -> Tensor | None:
        """For the model summary's shapes and FLOPs (not compiled: one more compilation only to print them); in
        the weights' dtype, as the summary skips the precision plugin's conversion (trainer.precision=64-true)."""
        return torch.zeros(1, 1, 28, 28, dtype=next(self.net.parameters()).dtype) if self._example else None

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, classes) of images (N, 1, 28, 28): the trained net's in training mode, else ``_evaluated``."""
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

    def loss_and_logits(self, x: Tensor, y: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
        """The mean cross-entropy of a batch (B,1,28,28) with labels (B,), and its logits (B, classes): the one
        loss of training (with ``label_smoothing``), evaluation and lenet_exp.many_steps."""
        logits = self(x)
        check_logits(logits, len(x), self.hparams.num_classes)
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits

    def note_bad(self, bad: Tensor, step: int | Tensor) -> None:
        """Notes ``step`` (of the epoch) as the first with a NaN or infinite loss if ``bad`` and none was yet."""
        self.first_bad_step.copy_(torch.where(bad & (self.first_bad_step < 0), step, self.first_bad_step))

    def setup(self, stage: str) -> None:
        """Lightning's automatic optimization, or lenet_exp.many_steps' when the data module serves groups."""
        if stage == "fit":
            self.many_steps = many_steps.ManySteps.for_fit(self, self.cuda_graph)
            self.automatic_optimization = self.many_steps is None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        """One batch (B,...) and its loss, for Lightning's optimizer step; or K batches (K,B,...), K steps."""
        if self.many_steps is not None:
            return self.many_steps.training_step(batch, batch_idx)
        x, y = batch
        per_step = self.trainer.accumulate_grad_batches
        micro = batch_idx % per_step  # the batch within its optimizer step, with gradient accumulation
        if self.augment is not None:  # on the device, seeded by the batch's number in the run (many_steps: per step)
            x = self.augment(x, self.global_step * per_step + micro)
        with step_draws(self.device, self.global_step, micro):
            loss, logits = self.loss_and_logits(x, y, self.label_smoothing)  # (backward draws nothing)
        # Only accumulated here (a self.log call per step costs ~0.8 ms); logged once, in on_train_epoch_end.
        self.train_loss.update(loss.detach(), weight=len(y))
        self.train_acc.update((logits.detach().argmax(1) == y).sum(), len(y))
        self.note_bad(~torch.isfinite(loss.detach()), batch_idx)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None and self.automatic_optimization:
            self.ema.update_parameters(self.net)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        logged = self.trainer.callback_metrics.items()  # with other callbacks' (lr-Adam), which metrics.json holds
        others = {k: float(v) for k, v in logged if k != "step" and isinstance(v, Tensor) and v.numel() == 1}
        checkpoint[EPOCH_METRICS] = others | self.epoch_metrics
        if self.many_steps is not None:
            self.many_steps.on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.epoch_metrics = dict(checkpoint.get(EPOCH_METRICS, {}))  # (none in checkpoints before 2026-12-05)
        many_steps.carry_step_count(checkpoint, self.automatic_optimization)

    def _log_epoch(self, metrics: dict[str, Any]) -> None:
        """Logs the epoch's ``metrics`` (lenet_exp's loggers put them at the epoch, from 0, which Lightning adds to
        what it hands them: :func:`lenet_exp.loggers.at_epoch`), and keeps their values for checkpoints: a run
        resumed after its last epoch trains nothing, and its metrics.json takes them from last.ckpt. (Not a
        logged ``step``: callbacks read that as the optimizer step, and ``ModelCheckpoint(filename="{step}",
        every_n_train_steps=...)`` named every checkpoint after the first epoch ``step=0``, each replacing the last.)"""
        self.log_dict(metrics)
        if not self.trainer.sanity_checking:
            # every rank computes (a synced reduction), as Lightning does when it logs them, the value it logs
            self.epoch_metrics |= {k: float(m.compute()) for k, m in metrics.items()}

    def on_train_epoch_end(self) -> None:
        bad_steps = self.all_gather(self.first_bad_step).view(-1)  # every rank stops together under DDP
        if (bad_steps >= 0).any():
            step = int(bad_steps[bad_steps >= 0].min())
            group, saved = self.trainer.optimizers[0].param_groups[0], self.trainer.checkpoint_callback is not None
            saved = saved and bool(getattr(self.trainer.checkpoint_callback, "last_model_path", ""))
            raise nan_loss(self.current_epoch, step, group["lr"], self.trainer.precision, saved, group.get("eps"))
        self._log_epoch({"train/loss": self.train_loss, "train/acc": self.train_acc})

    def _evaluate(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """Accumulates a batch's evaluation metrics (logged once, at the epoch's end); its predicted classes (N,)."""
        loss, logits = self.loss_and_logits(*batch)
        predicted = logits.argmax(1)
        self.eval_loss.update(loss, weight=len(batch[1]))
        self.eval_acc.update((predicted == batch[1]).sum(), len(batch[1]))
        return predicted

    def _log_evaluation(self, split: str) -> None:
        self._log_epoch({f"{split}/loss": self.eval_loss, f"{split}/acc": self.eval_acc})

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation(getattr(self.trainer.datamodule, "eval_split", "val"))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Returns the predicted classes (N,), for callbacks such as TestImages."""
        return self._evaluate(batch)

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        try:
            optimizer = self.optimizer(self.net.parameters())
        except ValueError as err:  # torch's own checks: "Invalid learning rate: -0.1", an empty parameter list
            fix = "use e.g. model.optimizer.lr=0.001" if list(self.net.parameters()) else "model.net has no weights"
            raise UserError(f"model.optimizer is refused by torch ({err}); {fix}.") from err
        if self.scheduler is None:
            return optimizer
        scheduler = many_steps.over_the_run(self.scheduler, optimizer, self.trainer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
