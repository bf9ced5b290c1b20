"""The bench's ``paired`` variant: a bare-loop epoch before every epoch of a lenet_exp run, in its process.

``benchmarks/bench.py`` adds this callback to ``python -m lenet_exp`` (the default config otherwise) with
``+callbacks.bare_epochs._target_=paired.BareEpochs`` and this folder on ``PYTHONPATH``. Each epoch of the run
is then measured a few seconds after a bare epoch, in the same process, with the same threads, allocator and
imports: what a shared or virtual machine adds at random moments hits both sides of each pair alike, which two
separate processes minutes apart do not share.

The bare epoch runs in ``on_train_epoch_start`` before lenet_exp's epoch timer starts (the run's own callbacks
come before it), on its own net, optimizer and data, with the random number generators put back afterwards: the
run trains exactly as it would without it (tests/test_bench.py compares the metrics and weights of a run with
and without it). The bare epochs' seconds are written to ``out`` after each one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bench
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class BareEpochs(Callback):
    """Before every training epoch, one epoch of ``bench.py``'s bare loop (training plus the test evaluation),
    timed; its seconds and its test accuracy go to the JSON file ``out``."""

    def __init__(self, out: str, device: str = "cpu", seed: int = 42, train_batches: int = 0) -> None:
        self.out, self.device, self.seed = Path(out), torch.device(device), seed
        self.train_batches = train_batches or None
        self.seconds: list[float] = []
        self.loop: tuple[Any, ...] | None = None  # the bare loop's net, batches, test batches and optimizer

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():  # the run's random numbers stay its own
            if self.loop is None:
                torch.manual_seed(self.seed)
                self.loop = bench.bare_loop(self.device)
            result = bench.epoch_loop(*self.loop, 1, self.device, self.train_batches)
        self.seconds += result["epoch_seconds"]
        self.out.write_text(json.dumps({"epoch_seconds": self.seconds, "test_acc": result["test_acc"]}))
