"""Where a stored config may make lenet_exp write, and whom it may make it contact.

A run folder or a checkpoint someone sent is data (see trust.py for the classes it may name). When a
command rebuilds objects from its stored config, every path that config names for writing (a
checkpoint ``dirpath``, a logger's ``save_dir``, ``default_root_dir``, a ``data_dir`` that is
downloaded into) must lie inside the run folder, every name joined onto such a folder (a checkpoint's
``filename``, a logger's ``name``, ``version`` and ``sub_dir``) must keep inside it or the run folder,
and no server address in it (a URL, an MLflow
``tracking_uri``) is used at all, unless the user gives that key again on the command line: their
command line is theirs to trust. This is the confinement step of the gate (runtime/stored_config.py),
which calls ``check_value`` for every value it meets in its walk of the parts a command builds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lenet_exp.errors import UserError

WRITE_KEYS = frozenset({"dirpath", "save_dir", "default_root_dir", "log_dir", "run_dir"})  # folders written into
# names joined onto a folder written into (by the keys of the same mapping before them), as Lightning joins them
JOINED_KEYS = {
    "filename": ("dirpath",),
    "name": ("save_dir",),
    "version": ("save_dir", "name"),
    "sub_dir": ("save_dir", "name", "version"),
}
SERVER_KEYS = frozenset({"tracking_uri", "registry_uri", "artifact_location", "uri", "url", "host"})


def _inside(value: Any, run: Path) -> bool:
    path = Path(os.path.expanduser(str(value)))
    return path.is_absolute() and path.resolve().is_relative_to(run.resolve())


def confinable(key: str) -> bool:
    """Whether ``key`` (dotted) can name a folder to write into or a server, whatever config it is in:
    the keys of a run folder's config that the user may give again."""
    own = key.rpartition(".")[2].split("[")[0]
    joined = own in JOINED_KEYS and key.split(".")[0] in ("callbacks", "logger")
    return own in WRITE_KEYS | SERVER_KEYS | {"data_dir"} or joined


def _joined_base(name: str, holder: dict, run: Path) -> Path | None:
    """The folder a ``JOINED_KEYS`` name of ``holder`` (a checkpoint callback's or a logger's mapping) is joined
    onto: its ``dirpath`` (the run's own folder when none), or ``save_dir/name/version``; None when ``holder`` is
    no such mapping (a ``name`` elsewhere names no file)."""
    first, *rest = JOINED_KEYS[name]
    if first not in holder:
        return None
    base = Path(os.path.expanduser(str(holder[first] or run)))
    for key in rest:
        if isinstance(holder.get(key), str) and holder[key]:
            base = base / holder[key]
    return base


def check_value(key: str, value: Any, holder: dict | list, run: Path, source: str) -> None:
    """Refuse ``value``, at ``key`` (dotted) of a stored config read from ``source`` (``holder`` is the mapping
    or list that holds it), when it is a folder for writing outside ``run`` or any server address."""
    name = key.rpartition(".")[2]  # its own key: "dirpath" of "callbacks.checkpoint.dirpath"
    if value is None or value == "" or isinstance(value, dict | list):
        return
    if name in SERVER_KEYS or (isinstance(value, str) and "://" in value):
        raise UserError(
            f"{source} names {key}={value}, a server lenet_exp contacts only when you name it yourself; "
            f"nothing was sent. Add {key}={value} to the command if you mean to use it."
        )
    base = _joined_base(name, holder, run) if name in JOINED_KEYS and isinstance(holder, dict) else None
    if (
        base is not None
        and isinstance(value, str)
        and not any((base / value).resolve().is_relative_to(folder.resolve()) for folder in (base, run))
    ):
        raise UserError(
            f"{source} names {key}={value}, which writes outside the folder {base} it names a file in; nothing was "
            f"written. Give {key}=<name> on the command line to choose another."
        )
    downloaded = name == "data_dir" and isinstance(holder, dict) and holder.get("download") is True
    if (name in WRITE_KEYS or downloaded) and not _inside(value, run):
        what = "downloads into" if downloaded else "writes into"
        raise UserError(
            f"{source} names {key}={value}, which {what} a folder outside the run folder {run}; nothing was "
            f"written. Give {key}=<folder> on the command line to choose where it goes."
        )
