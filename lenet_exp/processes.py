"""How many training processes a Trainer config asks for, read from the config before any Trainer exists: the
one reading that the checks of a run (the validation split per process, steps_per_call under DDP, the Python
API's refusal of DDP) share. Imports nothing heavy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def processes(trainer: Mapping[str, Any]) -> int | None:
    """``trainer.devices`` × ``trainer.num_nodes`` where the config says it: ``devices`` a whole number, a list of
    device indices or a string of digits; None where only the Trainer can tell (``-1``, ``auto``, a value it
    would refuse)."""
    counts = [_count(trainer.get("devices", 1)), _count(trainer.get("num_nodes", 1))]
    return None if None in counts or min(counts) < 1 else counts[0] * counts[1]


def nodes(trainer: Mapping[str, Any]) -> int | None:
    """``trainer.num_nodes`` as a whole number (also from a string of digits); None where only the Trainer can
    tell (a value it would refuse)."""
    return _count(trainer.get("num_nodes", 1))


def distributed(trainer: Mapping[str, Any]) -> bool:
    """Whether the config asks for DDP: a ``ddp`` strategy, more than one process (Lightning's ``auto`` strategy
    then is DDP) or more than one node."""
    count = processes(trainer)
    return "ddp" in str(trainer.get("strategy", "")) or (count or 1) > 1 or nodes(trainer) not in (1, None)


def _count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        return int(value) if value.strip().isdigit() else None
    return len(value) if isinstance(value, Sequence) else None
