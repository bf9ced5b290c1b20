"""The random numbers a network draws in a training step (dropout, and any module of one's own that draws) as a
function of the run's seed and the step only: each step draws from torch's generators seeded for it, and the
generators are put back afterwards, as they were.

torch's generators are not in Lightning's checkpoints, and a resumed process draws from them before its first step
(building the model, Lightning's checks) otherwise than the uninterrupted run did: without this, a network with
dropout resumed from its checkpoint trained on other numbers. Seeded by the step, it draws what the uninterrupted
run drew, under any ``steps_per_call`` (augmentation is seeded by the step the same way, in lenet_exp/augment.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

APART = 0x2545F4914F6CDD1D  # keeps these seeds apart from augmentation's, which are (seed * 1_000_003 + step)


@contextmanager
def step_draws(device: torch.device, step: int, micro: int = 0) -> Iterator[None]:
    """Within: torch's generators (the CPU's, and ``device``'s on an accelerator: CUDA, MPS, ...) seeded for
    optimizer step ``step`` (and its ``micro``-th batch, with gradient accumulation) of the run seeded
    ``torch.initial_seed()``; afterwards, as they were."""
    seed = ((torch.initial_seed() * 1_000_003 + step) * 1_009 + micro) % 2**63 ^ APART
    kind = device.type
    accelerator = [] if kind == "cpu" else [device]
    with torch.random.fork_rng(devices=accelerator, device_type="cuda" if kind == "cpu" else kind):
        torch.default_generator.manual_seed(seed)
        if kind == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        elif kind != "cpu":
            torch.get_device_module(kind).manual_seed(seed)
        yield
