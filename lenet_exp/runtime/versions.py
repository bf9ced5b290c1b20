"""A stored config written by another version of lenet_exp: options renamed, removed or added since.

Before anything is built from a stored config (whose classes trust.py already allowed), every node with
a ``_target_`` is held against the constructor of that class in this version: a key it does not take,
or an argument it needs that the node lacks, is one sentence naming the key and, when known, the
revision of the code that wrote the config.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from lenet_exp.errors import UserError

REQUIRED_TOP = ("seed", "run_dir", "data", "model", "trainer")  # what a run reads without a default


def _nodes(node: Any, path: str) -> Iterator[tuple[str, dict]]:
    """(dotted key, node) of every mapping with a ``_target_`` under ``node``."""
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            yield path, node
        for key, value in node.items():
            yield from _nodes(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _nodes(value, f"{path}[{i}]")


def _parameters(target: str) -> dict[str, inspect.Parameter] | None:
    """The constructor's parameters of ``target`` (a class or function), None when they cannot be known."""
    from hydra.utils import get_object

    try:
        found = get_object(target)
        return dict(inspect.signature(found).parameters)
    except Exception:  # a C function without a signature, or nothing there at all: Hydra's own error says it
        return None


def check_version(
    config: dict[str, Any], source: str, revision: str | None = None, required: tuple[str, ...] = REQUIRED_TOP
) -> None:
    """Refuse ``config`` (resolved, from ``source``) if it lacks one of the ``required`` top-level keys, or a
    node names a key its class does not take, or lacks one it needs."""
    wrote = f" (it was written by the code at {revision})" if revision and revision != "unknown" else ""
    advice = "it comes from another version of lenet_exp; use that version's code, or start the run again"
    for key in required:
        if key not in config:
            raise UserError(f"{source} has no {key}, which this version of lenet_exp needs{wrote}; {advice}.")
    for path, node in _nodes(config, ""):
        parameters = _parameters(node["_target_"])
        if parameters is None:
            continue
        open_ended = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
        for key in node:
            if not key.startswith("_") and key not in parameters and not open_ended:
                raise UserError(
                    f"{source} names {path}.{key}, which this version's {node['_target_']} does not take (the option "
                    f"was renamed or removed){wrote}; {advice}."
                )
        if node.get("_partial_") or node.get("_args_"):
            continue  # the rest is given when it is called
        for name, parameter in parameters.items():
            needed = parameter.default is parameter.empty and parameter.kind in (
                parameter.POSITIONAL_OR_KEYWORD,
                parameter.KEYWORD_ONLY,
            )
            if needed and name not in node and name != "self":
                raise UserError(
                    f"{source} has no {path}.{name}, which this version's {node['_target_']} needs{wrote}; {advice}."
                )
