"""A callback for the DDP tests: which training images each rank saw, per epoch (a helper, not a test)."""

import hashlib
import json
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback


class ShardSpy(Callback):
    """Writes <folder>/rank<r>_epoch<e>.json: fingerprints of the training images rank r got in epoch e."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.seen: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pixels = (batch[0][:, 0] * 255).round().to(torch.uint8).cpu()  # back to the file's bytes
        self.seen += [hashlib.md5(image.numpy().tobytes()).hexdigest() for image in pixels]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
        (self.folder / name).write_text(json.dumps(self.seen))
        self.seen = []
