"""What a file someone else made may name: a checkpoint or a run folder is data, never code.

Their stored configs name classes by ``_target_``. Before anything is built from such a config,
every ``_target_`` in it, at any depth, must be on the allowlist below, or named by the user
(``trust=`` on the command line, ``trusted_targets`` in their own config). Anything else is
refused with one sentence naming the key, so nothing it names is imported or run. This is the
allowlist step of the gate (runtime/stored_config.py), which calls ``check_target`` for every
``_target_`` it meets in its walk of the config.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from lenet_exp.errors import UserError

# lenet_exp's own classes, and the Lightning classes lenet_exp's configs build: a checkpoint
# stores the whole run config (trainer, logger and callbacks too), and resume rebuilds all of it.
ALLOWED = frozenset(
    {
        "lenet_exp.classifier.Classifier",
        "lenet_exp.models.LeNet",
        "lenet_exp.models.lenet.LeNet",
        "lenet_exp.augment.BatchAugment",
        "lenet_exp.data.FashionMNIST",
        "lenet_exp.callbacks.BestCheckpoint",
        "lenet_exp.callbacks.TerminalProgressBar",
        "lenet_exp.callbacks.TestImages",
        "lenet_exp.network_view.NetworkView",
        "lenet_exp.runtime.atomic.AtomicCheckpointIO",
        "lenet_exp.loggers.EpochCSVLogger",
        "lenet_exp.loggers.RunTensorBoardLogger",
        "lenet_exp.loggers.RunMLFlowLogger",
        "lenet_exp.loggers.LocalMLFlowLogger",  # its name before it was renamed, in earlier runs' configs
        "pytorch_lightning.Trainer",
        "pytorch_lightning.loggers.TensorBoardLogger",
        "pytorch_lightning.loggers.CSVLogger",
        "pytorch_lightning.loggers.MLFlowLogger",
        "pytorch_lightning.callbacks.ModelCheckpoint",
        "pytorch_lightning.callbacks.EarlyStopping",
        "pytorch_lightning.callbacks.LearningRateMonitor",
        "pytorch_lightning.callbacks.ModelSummary",
        # Lightning's callbacks docs/configuration.md shows (+callbacks.swa, a schedule of accumulation, a time limit)
        "pytorch_lightning.callbacks.StochasticWeightAveraging",
        "pytorch_lightning.callbacks.GradientAccumulationScheduler",
        "pytorch_lightning.callbacks.Timer",
    }
)


def _torch_class(target: str) -> bool:
    """``torch.optim.<Optimizer>`` or ``torch.optim.lr_scheduler.<scheduler>``, looked up by name
    in modules torch has already imported (nothing new is imported)."""
    import torch  # here, so that the gate can refuse a folder before torch takes its seconds to load

    module, _, name = target.rpartition(".")
    if module == "torch.optim":
        found = getattr(torch.optim, name, None)
        return isinstance(found, type) and issubclass(found, torch.optim.Optimizer)
    if module == "torch.optim.lr_scheduler":
        found = getattr(torch.optim.lr_scheduler, name, None)
        schedulers = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        return isinstance(found, type) and issubclass(found, schedulers)
    return False


def allowed(target: Any, trusted: Collection[str] = ()) -> bool:
    return isinstance(target, str) and (target in ALLOWED or target in trusted or _torch_class(target))


def check_target(key: str, target: Any, source: str, trusted: Collection[str] = (), hint: str = "trust") -> None:
    """Refuse ``target``, the value of ``key`` (a dotted ``..._target_``) in the config read from ``source``,
    unless it is allowed. ``hint`` is the argument the refusal tells the user to add: ``trust`` (eval, predict,
    resume, ``lenet_exp.load``) or ``trusted_targets`` (training with ``ckpt_path=``, whose config is Hydra's)."""
    if allowed(target, trusted):
        return
    every = ",".join(dict.fromkeys([*trusted, target]))  # with those already given: the argument replaces them
    allow = f"trust={every}" if hint == "trust" else f"'trusted_targets=[{every}]'"
    raise UserError(
        f"{source} names {key}={target}, which is not a class lenet_exp builds from a file it was "
        f"given (its own classes, torch optimizers and schedulers); nothing was loaded. If you trust "
        f"that file and {target}, allow it with {allow}."
    )
