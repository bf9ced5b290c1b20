"""A stored config written by another version of lenet_exp: options renamed, removed or added since.

The last step of the gate (runtime/stored_config.py), after trust.py allowed every class the config
names: the config must hold the top-level keys a command needs (``check_required``), and every node
with a ``_target_`` is held against the constructor of that class in this version (``check_node``). A key
it does not take, or an argument it needs that the node lacks, is one sentence naming the key and, when
known, the revision of the code that wrote the config.
"""

from __future__ import annotations

import inspect
from typing import Any

from lenet_exp.errors import UserError

REQUIRED_TOP = ("seed", "run_dir", "data", "model", "trainer")  # what a run reads without a default
MAPPINGS = ("data", "model", "trainer", "callbacks", "logger")  # top-level keys that hold settings, never one value
ADVICE = "it comes from another version of lenet_exp; use that version's code, or start the run again"


def _wrote(revision: str | None) -> str:
    return f" (it was written by the code at {revision})" if revision and revision != "unknown" else ""


def located(target: str) -> Any:
    """What the dotted name ``target`` names (a class, a function), imported; None where nothing importable is
    there. Not Hydra's get_object, which would log its own error first."""
    import importlib

    parts = str(target).split(".")
    for split in range(len(parts) - 1, 0, -1):  # the longest importable module, then its attributes
        try:
            found = importlib.import_module(".".join(parts[:split]))
            for name in parts[split:]:
                found = getattr(found, name)
            return found
        except Exception:
            continue
    return None


def _parameters(target: str) -> dict[str, inspect.Parameter] | None:
    """The constructor's parameters of ``target`` (a class or function, allowed by the gate already), None when
    they cannot be known: a C function without a signature, or nothing importable there, which building it says
    in one sentence (errors.built)."""
    found = located(target)
    if found is None:
        return None
    try:
        return dict(inspect.signature(found).parameters)
    except (TypeError, ValueError):  # a C function without a signature
        return None


def check_required(config: dict[str, Any], source: str, revision: str | None, required: tuple[str, ...]) -> None:
    """Refuse ``config`` (resolved, from ``source``) if it lacks one of the ``required`` top-level keys, or holds a
    plain value where lenet_exp writes a mapping of settings."""
    for key in required:
        if key not in config:
            raise UserError(
                f"{source} has no {key}, which this version of lenet_exp needs{_wrote(revision)}; {ADVICE}."
            )
    for key in MAPPINGS:
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise UserError(
                f"{source} holds {key}={config[key]!r}, where lenet_exp writes a mapping of settings; the file is "
                "damaged or was not written by lenet_exp."
            )


def check_node(path: str, node: dict[str, Any], source: str, revision: str | None) -> None:
    """Refuse ``node`` (at ``path`` of a stored config, with a ``_target_``) if it names a key its class does
    not take, or lacks one it needs."""
    target = node["_target_"]
    parameters = _parameters(target)
    if parameters is None:
        return
    open_ended = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    for key in node:
        if not key.startswith("_") and key not in parameters and not open_ended:
            raise UserError(
                f"{source} names {path}.{key}, which this version's {target} does not take (the option "
                f"was renamed or removed){_wrote(revision)}; {ADVICE}."
            )
    if node.get("_partial_") or node.get("_args_"):
        return  # the rest is given when it is called
    for name, parameter in parameters.items():
        needed = parameter.default is parameter.empty and parameter.kind in (
            parameter.POSITIONAL_OR_KEYWORD,
            parameter.KEYWORD_ONLY,
        )
        if needed and name not in node and name != "self":
            raise UserError(
                f"{source} has no {path}.{name}, which this version's {target} needs{_wrote(revision)}; {ADVICE}."
            )
