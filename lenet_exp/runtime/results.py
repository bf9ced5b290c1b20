"""What a run (or an evaluation) records: metrics, hyperparameters, the machine and the code's revision."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lenet_exp.runtime.writes import atomic_write, open_append


def git_revision() -> str:
    """The commit of the code that ran, with ``-dirty`` when it had uncommitted changes; ``unknown``
    for an installed copy (whose folder may lie inside some other repository, such as a project's .venv)."""
    here = Path(__file__).resolve().parent
    root = here.parents[1]  # the checkout that holds lenet_exp/
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
            return "unknown"
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        # without git's optional lock and index refresh: a run must not write into the checkout's .git (a commit
        # made at that moment would find .git/index.lock)
        status = ["git", "--no-optional-locks", "status", "--porcelain"]
        dirty = subprocess.run(status, cwd=here, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.strip() else "")


def cpu_model() -> str:
    """The CPU's model name, as the kernel reports it (``/proc/cpuinfo``), else what Python knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What makes a timing comparable: versions, the device a run used, cores and threads."""

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    device = torch.device(device)
    record: dict[str, Any] = {
        "python": platform.python_version(),
        **{name: installed(name) for name in ("torch", "torchvision", "pytorch-lightning", "hydra-core")},
        "device": device.type,
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        # the vector kernels torch's CPU operators run (AVX512, AVX2, ...): one model name can come with either,
        # and they differ in speed and in the last bits of float results; ATEN_CPU_CAPABILITY can lower it
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        record.update(
            gpu=torch.cuda.get_device_name(device),
            gpu_count=torch.cuda.device_count(),
            cuda=torch.version.cuda,
        )
    return record


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Lightning's ``callback_metrics`` ({"test/acc": tensor}) as metrics.json keys ({"test_acc": float})."""
    return {key.replace("/", "_"): float(value) for key, value in sorted(metrics.items()) if key != "step"}


def hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """The run's data, model and trainer settings as flat ``key: scalar`` (None for one left empty, such as
    ``model.ema_decay``), for TensorBoard's HParams, with the top-level ``seed``, ``test_on`` and ``steps_per_call``.

    A nested part is named by its class's short name (``model.optimizer: Adam``), beside its settings
    (``model.optimizer.lr``); no ``_target_`` keys.
    """
    skip = {"data_dir", "download", "verify_md5", "default_root_dir", "_partial_", "plugins", "_target_"}
    flat: dict[str, Any] = {key: cfg.get(key) for key in ("seed", "test_on", "steps_per_call")}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if key in skip:
                continue
            if isinstance(value, dict):
                if prefix and isinstance(value.get("_target_"), str):
                    flat[f"{prefix}{key}"] = value["_target_"].rpartition(".")[2]
                walk(value, f"{prefix}{key}.")
            elif value is None or isinstance(value, bool | int | float | str):
                flat[f"{prefix}{key}"] = value

    resolved = OmegaConf.to_container(cfg, resolve=True)
    walk({key: resolved[key] for key in ("data", "model", "trainer")}, "")
    return flat


def write_json(path: Path, record: dict[str, Any]) -> None:
    """``path`` holds the whole record or what it held before, never a part."""
    atomic_write(path, (json.dumps(record, indent=2) + "\n").encode())


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One line more in ``path``, never written through a link planted there, under a short lock of
    the file: two evaluations at once each append their whole line."""
    with open_append(path, text=False) as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed
        # a line left half written (a process killed mid-line, a copy cut short) stays one bad line of its own
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as read:
            size = read.seek(0, os.SEEK_END)
            read.seek(max(size - 1, 0))
            unfinished = size > 0 and read.read(1) != b"\n"
        f.write((("\n" if unfinished else "") + json.dumps(record) + "\n").encode())
