"""Where a stored config may make lenet_exp write, and whom it may make it contact.

A run folder or a checkpoint someone sent is data (see trust.py for the classes it may name). When a
command rebuilds objects from its stored config, every path that config names for writing (a
checkpoint ``dirpath``, a logger's ``save_dir``, ``default_root_dir``, a ``data_dir`` that is
downloaded into) must lie inside the run folder, and no server address in it (a URL, an MLflow
``tracking_uri``) is used at all, unless the user gives that key again on the command line: their
command line is theirs to trust.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lenet_exp.errors import UserError

WRITE_KEYS = frozenset({"dirpath", "save_dir", "default_root_dir", "log_dir", "run_dir"})  # folders written into
SERVER_KEYS = frozenset({"tracking_uri", "registry_uri", "artifact_location", "uri", "url", "host"})


def _leaves(node: Any, path: str) -> Iterator[tuple[str, str, Any, dict]]:
    """(dotted key, last key, value, the mapping holding it) of every value under ``node``."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        where = f"{path}[{key}]" if isinstance(node, list) else f"{path}.{key}" if path else str(key)
        if isinstance(value, dict | list):
            yield from _leaves(value, where)
        else:
            yield where, str(key), value, node


def _inside(value: Any, run: Path) -> bool:
    path = Path(str(value)).expanduser()
    return path.is_absolute() and path.resolve().is_relative_to(run.resolve())


def confinable(key: str) -> bool:
    """Whether ``key`` (dotted) can name a folder to write into or a server, whatever config it is in."""
    return key.rpartition(".")[2].split("[")[0] in WRITE_KEYS | SERVER_KEYS | {"data_dir"}


def confined_keys(config: dict[str, Any]) -> set[str]:
    """The keys of ``config`` that name a folder to write into or a server: those the user may give again."""
    return {key for key, last, _, _ in _leaves(config, "") if last in WRITE_KEYS | SERVER_KEYS | {"data_dir"}}


def check_confined(config: dict[str, Any], run: Path, source: str, given: Iterable[str] = (), prefix: str = "") -> None:
    """Refuse, in one sentence naming the key, a path for writing outside ``run`` or any server address in
    ``config`` (a resolved stored config read from ``source``), except the keys in ``given`` (the user's)."""
    given = set(given)
    for key, last, value, parent in _leaves(config, prefix.rstrip(".")):
        if key in given or value is None or value == "":
            continue
        if last in SERVER_KEYS or (isinstance(value, str) and "://" in value):
            raise UserError(
                f"{source} names {key}={value}, a server lenet_exp contacts only when you name it yourself; "
                f"nothing was sent. Add {key}={value} to the command if you mean to use it."
            )
        downloaded = last == "data_dir" and parent.get("download") is True
        if (last in WRITE_KEYS or downloaded) and not _inside(value, run):
            what = "downloads into" if downloaded else "writes into"
            raise UserError(
                f"{source} names {key}={value}, which {what} a folder outside the run folder {run}; nothing was "
                f"written. Give {key}=<folder> on the command line to choose where it goes."
            )


def give_again(config: dict[str, Any], overrides: Iterable[str], source: str, usage: str) -> tuple[dict, list[str]]:
    """``config`` with the user's ``key=value`` for keys that name a folder to write into or a server (the
    value as a string, ``null`` for none); and those keys. Other keys of a stored config are not changed."""
    from omegaconf import OmegaConf

    allowed, cfg, keys = confined_keys(config), OmegaConf.create(config), []
    for override in overrides:
        key, _, value = override.partition("=")
        if key not in allowed:
            example = next(iter(sorted(allowed)), "callbacks.checkpoint.dirpath")
            raise UserError(
                f"{key} is not an argument of this command: of {source} only the keys that name a folder for "
                f"writing or a server can be given again (such as {example}=<folder>); {usage}"
            )
        OmegaConf.update(cfg, key, None if value == "null" else value, merge=False)
        keys.append(key)
    return OmegaConf.to_container(cfg), keys
