"""What a file someone else made may name: a checkpoint or a run folder is data, never code.

Their stored configs name classes by ``_target_``. Before anything is built from such a config,
every ``_target_`` in it, at any depth, must be on the allowlist below, or named by the user
(``trust=`` on the command line, ``trusted_targets`` in their own config). Anything else is
refused with one sentence naming the key, so nothing it names is imported or run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lenet_exp.errors import UserError, first_line

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
        "lenet_exp.loggers.LocalMLFlowLogger",
        "pytorch_lightning.Trainer",
        "pytorch_lightning.loggers.TensorBoardLogger",
        "pytorch_lightning.loggers.CSVLogger",
        "pytorch_lightning.loggers.MLFlowLogger",
        "pytorch_lightning.callbacks.ModelCheckpoint",
        "pytorch_lightning.callbacks.EarlyStopping",
        "pytorch_lightning.callbacks.LearningRateMonitor",
        "pytorch_lightning.callbacks.ModelSummary",
    }
)


def _torch_class(target: str) -> bool:
    """``torch.optim.<Optimizer>`` or ``torch.optim.lr_scheduler.<scheduler>``, looked up by name
    in modules torch has already imported (nothing new is imported)."""
    module, _, name = target.rpartition(".")
    if module == "torch.optim":
        found = getattr(torch.optim, name, None)
        return isinstance(found, type) and issubclass(found, torch.optim.Optimizer)
    if module == "torch.optim.lr_scheduler":
        found = getattr(torch.optim.lr_scheduler, name, None)
        schedulers = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        return isinstance(found, type) and issubclass(found, schedulers)
    return False


def allowed(target: Any, trusted: Iterable[str] = ()) -> bool:
    return isinstance(target, str) and (target in ALLOWED or target in set(trusted) or _torch_class(target))


def _targets(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(key, value) of every ``_target_`` under ``node`` (plain dicts and lists), at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield where, value
            else:
                yield from _targets(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{path}[{i}]")


def resolved(config: Any, source: str) -> dict[str, Any]:
    """``config`` as plain data with every interpolation resolved, so that no ``_target_`` can hide
    inside one (``${oc.decode:...}`` makes config out of a string)."""
    try:
        container = OmegaConf.to_container(OmegaConf.create(config), resolve=True)
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        raise UserError(
            f"{source} holds a config that cannot be read ({first_line(err)}); it is damaged or was "
            "not written by lenet_exp."
        ) from err
    if not isinstance(container, dict):
        raise UserError(f"{source} holds no run config (a mapping of keys); it was not written by lenet_exp.")
    return container


def check_targets(config: Any, source: str, trusted: Iterable[str] = (), hint: str = "trust") -> dict[str, Any]:
    """``config`` (read from ``source``) resolved, once every ``_target_`` in it proved allowed.

    ``hint`` is the argument the refusal tells the user to add: ``trust`` (eval, predict, resume) or
    ``trusted_targets`` (training with ``ckpt_path=``, whose config is Hydra's).
    """
    trusted = list(trusted)
    config = resolved(config, source)
    for key, target in _targets(config, ""):
        if not allowed(target, trusted):
            allow = f"trust={target}" if hint == "trust" else f"'trusted_targets=[{target}]'"
            raise UserError(
                f"{source} names {key}={target}, which is not a class lenet_exp builds from a file it was "
                f"given (its own classes, torch optimizers and schedulers); nothing was loaded. If you trust "
                f"that file and {target}, allow it with {allow}."
            )
    return config
