"""Checkpoints: written atomically, read without unpickling code, checked against the model."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from lenet_exp.errors import UserError

CONFIG_KEY = "lenet_exp_config"  # the resolved run config, stored by callbacks.ConfigInCheckpoint


def atomic_write(path: Path, data: bytes | None = None, save: Callable[[IO[bytes]], None] | None = None) -> None:
    """Write ``data`` (or let ``save`` write into the file) so that ``path`` is never half a file:
    a temporary file beside it, flushed to disk, then renamed over it. On failure ``path`` is as
    it was and the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data) if save is None else save(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes ``name.ckpt.tmp`` beside the target, fsyncs it, then renames it over ``name.ckpt``.

    A kill at any moment leaves either the previous checkpoint or the new one, never half a file.
    (Lightning's own save goes through a temporary file that may sit on another file system,
    where the final move is a copy.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        atomic_write(Path(path), save=lambda f: torch.save(checkpoint, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a lenet_exp checkpoint with ``weights_only=True``: tensors and plain data, never code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ckpt_path={path} does not exist; give the path of a .ckpt file, such as "
                        "outputs/<date>/<time>/checkpoints/last.ckpt.")  # fmt: skip
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise UserError(
            f"ckpt_path={path} is not a checkpoint that loads with weights_only=True (it is not a PyTorch "
            "file, is truncated, or holds pickled objects other than tensors and plain data); "
            "give a .ckpt file written by lenet_exp."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"ckpt_path={path} holds no model state_dict; give a .ckpt file written by lenet_exp.")
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


def rebuild(checkpoint: dict[str, Any], path: str | Path, overrides: Sequence[str] = ()) -> tuple[DictConfig, Any]:
    """The run config stored in ``checkpoint`` (with ``overrides`` such as ``data.data_dir=...``)
    and its LightningModule with the checkpoint's weights, in eval mode and not compiled."""
    from hydra.utils import instantiate

    if CONFIG_KEY not in checkpoint:
        raise UserError(
            f"ckpt_path={path} holds no lenet_exp config, so its model cannot be rebuilt; "
            "give a checkpoint written by python -m lenet_exp."
        )
    cfg = OmegaConf.create(checkpoint[CONFIG_KEY])
    OmegaConf.set_struct(cfg, True)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        raise UserError(
            f"{' '.join(overrides)} does not fit the checkpoint's config ({str(err).splitlines()[0]}); "
            "only existing keys such as data.data_dir can be changed."
        ) from err
    with open_dict(cfg):
        cfg.model.compile = False
    module = instantiate(cfg.model)
    check_architecture(checkpoint, module, path)
    module.load_state_dict(checkpoint["state_dict"])
    return cfg, module.eval()
