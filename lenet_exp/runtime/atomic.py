"""The checkpoint writer of every run (``trainer.plugins`` in conf/trainer/default.yaml, and so in every stored
config): a checkpoint is never half a file. The writes themselves are runtime/writes.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from lenet_exp.errors import UserError, first_line
from lenet_exp.runtime.writes import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes ``name.ckpt.tmp`` beside the target, fsyncs it, then renames it over ``name.ckpt``.

    A kill at any moment leaves either the previous checkpoint or the new one, never half a file.
    (Lightning's own save goes through a temporary file that may sit on another file system,
    where the final move is a copy.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        atomic_write(Path(path), save=lambda f: torch.save(checkpoint, f))

    def hand_over(self, path: str | Path, checkpoint: dict[str, Any]) -> None:
        """Lightning's next load of ``path`` (the fit's ``ckpt_path``) gets ``checkpoint``, which lenet_exp's gate
        read and checked already (stored_config.open_stored): the file is read once, and what Lightning
        restores is what the gate checked, even if the file changed since."""
        self._handed = (Path(path).resolve(), checkpoint)

    def load_checkpoint(self, path: str | Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """What the gate handed over for ``path``, else the file: for the final test, the best epoch's checkpoint,
        which a run wrote itself (a file gone or damaged since is one sentence)."""
        handed, self._handed = getattr(self, "_handed", None), None
        if handed is not None and Path(path).resolve() == handed[0]:
            return handed[1]
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except Exception as err:  # FileNotFoundError, torch's RuntimeError of a truncated zip, an unpickling error
            raise UserError(
                f"{path} cannot be read ({first_line(err)}): it is missing, truncated or damaged, so the run cannot go "
                "on from it; start the run again, or test another checkpoint of it with python -m lenet_exp.eval "
                "ckpt_path=<file.ckpt>."
            ) from None
