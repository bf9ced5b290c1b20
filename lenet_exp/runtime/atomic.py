"""Files that are never half written: a temporary file beside the target, fsynced, then renamed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO


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
