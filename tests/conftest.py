"""Shared fixtures: tiny Fashion-MNIST look-alikes in the real IDX format, and Hydra's compose API."""

from __future__ import annotations

import atexit
import contextlib
import gzip
import importlib
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

# torch, Hydra and lenet_exp (which imports Lightning) are imported where they are used, not here: pytest-xdist's
# controller loads this file too, and starts its workers only after it (about 4 s sooner without them).
ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
# A tiny CPU run on the synthetic files (their MD5s are not the published ones).
TINY = ["trainer=cpu", "data.verify_md5=false", "data.batch_size=16"]
ONE_EPOCH = [*TINY, "trainer.max_epochs=1"]


def __getattr__(name: str):
    """``HAVE_REAL_DATA``, and ``real_data``: the marks of the tests on the real Fashion-MNIST (few, and run in CI:
    make test installs the data first). Made when a test file first imports them (in a worker), not when this file
    loads (pytest asks this module for other names, such as its hooks', which are not here)."""
    if name not in ("HAVE_REAL_DATA", "real_data"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from lenet_exp import data

    have = all(
        any((data.DEBIAN_DIR / f"{file}{ext}").is_file() for ext in (".gz", ""))
        for pair in data.FILES.values()
        for file in pair
    )
    if name == "HAVE_REAL_DATA":
        return have
    reason = f"Fashion-MNIST not in {data.DEBIAN_DIR}: run `make data`"
    return [pytest.mark.realdata, pytest.mark.skipif(not have, reason=reason)]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n N``), each worker's torch, and the torch of every process a test starts, gets
    cores / N threads (``OMP_NUM_THREADS``, unless already set): N workers each training with torch's default
    of every core would keep N times as many threads busy as there are cores, and torch's threads spin while
    they wait for one another. On 2 cores, with 2 workers, this took the whole suite from 11 to 9 minutes."""
    workers = getattr(config.option, "numprocesses", None)
    if isinstance(workers, int) and workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


def pytest_report_header() -> str:
    """The CPU the suite runs on, first in its output: its time (docs/testing.md) and the last bits of its float
    results depend on the kind, with AVX-512 or without. Read from the kernel, not torch (not imported here)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return f"cpu: {os.cpu_count()} cores"
    model = re.search(r"^model name\s*:\s*(.*)$", info, re.MULTILINE)
    flags = re.search(r"^flags\s*:(.*)$", info, re.MULTILINE)
    kind = "with" if flags and "avx512f" in flags[1].split() else "without"
    forced = os.environ.get("ATEN_CPU_CAPABILITY")
    return f"cpu: {model[1] if model else 'unknown'}, {os.cpu_count()} cores, {kind} AVX-512" + (
        f" (torch's kernels: ATEN_CPU_CAPABILITY={forced})" if forced else ""
    )


# The test files that take longest (seconds summed over their tests, 2 workers on the 2-core AVX-512 kind,
# 2026-12-06), run first: make test hands whole files to its workers in collection order
# (--no-loadscope-reorder), so that no worker is left with one long file while the other has none.
LONGEST_FIRST = [
    "test_search.py",  # 103
    "test_slurm.py",  # 85
    "test_gpu_check.py",  # 77
    "test_mlflow_server.py",  # 69
    "test_launchers.py",  # 65
    "test_faults.py",  # 53
    "test_trainer_args.py",  # 52
    "test_bench.py",  # 45
    "test_resume.py",  # 39
    "test_docs.py",  # 37
    "test_packaging.py",  # 36
    "test_realdata.py",  # 36
    "test_errors.py",  # 32
    "test_sweeps.py",  # 28
    # then the longest of make test-fast (its tests' seconds, 2026-12-08), so that its workers end together too
    "test_steps_per_call.py",  # 5
    "test_selection.py",  # 3.5
    "test_config.py",  # 2.5
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of ``LONGEST_FIRST`` first, in that order; the others after them, in pytest's order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


def idx_bytes(array: torch.Tensor) -> bytes:
    """The IDX encoding of a uint8 tensor: magic 0x08 0x<ndim>, big-endian sizes, then the bytes."""
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.contiguous().numpy().tobytes()


def write_idx(path: Path, array: torch.Tensor, gz: bool = True) -> Path:
    import torch

    raw = idx_bytes(array.to(torch.uint8))
    target = path.with_name(path.name + ".gz") if gz else path
    target.write_bytes(gzip.compress(raw) if gz else raw)
    return target


def write_fake_fashion_mnist(directory: Path, n_train: int = 64, n_test: int = 32, gz: bool = True, seed: int = 0):
    """Four IDX files with the real names; pixels encode the label so a net can learn them."""
    import torch

    from lenet_exp import data

    directory.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = torch.arange(n) % 10
        images = torch.randint(0, 60, (n, 28, 28), generator=g)
        images[torch.arange(n), labels * 2 + 4, :] = 255  # a bright row whose position is the class
        images_name, labels_name = data.FILES[split]
        out[images_name] = write_idx(directory / images_name, images, gz)
        out[labels_name] = write_idx(directory / labels_name, labels, gz)
    return out


@pytest.fixture
def fake_data(tmp_path: Path) -> Path:
    """A data_dir with small synthetic files (their MD5s are not the published ones)."""
    directory = tmp_path / "data"
    write_fake_fashion_mnist(directory)
    return directory


def _trained(tmp_path_factory, name: str, overrides: list[str]) -> tuple[Path, dict]:
    from lenet_exp.train import train

    data_dir = tmp_path_factory.mktemp(f"{name}-data")
    write_fake_fashion_mnist(data_dir)  # the same files as the fake_data fixture's
    run = tmp_path_factory.mktemp(name) / "run"
    return run, train(compose_config(run, [*overrides, f"data.data_dir={data_dir}"]))


# The runs of these two, shared by the tests that only read them (a test that writes into one copies it).
TWO_EPOCHS = [*TINY, "trainer.max_epochs=2"]
VALIDATED = [*TINY, "trainer.max_epochs=3", "data.val_size=16", "model.optimizer.lr=0.02"]


@pytest.fixture(scope="session")
def two_epochs_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run folder, metrics) of ``TWO_EPOCHS`` on the synthetic files: the book's protocol (no validation
    split: the last weights are tested, no best.ckpt), with the default TensorBoard logger."""
    return _trained(tmp_path_factory, "two-epochs", TWO_EPOCHS)


@pytest.fixture(scope="session")
def validated_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run folder, metrics) of ``VALIDATED`` on the synthetic files: a validation split of 16 images, so
    best.ckpt is kept and tested, with the default TensorBoard logger."""
    return _trained(tmp_path_factory, "validated", VALIDATED)


@pytest.fixture
def no_debian_data(monkeypatch, tmp_path: Path) -> Path:
    """Point the Debian fallback at an empty folder, so only what a test writes is found."""
    from lenet_exp import data

    empty = tmp_path / "no-debian"
    empty.mkdir()
    monkeypatch.setattr(data, "DEBIAN_DIR", empty)
    return empty


def compose_config(run_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """The config ``python -m lenet_exp <overrides>`` would run, writing into ``run_dir``.

    Hydra's own node is set as it is during a run, so ``${hydra:...}`` interpolations resolve.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        HydraConfig.instance().set_config(cfg)
        del cfg["hydra"]
    return cfg


def load_checkpoint(path: str | Path, trusted: tuple[str, ...] | list[str] = (), hint: str = "trust") -> dict:
    """The checkpoint at ``path`` (tensors and plain data, its stored config resolved) through the gate for stored
    configs, as the commands read one, with nothing built from it: its weights, epoch and config."""
    from lenet_exp.runtime.stored_config import open_stored

    return open_stored(path, trusted, builds=(), hint=hint).checkpoint


def run_cli(
    *args: str,
    module: str = "lenet_exp",
    timeout: int = 300,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` as a user runs it: from a folder of their own outside the checkout
    (``cwd``, else a new empty one), so that nothing is found only because the current folder happens to be
    the repository. ``python <module> <args>`` for a script of the checkout (``benchmarks/bench.py``), from
    the checkout, as make runs it."""
    script = module.endswith(".py")
    program = [module] if script else ["-m", module]
    cwd = cwd or (ROOT if script else Path(tempfile.mkdtemp(prefix="user-folder-", dir=_scratch())))
    return subprocess.run(
        [sys.executable, *program, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def run_main(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in this process: the command's ``main(argv)`` with stdout and stderr
    captured, and the root logger without handlers, as a new process has it, so that the command sets up its
    console as it does when run. For the many cases of a command (about a second each, not a subprocess's
    five) whose way from a terminal one run_cli test already takes. An exception other than the command's exit
    is raised here (run as a command, it would be a traceback), failing the test. ``run_main("lenet_exp", ...)``
    is the training command (``python -m lenet_exp``, whose jobs of a sweep the launcher still starts as
    processes where it does so from a terminal)."""
    # Lightning gives its loggers a handler of their own, for good, when it is first imported under a root
    # logger without handlers: let that import happen here, under pytest's handlers, not inside the command
    import pytorch_lightning  # noqa: F401

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                _main(module, list(args))
            except SystemExit as stop:  # as Python ends with it: a number is the code, text goes to stderr
                code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def _main(module: str, argv: list[str]) -> None:
    """The command's main with ``argv``. The training command's is Hydra's main, which reads sys.argv and
    leaves Hydra's global state set (cleared here, as a new process has it); Lightning's loggers then write
    through the console the run sets up (imported before it here, they have a handler of their own)."""
    if module != "lenet_exp":
        return importlib.import_module(module).main(argv)
    from hydra.core.global_hydra import GlobalHydra

    from lenet_exp.__main__ import main

    libraries = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    kept = [(library.handlers[:], library.propagate) for library in libraries]
    for library in libraries:
        library.handlers, library.propagate = [], True
    saved, sys.argv = sys.argv, ["lenet_exp", *argv]
    try:
        main()
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
        for library, (handlers, propagate) in zip(libraries, kept, strict=True):
            library.handlers, library.propagate = handlers, propagate


def _scratch() -> Path:
    """One temporary folder per test process for run_cli's working folders, removed when the process ends."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = Path(tempfile.mkdtemp(prefix="lenet_exp-tests-"))
        atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
    return _SCRATCH


_SCRATCH: Path | None = None


def counted_over(accuracy: float, images: int) -> bool:
    """Whether ``accuracy`` is k / ``images`` for a whole k: the share of exactly that many images that were
    evaluated, each once (not a batch's, not a mean over batches of different sizes)."""
    return 0 <= accuracy <= 1 and abs(accuracy * images - round(accuracy * images)) < 1e-6


def apply(marks):
    """Decorate a test with a list of marks (such as ``real_data``)."""

    def decorate(test):
        for mark in marks:
            test = mark(test)
        return test

    return decorate


def first_of_each(cases, kind=lambda case: None) -> list:
    """A table's cases for ``pytest.mark.parametrize``: the first case of each kind (by default the table's first
    case) runs in ``make test-fast`` as well, and the others, marked ``slow``, in ``make test`` only. A case that is
    a tuple gives the test's several arguments."""
    seen, params = set(), []
    for case in cases:
        values = case if isinstance(case, tuple) else (case,)
        params.append(pytest.param(*values, marks=pytest.mark.slow if kind(case) in seen else ()))
        seen.add(kind(case))
    return params


def event_dir(run: Path) -> Path:
    """The one TensorBoard run folder of a run: <run>/tensorboard/<overrides>/."""
    folders = {path.parent for path in (run / "tensorboard").rglob("events.out.tfevents.*")}
    assert len(folders) == 1, folders
    return folders.pop()


def epoch_lines(output: str) -> list[str]:
    """The book's epoch lines ("epoch N, loss ..., time ... sec") in a command's output."""
    return re.findall(r"^epoch \d+, .*$", output, re.MULTILINE)


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every point of ``tag`` in the run's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(event_dir(run)))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def sweep(
    tmp_path: Path, fake_data: Path, *args: str, in_process: bool = False
) -> tuple[subprocess.CompletedProcess, Path]:
    """``python -m lenet_exp -m`` one epoch on ``fake_data`` into ``tmp_path/sweep``: a real command from a user's
    folder, or (``in_process``) its main here, run_main; the jobs are the launcher's processes either way where
    it starts processes (joblib, submitit, SLURM)."""
    folder = tmp_path / "sweep"
    args = ("-m", *ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.sweep.dir={folder}", *args)
    return (run_main("lenet_exp", *args) if in_process else run_cli(*args)), folder


def assert_complete(job: Path) -> dict:
    assert (job / "checkpoints" / "last.ckpt").is_file()
    assert (job / ".hydra" / "config.yaml").is_file()
    assert scalars(job, "train/loss")
    return json.loads((job / "metrics.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"X-XSRF-Protected": "1", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as response:
        return json.loads(response.read())


TIMING = ("seconds_per_epoch", "epoch_seconds", "first_step_at", "git_rev")  # differ between equal runs


def unfinished_copy(run: Path, into: Path) -> Path:
    """``run`` copied to ``into/copy`` without its metrics.json, so that resume has work to do."""
    import shutil

    folder = into / "copy"
    shutil.copytree(run, folder)
    (folder / "metrics.json").unlink()
    return folder
