"""Checkpoints: written atomically, read without unpickling code, checked against the model."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from lenet_exp.errors import UserError

CONFIG_KEY = "lenet_exp_config"  # the resolved run config, stored by callbacks.ConfigInCheckpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes ``name.ckpt.tmp`` beside the target, fsyncs it, then renames it over ``name.ckpt``.

    A kill at any moment leaves either the previous checkpoint or the new one, never half a file.
    (Lightning's own save goes through a temporary file that may sit on another file system,
    where the final move is a copy.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


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
