"""The bench's ``paired`` variants: bare-loop epochs inside a lenet_exp run, in its process.

``benchmarks/bench.py`` adds this callback to ``python -m lenet_exp`` (the default config otherwise) with
``+callbacks.bare_epochs._target_=paired.BareEpochs`` and this folder on ``PYTHONPATH``. Each epoch of the run is
then measured beside a bare epoch in the same process, with the same threads, allocator and imports: what a
shared or virtual machine adds at random moments hits both sides alike, which two separate processes minutes
apart do not share.

``interleave=True`` (the ``paired`` variant): the bare epoch is cut to the run's own rhythm. Beside each of the
run's training steps (a call of 16 batches by default) the bare loop takes as many optimizer steps, and beside
the run's evaluation it evaluates the test set; each piece is timed, and its seconds are taken off the run's
epoch (``inside``). The two sides alternate every few hundred milliseconds, so that a slow second of the machine
hits both; the bare pieces go first in the first, third, ... epoch and second in the others, so that neither
side always follows the other. ``interleave=False`` (``paired_epochs``): a whole bare epoch before each of the
run's epochs, before lenet_exp's epoch timer starts (the run's own callbacks come before it).

The bare loop has its own net, optimizer and data; the random number generators are put back after each piece:
the run trains exactly as it would without it (tests/test_bench.py compares the metrics and weights of a run
with and without it). The bare epochs' seconds, ``inside`` and steps are written to ``out`` between epochs and
after the last. ``train_batches`` limits the bare epochs of ``interleave=False`` (bench.py's ``--train-batches``);
interleaved, the run's own calls set the bare steps.

On CUDA each bare piece waits for the device before and after it, so that its seconds are its own; the run then
waits at every call too, which it would not do alone: there the paired ratio overstates lenet_exp's cost rather
than understates it, and the CPU is where it is judged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bench
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class BareEpochs(Callback):
    """One epoch of ``bench.py``'s bare loop (training plus the test evaluation) beside every training epoch,
    interleaved with it or before it; its seconds, those of it inside the run's epoch, and its test accuracy go
    to the JSON file ``out``."""

    batch_hooks_per_call = True  # its batch hooks take a call's K batches (lenet_exp.many_steps.BATCH_HOOKS)

    def __init__(
        self, out: str, device: str = "cpu", seed: int = 42, train_batches: int = 0, interleave: bool = True
    ) -> None:
        self.out, self.device, self.seed = Path(out), torch.device(device), seed
        self.train_batches, self.interleave = train_batches or None, interleave
        self.seconds: list[float] = []  # each bare epoch
        self.steps: list[int] = []  # the optimizer steps of each
        self.inside: list[float] = []  # of each, the seconds spent inside the run's epoch
        self.loop: tuple[Any, ...] | None = None  # the bare loop's net, batches, test batches and optimizer
        self.batches: Iterator | None = None  # this epoch's bare batches
        self.left: int | None = None  # this epoch's bare steps still to take (None: all of its batches)
        self.test_acc = 0.0

    def _timed(self, work: Callable[[], Any]) -> float:
        """Runs ``work`` on the bare loop (built on first use) and adds its seconds to this epoch's, which it
        returns; the run's random numbers stay its own."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)  # the run's queued work is the run's
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[self.device] if cuda else []), torch.enable_grad():
            if self.loop is None:
                torch.manual_seed(self.seed)
                self.loop = bench.bare_loop(self.device)
                start = time.perf_counter()  # (its building is not an epoch's)
            work()
            if cuda:
                torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        self.seconds[-1] += seconds
        return seconds

    def _start(self) -> None:
        _, batches, _, _ = self.loop
        # interleaved, the run's calls set the steps (``train_batches`` counts calls there, not batches)
        self.batches, self.left = batches(), None if self.interleave else self.train_batches

    def _steps(self, steps: int | None) -> None:
        """The bare loop's next ``steps`` optimizer steps (None: the rest of its epoch)."""
        if self.left is not None:
            steps = self.left if steps is None else min(steps, self.left)
            self.left -= steps
        net, _, _, optimizer = self.loop
        self.steps[-1] += bench.train_steps(net, self.batches, optimizer, self.device, steps)

    def _evaluate(self) -> None:
        net, _, test_batches, _ = self.loop
        self.test_acc = bench.evaluate(net, test_batches, self.device)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write()  # the epochs so far, outside any timed epoch
        self.seconds.append(0.0)
        self.inside.append(0.0)
        self.steps.append(0)
        self._timed(self._start)
        if not self.interleave:  # all of it now, before the run's epoch timer starts
            self._timed(lambda: self._steps(None))
            self._timed(self._evaluate)

    def _first(self) -> bool:
        """Whether the bare pieces go before the run's (in its first, third, ... epoch) or after them (second,
        fourth, ...): neither side always follows the other."""
        return len(self.seconds) % 2 == 1

    def _call(self, batch: Any) -> None:
        labels = batch[1]  # (K,B): a call of K batches; (B,): one
        self.inside[-1] += self._timed(lambda: self._steps(len(labels) if labels.dim() == 2 else 1))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        if self.interleave and self._first():
            self._call(batch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if self.interleave and not self._first():
            self._call(batch)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interleave and not trainer.sanity_checking and self.seconds and self._first():
            self.inside[-1] += self._timed(self._evaluate)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interleave and not trainer.sanity_checking and self.seconds and not self._first():
            self.inside[-1] += self._timed(self._evaluate)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write()

    def _write(self) -> None:
        if self.seconds:
            record = {"epoch_seconds": self.seconds, "inside": self.inside, "steps": self.steps}
            self.out.write_text(json.dumps(record | {"test_acc": self.test_acc}))
