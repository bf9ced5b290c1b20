"""Checkpoints as data: the run config stored in them, read without unpickling code, checked against the model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from lenet_exp.errors import UserError, first_line
from lenet_exp.runtime.checks import UNBOUNDED, checkpoint_file
from lenet_exp.runtime.run_folder import run_of
from lenet_exp.runtime.trust import check_targets
from lenet_exp.runtime.versions import check_version

CONFIG_KEY = "lenet_exp_config"  # the resolved run config, stored by ConfigInCheckpoint
GIT_KEY = "lenet_exp_git_rev"  # the revision of the code that wrote the checkpoint


class ConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config (plain types only) and the code's revision in every checkpoint.

    A checkpoint then says how to rebuild its model, and loads with ``weights_only=True``.
    """

    def __init__(self, config: dict[str, Any], git_rev: str = "unknown") -> None:
        self.config, self.git_rev = config, git_rev

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[GIT_KEY] = self.git_rev


def load_checkpoint(path: str | Path, trusted: Iterable[str] = (), hint: str = "trust") -> dict[str, Any]:
    """Read a lenet_exp checkpoint with ``weights_only=True``: tensors and plain data, never code.

    The run config stored in it comes back resolved, once every class it names is allowed
    (lenet_exp's own, torch optimizers and schedulers, and the ``trusted`` names).
    """
    path = checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, BadZipFile, EOFError, IndexError...: whatever the bytes make torch do
        raise UserError(
            f"ckpt_path={path} is not a checkpoint that loads with weights_only=True (it is not a PyTorch "
            "file, is truncated, or holds pickled objects other than tensors and plain data); "
            "give a .ckpt file written by lenet_exp."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"ckpt_path={path} holds no model state_dict; give a .ckpt file written by lenet_exp.")
    if CONFIG_KEY in checkpoint:
        config = check_targets(checkpoint[CONFIG_KEY], f"ckpt_path={path}", trusted, hint)
        # what a checkpoint is rebuilt from (eval, predict): its model, and the data eval tests it on
        parts = {key: config[key] for key in ("model", "data") if key in config}
        check_version(parts, f"ckpt_path={path}", checkpoint.get(GIT_KEY), required=("model",))
        checkpoint[CONFIG_KEY] = config
    return checkpoint


def check_architecture(checkpoint: dict[str, Any], module: nn.Module, path: str | Path) -> None:
    """Refuse a checkpoint whose weights do not fit ``module`` (another architecture or variant)."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    if expected != found:
        differ = sorted(set(expected) ^ set(found)) or [k for k in expected if expected[k] != found[k]]
        raise UserError(
            f"ckpt_path={path} was saved from another architecture (its weights differ at {differ[0]}); "
            "use the model config it was trained with (see its run folder's .hydra/config.yaml)."
        )


def check_epochs_left(checkpoint: dict[str, Any], path: str | Path, max_epochs: int) -> None:
    """Refuse to continue from a checkpoint that already holds ``max_epochs`` epochs: there is nothing left to train.
    With ``max_epochs=-1`` (until early stopping, max_time or max_steps) there always is."""
    done = checkpoint.get("epoch", -1) + 1  # saved at an epoch's end, Lightning stores that epoch's index
    if max_epochs != UNBOUNDED and done >= max_epochs:
        raise UserError(
            f"ckpt_path={path} already holds {done} epochs and trainer.max_epochs={max_epochs}, so there is "
            f"nothing left to train; to train further, raise it, such as trainer.max_epochs={done + 5}."
        )


def rebuild(
    checkpoint: dict[str, Any], path: str | Path, overrides: Sequence[str] = (), parts: Sequence[str] = ("model",)
) -> tuple[DictConfig, Any]:
    """The run config stored in ``checkpoint`` (with ``overrides`` such as ``data.data_dir=...``)
    and its LightningModule with the checkpoint's weights, in eval mode and not compiled. The config's
    ``parts`` that the caller builds write only inside the checkpoint's run folder (runtime/confine.py)."""
    from hydra.utils import instantiate

    from lenet_exp.runtime.confine import check_confined

    if CONFIG_KEY not in checkpoint:
        raise UserError(
            f"ckpt_path={path} holds no lenet_exp config, so its model cannot be rebuilt; "
            "give a checkpoint written by python -m lenet_exp."
        )
    cfg = OmegaConf.create(checkpoint[CONFIG_KEY])
    OmegaConf.set_struct(cfg, True)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except Exception as err:  # a key the config lacks, or a value YAML cannot read (yaml's own errors)
        raise UserError(
            f"{' '.join(overrides)} does not fit the checkpoint's config ({first_line(err)}); "
            "only existing keys such as data.data_dir can be changed, and a value with YAML's special characters "
            "(such as ': ' or '[') must be quoted."
        ) from err
    given = [override.split("=", 1)[0] for override in overrides]
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for part in parts:
        check_confined(resolved.get(part) or {}, run_of(Path(path)), f"ckpt_path={path}", given, prefix=part)
    with open_dict(cfg):
        cfg.model.compile = False
    module = instantiate(cfg.model)
    check_architecture(checkpoint, module, path)
    module.load_state_dict(checkpoint["state_dict"])
    return cfg, module.eval()
