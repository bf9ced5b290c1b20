"""Checkpoints: the run config stored in each (ConfigInCheckpoint), and what a checkpoint that passed the gate
(runtime/stored_config.py) must fit before it is used: the model's weights, the epochs left to train."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import open_dict
from torch import nn

from lenet_exp.errors import UserError, built
from lenet_exp.runtime.checks import UNBOUNDED
from lenet_exp.runtime.run_folder import override
from lenet_exp.runtime.stored_config import CONFIG_KEY, GIT_KEY, Stored


class ConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config (plain types only) and the code's revision in every checkpoint.

    A checkpoint then says how to rebuild its model, and loads with ``weights_only=True``.
    """

    def __init__(self, config: dict[str, Any], git_rev: str = "unknown") -> None:
        self.config, self.git_rev = config, git_rev

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[GIT_KEY] = self.git_rev


def check_architecture(checkpoint: dict[str, Any], module: nn.Module, path: str | Path, own: bool = False) -> None:
    """Refuse a checkpoint whose weights do not fit ``module`` (another architecture or variant): the model of the
    user's config (training with ``ckpt_path=``), or, ``own``, the model the checkpoint's stored config describes."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    if expected != found:
        differ = sorted(set(expected) ^ set(found)) or [k for k in expected if expected[k] != found[k]]
        if own:  # eval, predict and load build the model its config names: the file disagrees with itself
            raise UserError(
                f"ckpt_path={path} holds weights that do not fit the model its own stored config describes (they "
                f"differ at {differ[0]}); it is damaged or was not written by lenet_exp: use a checkpoint a run wrote."
            )
        raise UserError(
            f"ckpt_path={path} was saved from another architecture (its weights differ at {differ[0]}); "
            "use the model config it was trained with (see its run folder's .hydra/config.yaml)."
        )


def check_no_step_limit(max_steps: Any, path: str | Path) -> None:
    """Refuse to go on from a checkpoint under ``trainer.max_steps``: Lightning restores such a run as one stopped
    inside an epoch (its fit loop counts every step-limited run as restarting), while lenet_exp's checkpoints are
    written at epochs' ends, so the epochs that follow repeat or skip batches and the results are wrong."""
    if max_steps not in (None, -1):
        path = Path(os.path.expanduser(str(path))).resolve()  # a command to copy, from any folder
        raise UserError(
            f"trainer.max_steps={max_steps} cannot go on from a checkpoint ({path}): Lightning would take it up as "
            "if stopped inside an epoch and repeat or skip batches. Go on in a new run folder with an epoch count "
            f"instead: python -m lenet_exp {override('ckpt_path', path)} trainer.max_steps=-1 trainer.max_epochs=<N> "
            "and the run's other settings."
        )


def check_epochs_left(checkpoint: dict[str, Any], path: str | Path, max_epochs: int) -> None:
    """Refuse to continue from a checkpoint that already holds ``max_epochs`` epochs: there is nothing left to train.
    With ``max_epochs=-1`` (until early stopping, max_time or max_steps) there always is."""
    done = checkpoint.get("epoch", -1) + 1  # saved at an epoch's end, Lightning stores that epoch's index
    if max_epochs != UNBOUNDED and done >= max_epochs:
        raise UserError(
            f"ckpt_path={path} already holds {done} epoch{'s' * (done != 1)} and trainer.max_epochs={max_epochs}, so "
            f"there is nothing left to train; to train further, raise it, such as trainer.max_epochs={done + 5}."
        )


def rebuild(stored: Stored) -> pl.LightningModule:
    """The LightningModule of a checkpoint that passed the gate, with its weights, in eval mode and not compiled."""
    with open_dict(stored.config):
        stored.config.model.compile = False
    module = built(stored.config.model)  # a class the gate allowed that cannot be imported here: one sentence
    check_architecture(stored.checkpoint, module, stored.checkpoint_path, own=True)
    module.load_state_dict(stored.checkpoint["state_dict"])
    return module.eval()
