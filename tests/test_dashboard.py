"""`make dashboard`: a real optuna-dashboard serves the newest study (or the one given) on 127.0.0.1 only."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, free_port, get

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

# One study's trials: (intermediate val_acc per epoch, final state); lenet_exp reports val_acc after each epoch.
TRIALS = [
    ([0.62, 0.71, 0.74], optuna.trial.TrialState.COMPLETE),
    ([0.70, 0.78, 0.81], optuna.trial.TrialState.COMPLETE),
    ([0.55, 0.66, 0.69], optuna.trial.TrialState.COMPLETE),
    ([0.31], optuna.trial.TrialState.PRUNED),
]


def make_study(storage: str | optuna.storages.BaseStorage, name: str) -> None:
    """A small maximized study with three COMPLETE trials and one PRUNED after its first epoch."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    for accuracies, state in TRIALS:
        trial = study.ask()
        trial.suggest_float("model.optimizer.lr", 1e-4, 3e-2, log=True)
        trial.suggest_categorical("model.net.activation", ["sigmoid", "relu"])
        for epoch, accuracy in enumerate(accuracies, start=1):
            trial.report(accuracy, epoch)
        study.tell(trial, accuracies[-1] if state == optuna.trial.TrialState.COMPLETE else None, state=state)


def sqlite_study(sweep: Path, name: str) -> Path:
    """A study where the sweeper puts it when hydra.sweeper.storage is null: <sweep folder>/optuna.db."""
    sweep.mkdir(parents=True)
    db = sweep / "optuna.db"
    make_study(f"sqlite:///{db}", name)
    return db


def make(*args: str, **kwargs) -> subprocess.Popen:
    """`make dashboard <args>` in the repository, as a user runs it, with one difference: `-o .venv/.installed`
    (make's --old-file) keeps `setup` from reinstalling the venv, which it does whenever pyproject.toml is newer
    than that stamp (often so while pyproject.toml is edited), and which a test must neither do nor fake by
    touching the real stamp. The variables the target reads are removed from the environment (make would take
    them from there), and so are an enclosing `make test`'s MAKEFLAGS."""
    drop = {"STORAGE", "OUTPUTS", "DASHBOARD_PORT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    command = ["make", "--no-print-directory", "-C", str(ROOT), "-o", ".venv/.installed", "dashboard", *args]
    return subprocess.Popen(command, env=env, text=True, **kwargs)


def listening_addresses(port: int) -> set[str]:
    """The local addresses (as /proc/net/tcp{,6} spell them) of the sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: TCP_LISTEN
                found.add(address)
    return found


# 127.0.0.1 in /proc/net/tcp's spelling, and no IPv6 socket; where there is no /proc/net/tcp (not Linux), unchecked.
LOOPBACK_ONLY = {"0100007F"} if os.path.exists("/proc/net/tcp") else set()


@contextmanager
def dashboard(tmp_path: Path, *args: str):
    """`make dashboard DASHBOARD_PORT=<free port> <args>` until the server answers; yields its URL and its log.
    Always stopped: make and optuna-dashboard run in their own process group, which is killed as a whole."""
    port = free_port()
    log_path = tmp_path / f"dashboard-{port}.log"
    with log_path.open("w") as log:
        server = make(f"DASHBOARD_PORT={port}", *args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                get(f"{base}/api/studies")
                break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                pytest.fail(f"optuna-dashboard did not start (exit {server.poll()}):\n{log_path.read_text()}")
            time.sleep(0.3)
        yield base, port, log_path
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)


def assert_serves(base: str, name: str) -> None:
    """The server lists exactly the study ``name``, with every trial's state, value and intermediate values."""
    (summary,) = get(f"{base}/api/studies")["study_summaries"]
    assert summary["study_name"] == name and summary["directions"] == ["maximize"]
    detail = get(f"{base}/api/studies/{summary['study_id']}")
    assert detail["name"] == name and detail["has_intermediate_values"] is True
    trials = sorted(detail["trials"], key=lambda t: t["number"])
    assert [t["state"] for t in trials] == ["Complete", "Complete", "Complete", "Pruned"]
    for trial, (accuracies, _) in zip(trials, TRIALS, strict=True):
        assert [(v["step"], v["value"]) for v in trial["intermediate_values"]] == list(enumerate(accuracies, start=1))
        assert trial["values"] == [accuracies[-1]]  # a pruned trial's value: Optuna's tell takes its last report
        assert {p["name"] for p in trial["params"]} == {"model.optimizer.lr", "model.net.activation"}
    assert [t["number"] for t in detail["best_trials"]] == [1]


@pytest.mark.slow  # starts a server
def test_make_dashboard_serves_the_newest_study_in_outputs_on_127_0_0_1_only(tmp_path):
    outputs = tmp_path / "outputs"
    newer = sqlite_study(outputs / "multirun" / "2026-01-01" / "10-00-00", "newer")
    older = sqlite_study(outputs / "multirun" / "2026-01-02" / "09-00-00", "older")
    sqlite_study(outputs / "multirun" / "2026-01-03" / "08-00-00" / "0", "a job folder, not a sweep's")
    # Newest by modification time, not by folder name: the study an unfinished sweep is still writing.
    os.utime(older, (time.time() - 3600, time.time() - 3600))
    (outputs / "multirun" / "2026-01-03" / "08-00-00" / "0" / "optuna.db").touch()
    with dashboard(tmp_path, f"OUTPUTS={outputs}") as (base, port, log):
        assert_serves(base, "newer")
        assert listening_addresses(port) == LOOPBACK_ONLY
        assert f"optuna-dashboard: {newer}" in log.read_text().splitlines()


@pytest.mark.slow  # starts two servers
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_make_dashboard_serves_the_storage_given(tmp_path, kind):
    (tmp_path / "outputs" / "multirun").mkdir(parents=True)  # no study there: STORAGE is what is served
    if kind == "sqlite":
        storage = f"sqlite:///{sqlite_study(tmp_path / 'elsewhere', 'given')}"
    else:  # spelled as in hydra.sweeper.storage=journal:PATH
        from optuna.storages.journal import JournalFileBackend

        path = tmp_path / "study.log"
        make_study(optuna.storages.JournalStorage(JournalFileBackend(str(path))), "given")
        storage = f"journal:{path}"
    with dashboard(tmp_path, f"STORAGE={storage}", f"OUTPUTS={tmp_path / 'outputs'}") as (base, port, _):
        assert_serves(base, "given")
        assert listening_addresses(port) == LOOPBACK_ONLY


def test_make_dashboard_without_a_study_says_how_to_make_one(tmp_path):
    (tmp_path / "outputs" / "multirun" / "2026-01-01" / "10-00-00").mkdir(parents=True)  # a grid sweep: no optuna.db
    out = make(f"OUTPUTS={tmp_path / 'outputs'}", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = out.communicate(timeout=60)
    assert out.returncode == 2, stderr  # make's status when a recipe fails (the recipe's own exit 1)
    assert stdout.splitlines() == [
        f"no study in {tmp_path / 'outputs'}/multirun yet: run python -m lenet_exp hparams_search=lenet_optuna"
    ]
