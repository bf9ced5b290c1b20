"""``steps_per_call``: the values it may take, what ``auto`` becomes, and the Trainer settings that rule it out.

Plain values only, without torch: the command line refuses a wrong ``steps_per_call`` with these rules before torch
and Lightning load (lenet_exp.runtime.checks), and each fit resolves it with the same rules from its Trainer
(lenet_exp.many_steps.resolve).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lenet_exp.errors import UserError, typed
from lenet_exp.processes import distributed

AUTO, EPOCH = "auto", "epoch"  # auto: chosen by device and settings (per_call); epoch: all of an epoch's batches
# steps_per_call=auto on a CPU: what `make bench` measured fastest (docs/performance.md).
CPU_DEFAULT = 16
# On CUDA: 1 until the graph path has been measured on a GPU (its first run, on an H100 on 2026-12-06, failed to
# capture; the mended path has not run on one since); then None, a whole epoch per call, where the Python of a call
# costs more than a step's arithmetic.
CUDA_DEFAULT = 1
# Trainer arguments that count training steps (as batches) and their "not given" values, Lightning's defaults:
# with one of them given, auto is 1, so that it counts what Lightning's docs say; an explicit N counts calls.
COUNTING = {"limit_train_batches": 1.0, "val_check_interval": 1.0, "overfit_batches": 0, "fast_dev_run": False}
COUNTING |= {"log_every_n_steps": 50}
# Trainer arguments that several steps per call cannot honour: auto is 1 with them, an explicit N is refused.
ONE_STEP_ONLY = {"accumulate_grad_batches": 1, "gradient_clip_val": 0, "max_steps": -1}
AUTOMATIC = "needs Lightning's automatic optimization"


def check(value: object, key: str = "steps_per_call") -> None:
    """Refuse anything but a whole number >= 1, ``epoch`` or ``auto``."""
    if value in (AUTO, EPOCH):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(
            f"{key}={typed(value)} is not a whole number >= 1, epoch or auto; use e.g. {key}=16 or {key}=auto."
        )


def _given(name: str, value: Any) -> bool:
    """Whether Trainer argument ``name`` is set to other than Lightning's default (None means the default).
    A float 1.0 of limit_train_batches or val_check_interval is "all"; an int 1 is one batch."""
    default = {**COUNTING, **ONE_STEP_ONLY}[name]
    if value is None or (isinstance(value, bool) and not isinstance(default, bool)):
        return False
    if isinstance(default, float):
        return not (isinstance(value, float) and value == default)
    return value != default


def per_call(value: object, device_type: str, args: Mapping[str, Any], refusals: Mapping[str, str] = {}) -> int | None:
    """The optimizer steps per call, or None for all of an epoch's: ``value`` (``steps_per_call``) with the Trainer
    arguments ``args`` (a config's or a Trainer's: the names above and ``ddp``) on ``device_type``. ``refusals``: more
    reasons, by setting, why the steps must be Lightning's own (known once the Trainer exists)."""
    check(value)
    cannot = {f"trainer.{k}": "" for k in ONE_STEP_ONLY if _given(k, args.get(k))} | dict(refusals)
    if args.get("ddp"):
        cannot["ddp"] = ""
    counting = any(_given(k, args.get(k)) for k in COUNTING)
    if value == AUTO:
        if cannot or counting:
            return 1
        return CUDA_DEFAULT if device_type == "cuda" else CPU_DEFAULT
    if value == 1:
        return 1
    for setting, why in cannot.items():
        if setting == "ddp":
            raise UserError(
                f"steps_per_call={value} does not work under DDP (a ddp strategy, even of one process, or several "
                "processes or nodes); use steps_per_call=1 or steps_per_call=auto there."
            )
        if setting == "trainer.max_steps":
            raise UserError(
                f"trainer.max_steps counts optimizer steps, which steps_per_call={value} takes several at a time; "
                "use steps_per_call=auto or steps_per_call=1."
            )
        raise UserError(
            f"{setting} {why or AUTOMATIC}, which steps_per_call={value} replaces; "
            "use steps_per_call=1 or steps_per_call=auto."
        )
    return None if value == EPOCH else int(value)  # type: ignore[call-overload]


def check_config(value: object, trainer: Mapping[str, Any]) -> None:
    """Refuse, before anything is built, a ``steps_per_call`` that the Trainer config ``trainer`` rules out."""
    per_call(value, "cpu", {**{k: trainer.get(k) for k in (*COUNTING, *ONE_STEP_ONLY)}, "ddp": distributed(trainer)})
