"""The one gate of a stored config: ``open_stored``, which every command that reads one calls.

A checkpoint or a run folder may come from someone else, so the run config stored in it is data
(docs/safe-loading.md). eval, predict, ``lenet_exp.load``, resume and training with ``ckpt_path=`` read
one only through ``open_stored``. It walks the config tree once, then takes these steps over that one
walk, in this order:

1. resolve every interpolation, so that no ``_target_`` hides inside one (``${oc.create:...}``);
2. allow: every ``_target_`` is on the allowlist or trusted by the user (trust.py), before any class
   it names is imported;
3. give again the keys the user gave on the command line: their command line is theirs to trust;
4. confine the parts the command builds: folders written into lie inside the run folder, and no
   server is named, except in the keys the user gave (confine.py);
5. version: every class's node fits this version's constructor (versions.py).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lenet_exp.errors import UserError, first_line
from lenet_exp.runtime import confine, versions
from lenet_exp.runtime.checks import checkpoint_file
from lenet_exp.runtime.run_folder import (
    MULTIRUN,
    config_file,
    hydra_settings_file,
    job_folders,
    last_checkpoint,
    override,
    overrides_file,
    run_of,
    value_at,
)
from lenet_exp.runtime.trust import allowed, check_target

CONFIG_KEY = "lenet_exp_config"  # where a checkpoint keeps the resolved run config (checkpoints.ConfigInCheckpoint)
GIT_KEY = "lenet_exp_git_rev"  # and the revision of the code that wrote it


@dataclass(frozen=True)
class _Kind:
    """How the steps treat the config of a checkpoint or of a run folder."""

    versioned: tuple[str, ...] | None  # the top-level keys held against this version's classes; None: all
    required: tuple[str, ...]  # the top-level keys that must be there
    yaml_values: bool  # the user's keys: any, the value read as YAML; else folders and servers, as written


# A checkpoint is rebuilt from its model (and eval tests it on its data); a run folder's whole config is run again.
CHECKPOINT, RUN_FOLDER = _Kind(("model", "data"), ("model",), True), _Kind(None, versions.REQUIRED_TOP, False)


@dataclass(frozen=True)
class StoredRun:
    """A run folder's ``.hydra/config.yaml`` and ``.hydra/hydra.yaml``, read as plain YAML (nothing is built)."""

    run: Path
    config: DictConfig  # as composed when the run started, its interpolations unresolved
    hydra: DictConfig  # Hydra's settings of the run (its job name, its folder)
    job_name: str  # hydra.job.name as written, a plain file name: the run's log is <run>/<job_name>.log


@dataclass
class Stored:
    """A stored config through the gate, and the checkpoint read with it."""

    config: DictConfig | None  # resolved, checked, with the user's keys; None: a checkpoint that stores none
    source: str  # how refusals name it: ckpt_path=<file>, or <run>/.hydra/config.yaml
    run: Path  # the run folder it may write into
    checkpoint: dict[str, Any] | None  # tensors and plain values; None: a run folder with no completed epoch
    checkpoint_path: Path | None
    hydra: DictConfig | None = None  # a run folder's Hydra settings


def open_stored(
    source: str | Path | StoredRun,
    trust: Collection[str] = (),
    given: Sequence[str] = (),
    builds: Sequence[str] | None = None,
    hint: str = "trust",
    usage: str = "",
) -> Stored:
    """The config stored in ``source`` through the gate's steps, and its checkpoint.

    ``source``: a checkpoint file (the run config stored in it), or a run folder read by ``read_run`` (its
    config, and its ``checkpoints/last.ckpt`` when there is one, which passes the gate as a checkpoint too).
    ``trust``: the classes the user allows beyond the allowlist; ``hint``: how a refusal says to add one
    (``trust=``, or ``trusted_targets`` for training with ``ckpt_path=``). ``given``: the user's ``key=value``
    for keys of the stored config: of a checkpoint any key, the value read as YAML (such as
    ``data.batch_size=512``); of a run folder a key that names a folder or a server, the value as written
    (``usage`` ends that refusal). ``builds``: the top-level keys the command builds objects from, which are
    confined to the run folder; None: all of them.
    """
    trusted = list(trust)
    if isinstance(source, StoredRun):
        return _open_run(source, trusted, given, builds, usage)
    path = checkpoint_file(source)  # before torch takes its seconds to load
    checkpoint = _read_checkpoint(path)
    where, run = f"ckpt_path={path}", run_of(path)
    if CONFIG_KEY not in checkpoint:
        if builds is not None and not builds and not given:  # training with ckpt_path= reads its weights only
            return Stored(None, where, run, checkpoint, path)
        raise UserError(
            f"ckpt_path={path} holds no lenet_exp config, so its model cannot be rebuilt; "
            "give a checkpoint written by python -m lenet_exp."
        )
    revision = checkpoint.get(GIT_KEY)
    config = _steps(checkpoint[CONFIG_KEY], CHECKPOINT, where, run, trusted, hint, given, builds, revision)
    checkpoint[CONFIG_KEY] = config
    return Stored(OmegaConf.create(config), where, run, checkpoint, path)


def read_run(run: Path) -> StoredRun:
    """The run folder's stored config and Hydra settings, as plain YAML values (nothing is built from them)."""
    files = [config_file(run), hydra_settings_file(run)]
    if not all(f.is_file() for f in files) and last_checkpoint(run).is_file() and not files[0].parent.exists():
        raise UserError(  # a run of hydra.output_subdir=null: its weights and epochs are in its checkpoint
            f"{run} keeps no .hydra folder (it ran with hydra.output_subdir=null), so it cannot be resumed from its "
            f"folder; continue it with python -m lenet_exp {override('ckpt_path', last_checkpoint(run))} and the "
            "settings it ran with."
        )
    if not all(f.is_file() for f in files):
        if (run / MULTIRUN).is_file():  # a sweep's folder: resume and eval take one of its jobs
            jobs = job_folders(run)
            such = f", such as {jobs[0]}" if jobs else ""
            raise UserError(f"{run} is a sweep's folder, not a run's; give one of its job folders{such}.")
        if files[0].parent.is_dir() and any(f.exists() for f in files):  # a run's .hydra, with a file gone
            missing = next(f for f in files if not f.is_file())
            raise UserError(
                f"{run}/.hydra has no {missing.name} (or it is not a file), so the folder is damaged; start the run "
                "again instead."
            )
        raise UserError(
            f"{run} is not a lenet_exp run folder (it has no .hydra/config.yaml and .hydra/hydra.yaml); give the "
            "folder a run printed at its end, such as outputs/<date>/<time>."
        )
    try:
        cfg, stored = (OmegaConf.load(f) for f in files)
        if isinstance(cfg, DictConfig) and not cfg:  # cut short to nothing: not a config of another version
            raise ValueError(f"{files[0].name} is empty")
        hydra = stored.hydra if isinstance(stored, DictConfig) else None
        if not isinstance(cfg, DictConfig) or not isinstance(hydra, DictConfig) or "run" not in hydra:
            raise ValueError("not a mapping of a run's settings")
        name = value_at(
            OmegaConf.to_container(hydra, resolve=False), "job", "name"
        )  # as written: nothing resolved here
        if not isinstance(name, str) or not _file_name(name):  # it names the log file that resume appends to
            raise ValueError(f"its hydra.job.name {name!r} is not a file name")
    except Exception as err:  # YAML syntax, unreadable bytes, missing keys: all mean "damaged"
        raise UserError(
            f"{run}/.hydra cannot be read ({first_line(err)}); the folder is damaged, so start the run again instead."
        ) from err
    return StoredRun(run, cfg, hydra, name)


def _file_name(name: str) -> bool:
    """Whether ``name`` is a plain file name, which no path reads as another folder."""
    return bool(name) and not any(c in name for c in "/\\\0")


def _open_run(files: StoredRun, trusted: list[str], given: Sequence[str], builds: Any, usage: str) -> Stored:
    _as_this_process(files, as_it_ran=True)  # ${hydra:...} and ${if_multirun:...} mean what they meant in the run
    last = last_checkpoint(files.run)
    try:
        opened = open_stored(last, trusted, builds=()) if last.is_file() else None
    except Unreadable as err:  # lenet_exp writes it whole (atomically): a disk's fault, or a copy cut short
        raise UserError(
            f"{last}, the run's newest checkpoint, cannot be read (it is truncated or damaged), so the run cannot "
            f"continue from it; start it again, or train on from another checkpoint of it with python -m lenet_exp "
            f"ckpt_path=<file.ckpt> and the settings in {overrides_file(files.run)}."
        ) from err
    checkpoint = opened.checkpoint if opened else None
    where, revision = str(config_file(files.run)), (checkpoint or {}).get(GIT_KEY)
    config = _steps(files.config, RUN_FOLDER, where, files.run, trusted, "trust", given, builds, revision, usage)
    _as_this_process(files)  # resolved: from here on, the run goes on alone, in its own folder
    return Stored(OmegaConf.create(config), where, files.run, checkpoint, last if opened else None, files.hydra)


def _as_this_process(files: StoredRun, as_it_ran: bool = False) -> None:
    """Make ``${hydra:...}`` in the run's config mean what it meant in the run, written into its folder.

    ``as_it_ran``: for resolving its config, a job of a sweep is one again (``${if_multirun:...}`` gives what the
    job got: its sweep's MLflow store, no histograms), its sweep folder the one that holds it now; otherwise
    the run goes on as a run of its own (the mode DDP's ranks are started in)."""
    from hydra.conf import HydraConf
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import setup_globals
    from omegaconf import open_dict

    setup_globals()  # the ${hydra:...} and ${now:...} resolvers, as in the run
    schema = OmegaConf.structured(HydraConf)
    OmegaConf.set_struct(schema, False)  # keys that plugins (launchers, sweepers) added to the run's file
    run = str(files.run)
    try:
        hydra = OmegaConf.merge(schema, files.hydra)
        swept = as_it_ran and getattr(hydra.mode, "name", hydra.mode) == "MULTIRUN"
        hydra.runtime.output_dir, hydra.run.dir, hydra.mode = run, run, "MULTIRUN" if swept else "RUN"
        full = OmegaConf.create(OmegaConf.to_container(files.config, resolve=False))
        with open_dict(full):
            full.hydra = hydra
        if swept:  # <sweep>/<subdir>: the folders above the job's, as many as its subdir names
            depth = min(len(Path(str(full.hydra.sweep.subdir)).parts), len(files.run.parents))
            full.hydra.sweep.dir = str(files.run.parents[depth - 1]) if depth else run
    except Exception as err:  # values of the wrong type: the file was edited or damaged
        raise UserError(
            f"{hydra_settings_file(files.run)} cannot be used ({first_line(err)}); start the run again."
        ) from err
    HydraConfig.instance().set_config(full)


def _failed_checksum(path: Path) -> str | None:
    """The part of the checkpoint's zip archive whose bytes no longer match its CRC, if any: torch.load does not
    check them, so a changed byte inside the weights loads as other weights. Not a zip file: torch.load's to say."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None  # not a zip archive, or one cut short: torch's load then fails, with its own sentence


class Unreadable(UserError):
    """A checkpoint file whose bytes torch cannot load (truncated, damaged, or not a checkpoint)."""


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path`` read with ``weights_only=True``: tensors and plain data, never code."""
    import torch

    damaged = _failed_checksum(path)
    if damaged:
        raise Unreadable(
            f"ckpt_path={path} is damaged ({damaged} fails its checksum: bytes changed after it was written, by a "
            "disk or a copy); give an intact copy of it, or another checkpoint of the run."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, BadZipFile, EOFError, IndexError...: whatever the bytes make torch do
        raise Unreadable(
            f"ckpt_path={path} is not a checkpoint that loads with weights_only=True (it is not a PyTorch "
            "file, is truncated, or holds pickled objects other than tensors and plain data); "
            "give a .ckpt file written by lenet_exp."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"ckpt_path={path} holds no model state_dict; give a .ckpt file written by lenet_exp.")
    return checkpoint


@dataclass(frozen=True)
class _Node:
    """One entry of a stored config, at any depth: where it is, and what holds it."""

    key: str  # dotted, lists indexed: "callbacks.checkpoint.dirpath", "trainer.plugins[0]"
    holder: dict | list  # the mapping or list that holds it
    at: str | int  # its key (or index) in the holder

    @property
    def value(self) -> Any:
        return self.holder[self.at]

    @property
    def part(self) -> str:
        """The top-level key it lies under: ``model`` for ``model.net.activation``."""
        return self.key.split(".")[0].split("[")[0]


def _walk(node: dict | list, path: str = "") -> Iterator[_Node]:
    """Every entry under ``node``, each before the entries inside it: the gate's one walk of a config."""
    for at, value in node.items() if isinstance(node, dict) else enumerate(node):
        key = f"{path}[{at}]" if isinstance(node, list) else f"{path}.{at}" if path else str(at)
        yield _Node(key, node, at)
        if isinstance(value, dict | list):
            yield from _walk(value, key)


def _steps(
    stored: Any,
    kind: _Kind,
    source: str,
    run: Path,
    trusted: list[str],
    hint: str,
    given: Sequence[str],
    builds: Sequence[str] | None,
    revision: str | None,
    usage: str = "",
) -> dict[str, Any]:
    """``stored``, a config of ``kind`` read from ``source``, as plain data through the gate's steps, in order."""
    config = _resolved(stored, source)  # 1. resolve
    nodes = list(_walk(config))
    for node in nodes:  # an escaped "\${" resolves to "${", which the loaded config would read as one again
        if isinstance(node.value, str) and "${" in node.value:
            raise UserError(
                f"{source} holds {node.key}={node.value!r}, which would be read as an interpolation once loaded; "
                "lenet_exp never stores one, so nothing is built from it: give a file written by lenet_exp."
            )
    for node in nodes:  # 2. allow, before anything below imports a class
        if node.at == "_target_" and isinstance(node.holder, dict):
            check_target(node.key, node.value, source, trusted, hint)
    mine = _give_again(nodes, given, source, usage, kind.yaml_values)  # 3. the user's keys
    for node in nodes:  # 4. confine what the command builds
        if (builds is None or node.part in builds) and node.key not in mine:
            confine.check_value(node.key, node.value, node.holder, run, source)
    versions.check_required(config, source, revision, kind.required)  # 5. version
    for node in nodes:
        value = node.value
        if kind.versioned is None or node.part in kind.versioned:
            if isinstance(value, dict) and isinstance(value.get("_target_"), str):
                versions.check_node(node.key, value, source, revision)
    return config


def resume_arguments(config: dict[str, Any], run: Path) -> list[str]:
    """The ``key=value`` pairs that resuming ``run`` must be given again: of ``config`` (resolved, as the run got
    it), the servers it names and the folders it writes into outside the run folder, which the gate's
    confinement refuses unless the user names them (a sweep job's MLflow store is in the sweep folder)."""
    pairs, own = [], []
    for node in _walk(config):
        if node.at == "_target_" and not allowed(node.value) and node.value not in own:
            own.append(node.value)  # a class of the user's own (docs/own-model.md), which resume builds if trusted
        try:
            confine.check_value(node.key, node.value, node.holder, run, "")
        except UserError:
            value = node.value
            if isinstance(value, str) and "://" not in value and node.at not in ("tracking_uri", *confine.JOINED_KEYS):
                value = os.path.abspath(os.path.expanduser(value))  # a folder as this run reads it: from anywhere
            pairs.append(f"{node.key}={value}")
    return pairs + ([f"trust={','.join(own)}"] if own else [])


def _resolved(config: Any, source: str) -> dict[str, Any]:
    """``config`` as plain data with every interpolation resolved, so that no ``_target_`` can hide
    inside one (``${oc.decode:...}`` makes config out of a string)."""
    try:
        container = OmegaConf.to_container(OmegaConf.create(config), resolve=True)
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        raise UserError(
            f"{source} holds a config that cannot be read ({first_line(err)}); it is damaged or was "
            "not written by lenet_exp."
        ) from err
    if not isinstance(container, dict):
        raise UserError(f"{source} holds no run config (a mapping of keys); it was not written by lenet_exp.")
    return container


def _give_again(nodes: list[_Node], given: Sequence[str], source: str, usage: str, yaml_values: bool) -> set[str]:
    """Put the user's ``key=value`` pairs into the config the ``nodes`` walked; return their keys.

    ``yaml_values`` (a checkpoint): any key the config has, the value read as YAML. Else (a run folder): only a
    key that names a folder for writing or a server, the value as written (``null`` for none)."""
    where, mine = {node.key: node for node in nodes}, set()
    for pair in given:
        key, _, text = pair.partition("=")
        node = where.get(key)
        if yaml_values:
            value, problem = _yaml_value(text)
            if node is None or problem:
                raise UserError(
                    f"{pair} does not fit the checkpoint's config ({problem or f'it has no {key}'}); only existing "
                    "keys such as data.data_dir can be changed, and a value with YAML's special characters "
                    "(such as ': ' or '[') must be quoted."
                )
        elif node is None or not confine.confinable(key):
            example = min((n.key for n in nodes if confine.confinable(n.key)), default="callbacks.checkpoint.dirpath")
            raise UserError(
                f"{key} is not an argument of this command: of {source} only the keys that name a folder for "
                f"writing or a server can be given again (such as {example}=<folder>); {usage}"
            )
        else:
            value = None if text == "null" else text
        node.holder[node.at] = value
        mine.add(key)
    return mine


def _yaml_value(text: str) -> tuple[Any, str | None]:
    """``text`` read as YAML, as Hydra's command line reads a value; else why it cannot be read."""
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([f"value={text}"]))["value"], None
    except Exception as err:  # yaml's own errors, whatever their class
        return None, first_line(err)
