"""Many optimizer steps per Lightning training step (``steps_per_call``): what it is in a fit, the batches, the steps.

Lightning spends about 2 ms of Python per ``training_step`` (hooks, the optimizer closure and wrapper, progress
bookkeeping), as much as a LeNet step's arithmetic on a fast CPU and far more than on a GPU. The data module serves
``steps_per_call`` batches at once (``BatchGroups``), so that this is paid once per call, and ``ManySteps`` takes
their steps as a bare loop does: the torch optimizer and ``backward`` themselves, each step's loss and correct count
kept on the device, the metrics, the NaN check and Lightning's step count updated once per call. On CUDA each step
can be one replayed CUDA graph (lenet_exp.cuda_graph). What ``steps_per_call`` may be, and what ``auto`` becomes, are
lenet_exp.steps_per_call's rules, which load no torch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from lenet_exp.cuda_graph import DeviceHyperparameters, GraphedStep
from lenet_exp.errors import UserError
from lenet_exp.step_draws import step_draws
from lenet_exp.steps_per_call import AUTOMATIC, COUNTING, ONE_STEP_ONLY, per_call

if TYPE_CHECKING:
    import pytorch_lightning as pl

# Hooks Lightning calls around every optimizer step; these steps call none of them.
STEP_HOOKS = ("on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step")
# Hooks Lightning calls around every training batch, which is a call here: one stacked group of up to N batches
# (K, B, 1, 28, 28). lenet_exp's callbacks, those below and a callback whose class sets batch_hooks_per_call = True
# take them per call; another callback of one's own may not.
BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")


def resolve(value: object, trainer: pl.Trainer) -> int | None:
    """The optimizer steps per call of this fit (None: a whole epoch), from ``trainer``'s device and settings:
    ``auto`` is 1 under DDP, with a Trainer argument that counts or needs single steps, a loss scaler, a
    callback with per-step or per-batch hooks, Lightning's SWA or gradient accumulation schedule, a checkpoint
    every N steps, a learning rate logged per step; else ``CPU_DEFAULT`` on a CPU and ``CUDA_DEFAULT`` on CUDA."""
    from pytorch_lightning import Callback, LightningModule
    from pytorch_lightning.callbacks import (
        GradientAccumulationScheduler,
        LearningRateMonitor,
        ModelCheckpoint,
        ProgressBar,
        StochasticWeightAveraging,
        Timer,
    )
    from pytorch_lightning.strategies import DDPStrategy

    args = {k: getattr(trainer, k) for k in (*COUNTING, *ONE_STEP_ONLY)}
    if trainer.fast_dev_run:  # Lightning sets max_steps to fast_dev_run's batches itself; the user gave none
        args["max_steps"] = ONE_STEP_ONLY["max_steps"]
    args["ddp"] = trainer.world_size > 1 or isinstance(trainer.strategy, DDPStrategy)
    refusals = {}
    if getattr(trainer.precision_plugin, "scaler", None) is not None:
        refusals[f"trainer.precision={trainer.precision}"] = f"scales the loss, so it {AUTOMATIC}"
    hooked = [(c, Callback) for c in trainer.callbacks]
    if trainer.lightning_module is not None:
        hooked.append((trainer.lightning_module, LightningModule))
    for each, base in hooked:
        for hook in STEP_HOOKS:
            if getattr(type(each), hook, None) is not getattr(base, hook):
                refusals[f"{type(each).__name__}.{hook}"] = f"runs at every optimizer step, so it {AUTOMATIC}"
    per_call_alike = (ProgressBar, Timer, ModelCheckpoint, LearningRateMonitor)  # the last two: below
    for each in trainer.callbacks:
        if type(each).__module__.startswith("lenet_exp.") or isinstance(each, per_call_alike):
            continue
        if getattr(each, "batch_hooks_per_call", False) is True:  # it knows a batch is a call's group
            continue
        for hook in BATCH_HOOKS:
            if getattr(type(each), hook, None) is not getattr(Callback, hook):
                refusals[f"{type(each).__name__}.{hook}"] = f"runs at every batch, so it {AUTOMATIC}"
    # Lightning's callbacks that change its optimization loop: SWA swaps in a schedule stepped per epoch (these steps
    # step the schedule per optimizer step), the accumulation schedule refuses manual optimization.
    for each in trainer.callbacks:
        if isinstance(each, StochasticWeightAveraging):
            refusals[type(each).__name__] = f"steps its learning-rate schedule per epoch, so it {AUTOMATIC}"
        elif isinstance(each, GradientAccumulationScheduler):
            refusals[type(each).__name__] = f"accumulates gradients, so it {AUTOMATIC}"
        # Callbacks that count optimizer steps in Lightning's global_step, which moves by a call's steps at once: a
        # checkpoint every N steps is kept only where a call ends on a multiple of N (16, 32, 39, 40 for N=10: one),
        # and a per-step learning rate is logged per log_every_n_steps calls. (ModelCheckpoint's count is private.)
        elif isinstance(each, ModelCheckpoint) and getattr(each, "_every_n_train_steps", 0):
            every = each._every_n_train_steps
            refusals[f"{type(each).__name__}(every_n_train_steps={every})"] = (
                f"counts optimizer steps, so it {AUTOMATIC}"
            )
        elif isinstance(each, LearningRateMonitor) and each.logging_interval != "epoch":
            refusals[f"{type(each).__name__}(logging_interval={each.logging_interval})"] = (
                f"logs at optimizer steps, so it {AUTOMATIC}"
            )
    if (needs := _closure_optimizer(trainer.lightning_module)) is not None:
        refusals[f"model.optimizer._target_={needs}"] = f"evaluates the loss again within a step, so it {AUTOMATIC}"
    return per_call(value, trainer.strategy.root_device.type, args, refusals)


def _closure_optimizer(module: Any) -> str | None:
    """The optimizer class of ``module`` (its ``optimizer`` as the config makes it) when its ``step`` must be given
    a closure, as ``torch.optim.LBFGS``'s, which evaluates the loss several times per step: these steps give none."""
    made = getattr(module, "optimizer", None)
    kind = getattr(made, "func", made)  # a partial's class
    closure = inspect.signature(kind.step).parameters.get("closure") if isinstance(kind, type) else None
    if closure is None or closure.default is not inspect.Parameter.empty:
        return None
    module_name = kind.__module__
    if module_name.startswith("torch.optim."):  # torch.optim.lbfgs.LBFGS as the configs name it: torch.optim.LBFGS
        module_name = "torch.optim"
    return f"{module_name}.{kind.__name__}"


def served(trainer: pl.Trainer) -> int | None:
    """The optimizer steps per call the data module serves this fit (1 for a data module without groups)."""
    return getattr(trainer.datamodule, "steps_per_item", 1)


def carry_step_count(checkpoint: dict[str, Any], automatic: bool) -> None:
    """Let a run continued with the other kind of steps go on counting its optimizer steps: one step per call
    (``automatic``) or several (ckpt_path= of a run written before steps_per_call=auto, a CPU run continued on
    CUDA). Lightning keeps separate records for automatic and manual optimization, and global_step (which seeds
    augmentation and names checkpoints) reads only the one in use, so the one in use takes the other's count."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    auto = loop.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
    manual = loop.get("epoch_loop.manual_optimization.optim_step_progress")
    if not auto or not manual:
        return
    mine, other = (auto, manual) if automatic else (manual, auto)
    if mine["total"]["completed"] == 0 < other["total"]["completed"]:
        for part in ("total", "current"):
            mine[part].update(ready=other[part]["ready"], completed=other[part]["completed"])


class BatchGroups(Sampler[Tensor]):
    """The batches of ``sampler`` in its order, ``steps_per_call`` full batches per item (None: every full
    batch of the epoch in one), and the short last batch, if any, as an item of its own: each item is a
    (K,B) tensor of indices, which the dataset turns into (K,B,...) tensors in one indexing operation.

    ``sampler`` is kept as ``.sampler`` so that Lightning's ``set_epoch`` reaches it.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, steps_per_call: int | None) -> None:
        self.sampler, self.batch_size, self.steps_per_call = sampler, batch_size, steps_per_call

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch: one per batch, the short last one included."""
        return math.ceil(len(self.sampler) / self.batch_size)

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return (math.ceil(full / self.steps_per_call) if self.steps_per_call else min(full, 1)) + (rest > 0)

    def __iter__(self) -> Iterator[Tensor]:
        # One tensor of the epoch's order, cut into views: no Python list per batch for the dataset to convert
        indices, b = torch.from_numpy(np.fromiter(self.sampler, dtype=np.int64)), self.batch_size
        full = len(indices) // b * b
        if full:  # (no full batch, where the data holds fewer images than a batch: the short one alone)
            batches = indices[:full].view(-1, b)
            yield from batches.split(self.steps_per_call or len(batches))
        if full < len(indices):
            yield indices[full:].view(1, -1)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]


def optimizer_steps(trainer: pl.Trainer) -> float:
    """The fit's length in optimizer steps (for a schedule over the whole run); inf while max_epochs=-1 leaves
    it open. Lightning's estimate counts training steps, that is calls: with groups, a call is several."""
    total = trainer.estimated_stepping_batches
    groups = getattr(trainer.train_dataloader, "batch_sampler", None)
    if isinstance(groups, BatchGroups) and math.isfinite(total):
        total = total // len(groups) * groups.steps
    return total


def over_the_run(scheduler: Any, optimizer: torch.optim.Optimizer, trainer: pl.Trainer) -> Any:
    """``scheduler`` (a partial LR scheduler) for ``optimizer``; a schedule over the run (OneCycleLR's
    total_steps, CosineAnnealingLR's T_max) not given its length gets the fit's optimizer steps."""
    wanted = inspect.signature(getattr(scheduler, "func", scheduler)).parameters
    given = getattr(scheduler, "keywords", {})
    missing = [k for k in ("total_steps", "T_max") if k in wanted and k not in given]
    total = optimizer_steps(trainer) if missing else 0
    if missing and not math.isfinite(total):  # trainer.max_epochs=-1, ended by max_time or early stopping
        raise UserError(
            f"model.scheduler.{missing[0]} is the run's length, which trainer.max_epochs=-1 leaves open; give "
            f"trainer.max_steps (such as 10000), a number of epochs, or model.scheduler.{missing[0]}."
        )
    return scheduler(optimizer, **{k: total for k in missing})


def check_restored_schedule(trainer: pl.Trainer, path: str) -> None:
    """Refuse to go on from ``path`` (``ckpt_path=``) past the end of its schedule. Lightning restores the schedule
    with the weights, and a schedule over the run (OneCycleLR) with the length of the run that wrote it: a longer
    run failed at its first step past it, with PyTorch's "Tried to step 41 times". Called once it is restored."""
    needed = optimizer_steps(trainer)
    for config in trainer.lr_scheduler_configs:
        total = getattr(config.scheduler, "total_steps", None)
        if isinstance(total, int) and needed > total:
            takes = f"{needed:.0f}" if math.isfinite(needed) else "more, with trainer.max_epochs=-1"
            raise UserError(
                f"ckpt_path={path} holds a {type(config.scheduler).__name__} schedule over the {total} optimizer "
                f"steps of the run that wrote it, which goes on with its weights and ends there; this run would take "
                f"{takes}. Go on with that run's trainer.max_epochs and data.batch_size, or start a new run."
            )


class ManySteps:
    """The training of ``module`` (a lenet_exp Classifier) in calls of K batches (K,B,...): K optimizer steps
    each, in order, each as one step per call takes it (augmentation seeded by the step, the schedule stepped
    and the weight average updated after it), with Lightning's manual optimization. With ``graph`` (CUDA)
    each step is a replayed CUDA graph; a checkpoint then holds the optimizer's settings as plain numbers."""

    def __init__(self, module: Any, graph: bool) -> None:
        self.module, self.graph = module, graph
        self.graphed: GraphedStep | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.held: DeviceHyperparameters | None = None
        self.epoch_start = 0  # global_step when this epoch began

    @classmethod
    def for_fit(cls, module: Any, cuda_graph: bool) -> ManySteps | None:
        """The steps of this fit, or None for Lightning's own (one step per call); refuses what a graph cannot
        capture."""
        trainer = module.trainer
        if served(trainer) == 1:
            return None
        graph = cuda_graph and trainer.strategy.root_device.type == "cuda"
        if graph and module.hparams.get("compile"):
            raise UserError(
                "model.compile and model.cuda_graph both compile the training step; "
                "set model.cuda_graph=false or model.compile=false."
            )
        if graph and str(trainer.precision).startswith("16"):
            raise UserError(
                f"trainer.precision={trainer.precision} scales the loss, which a captured CUDA graph "
                "cannot do; use trainer.precision=bf16-mixed or model.cuda_graph=false."
            )
        optimizer = getattr(module.optimizer, "func", module.optimizer)  # a partial's class
        if graph and optimizer not in (torch.optim.Adam, torch.optim.AdamW):
            raise UserError(
                f"model.cuda_graph=true captures Adam and AdamW steps only, not {getattr(optimizer, '__name__', '?')}; "
                "set model.cuda_graph=false or use torch.optim.Adam or AdamW."
            )
        return cls(module, graph)

    def step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step that reads nothing back to the host (a CUDA graph can capture it): its loss and
        logits, on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, logits = self.module.loss_and_logits(x, y, self.module.label_smoothing)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        module, trainer = self.module, self.module.trainer
        self.optimizer = trainer.optimizers[0]  # the torch optimizer: Lightning's wrapper counts and hooks per step
        schedules = trainer.lr_scheduler_configs
        scheduler = schedules[0].scheduler if schedules else None
        if self.graph and self.graphed is None:
            cycled = bool(getattr(scheduler, "cycle_momentum", False))  # OneCycleLR's, CyclicLR's
            self.held = DeviceHyperparameters(self.optimizer, module.device, cycled_beta1=cycled)
            self.graphed = GraphedStep(self.step)
        run = self.graphed or self.step
        first = module.global_step  # Lightning counts this call's steps after it
        if batch_idx == 0:
            self.epoch_start = first
        losses, logits = [], []
        for i, (x, y) in enumerate(zip(*batch, strict=True)):
            if module.augment is not None:  # seeded by the step, as with one step per call
                x = module.augment(x, first + i)
            if self.graph:  # the graph's draws follow its generator's offset, replay after replay
                loss, out = run(x, y)
            else:
                with step_draws(module.device, first + i):  # as with one step per call
                    loss, out = run(x, y)
            losses.append(loss)
            logits.append(out)
            if scheduler is not None:
                scheduler.step()
                if self.held is not None:
                    self.held.refresh()
            if module.ema is not None:
                module.ema.update_parameters(module.net)
        self._count(trainer, len(losses))
        # The call's metrics and NaN check on the device, once per call and with no host sync: the losses (K,),
        # the logits (K,B,classes) and labels (K,B) of its K batches (of one size).
        loss, labels = torch.stack(losses), batch[1]
        module.train_loss.update(loss.mean(), labels.numel())
        module.train_acc.update((torch.stack(logits).argmax(-1) == labels).sum(), labels.numel())
        bad = ~torch.isfinite(loss)
        module.note_bad(bad.any(), first - self.epoch_start + bad.int().argmax())

    @staticmethod
    def _count(trainer: pl.Trainer, steps: int) -> None:
        """Counts ``steps`` optimizer steps where Lightning counts manual ones (what global_step reads). Lightning
        counts a step when its optimizer wrapper steps, which these steps bypass, and offers no public way to
        count one otherwise: this is its private progress record."""
        progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        for _ in range(steps):
            progress.increment_ready()
            progress.increment_completed()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint of the graph path holds plain numbers, as an eager run's does (it loads into either)."""
        if self.held is not None:
            checkpoint["optimizer_states"] = [self.held.plain(s) for s in checkpoint["optimizer_states"]]
