"""lenet_exp's Optuna sweeper (hydra_plugins/lenet_exp_optuna, with lenet_exp/trial.py): studies that prune, studies
shared by several worker processes on SQLite, a journal file and a real PostgreSQL server, a killed worker's
trial recovered, a Pareto front, and settings refused before any trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT, TINY, run_cli, run_main, write_fake_fashion_mnist
from pytorch_lightning import Callback
from servers import postgres  # noqa: F401 (a fixture)

import lenet_exp
from hydra_plugins.lenet_exp_optuna._storage import open_storage
from lenet_exp.errors import UserError

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Fake Fashion-MNIST large enough that a good learning rate learns in three epochs and a tiny one does not."""
    folder = tmp_path_factory.mktemp("data")
    write_fake_fashion_mnist(folder, n_train=256, n_test=64)
    return folder


def study_args(data_dir: Path, sweep_dir: Path, *more: str) -> list[str]:
    """A small study: lr either useful or hopeless (1e-7), three epochs, the median pruner after two trials."""
    return [
        "hparams_search=lenet_optuna",
        *TINY,
        f"data.data_dir={data_dir}",
        "data.val_size=32",
        "model.net.activation=relu",
        "trainer.max_epochs=3",
        "model.optimizer.lr=choice(0.01,0.003,0.0000001)",
        "hydra.sweeper.pruner_options={n_startup_trials:2}",
        f"hydra.sweep.dir={sweep_dir}",
        *more,
    ]


def worker(*args: str, log: Path) -> subprocess.Popen:
    """``python -m lenet_exp <args>`` started in the background (its own process group), output to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lenet_exp", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def finish(process: subprocess.Popen, log: Path, timeout: int = 300) -> None:
    try:
        assert process.wait(timeout=timeout) == 0, log.read_text()[-4000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def jobs(sweep_dir: Path) -> dict[int, Path]:
    return {int(p.name): p for p in sweep_dir.iterdir() if p.name.isdigit()} if sweep_dir.is_dir() else {}


# Two trials, the second hopeless: the seeded sampler proposes lr 0.01, then 1e-7, which the median of trial 0 prunes.
HOPELESS_SECOND = [
    "hydra.sweeper.n_trials=2",
    "hydra.sweeper.pruner_options={n_startup_trials:1}",
    "model.optimizer.lr=choice(0.01,0.0000001)",
]


def test_a_study_prunes_hopeless_trials_and_records_each_trial_in_its_folder(tmp_path, data_dir):
    sweep = tmp_path / "study"
    # 2 trials: the seeded sampler proposes lr 0.01, then 1e-7, which trial 0's curve prunes (as in the DDP test)
    # in this process: test_pruning_stops_every_ddp_rank_together runs the same study as a command. The metric as
    # a list of one, as a list of objectives is written: it turned pruning off without a word
    out = run_main("lenet_exp", *study_args(data_dir, sweep, *HOPELESS_SECOND, "optimized_metric=[val_acc]"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = optuna.load_study(study_name="lenet", storage=f"sqlite:///{sweep / 'optuna.db'}")  # the default
    trials = {t.number: t for t in study.trials}
    assert sorted(trials) == list(range(2)) and sorted(jobs(sweep)) == list(range(2))  # folder N is trial N
    states = [t.state.name for t in trials.values()]
    assert "PRUNED" in states and "COMPLETE" in states and "FAIL" not in states, states
    for number, trial in trials.items():
        metrics = json.loads((sweep / str(number) / "metrics.json").read_text())
        assert trial.user_attrs["job_folder"] == str(sweep / str(number))
        assert metrics["trial"]["number"] == number and metrics["trial"]["study"] == "lenet"
        # every epoch it ran was reported, with the value metrics.json's per-epoch curve ends with
        assert sorted(trial.intermediate_values) == list(range(1, metrics["epochs"] + 1))
        assert (sweep / str(number) / "checkpoints" / "last.ckpt").is_file()  # a pruned trial keeps them too
        if trial.state.name == "PRUNED":
            assert metrics["trial"]["pruned_after"] == metrics["epochs"] < 3
            assert trial.value == trial.intermediate_values[metrics["epochs"]]  # its last value
            assert trial.user_attrs["epochs_saved"] == 3 - metrics["epochs"]
        else:
            assert metrics["trial"]["pruned_after"] is None and metrics["epochs"] == 3
            assert trial.value == pytest.approx(metrics["val_acc"])
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max((t for t in trials.values() if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert (results["best_trial"], results["best_value"], results["best_params"]) == (
        best.number,
        best.value,
        best.params,
    )
    assert results["states"] == {s: states.count(s) for s in set(states)}
    assert results["epochs_saved_by_pruning"] == sum(t.user_attrs.get("epochs_saved", 0) for t in trials.values()) > 0
    assert "pruned after epoch" in out.stdout and "Best parameters" in out.stdout + out.stderr
    assert ": 2 trials, maximizing val_acc, tpe sampler, median pruner;" in out.stdout + out.stderr  # the start line
    report = run_main("lenet_exp.report", str(sweep))  # in this process (test_report.py runs it in its own)
    assert report.returncode == 0, report.stderr
    assert "PRUNED" in report.stdout and "COMPLETE" in report.stdout
    for trial in trials.values():  # "PRUNED (1 epoch, 2 saved)": counted in words
        if trial.state.name == "PRUNED":
            ran = 3 - trial.user_attrs["epochs_saved"]
            assert f"PRUNED ({ran} epoch{'s' * (ran != 1)}, {3 - ran} saved)" in report.stdout, report.stdout


SHARED = {  # storage -> the second worker's launcher: every launcher runs trials that report to their study
    "sqlite": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"],
    "journal": ["hydra/launcher=slurm_local"],
    "postgresql": [],
}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_workers_opening_a_new_database_at_once_all_get_it(kind, tmp_path, request):
    """Workers started together on an empty database race to create its tables (CI saw SQLite's "table
    trial_heartbeats already exists" end one worker); every one of them must get the storage."""
    for attempt in range(5):
        if kind == "postgresql":
            url = request.getfixturevalue("postgres").new_database(f"race{attempt}")
        else:
            url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        start, errors = threading.Barrier(6), []

        def open_it(url=url, start=start, errors=errors):
            start.wait()
            try:
                open_storage(url)
            except Exception as err:  # noqa: BLE001 (collected, asserted below)
                errors.append(err)

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert optuna.storages.RDBStorage(url).get_all_studies() == []


@pytest.mark.parametrize("kind", SHARED)
def test_two_workers_share_one_study_with_exactly_n_trials(kind, tmp_path, data_dir, request):
    if kind == "postgresql":
        storage = request.getfixturevalue("postgres").new_database("shared")
    else:
        storage = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'study.log'}"

    # 4 trials: worker b (a process, with the kind's launcher) takes a trial of the study, then worker a (the
    # command's main, in this process) joins the study while b runs it: each takes some before the study has its 4
    common = [f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared", "hydra.sweeper.n_trials=4"]
    common += ["trainer.max_epochs=2"]
    log = tmp_path / "b.log"
    b = worker(*study_args(data_dir, tmp_path / "b", *common, *SHARED[kind]), log=log)
    url, file = storage.replace("journal:", "journal://"), {"sqlite": "study.db", "journal": "study.log"}.get(kind)
    try:
        deadline, taken = time.monotonic() + 180, []
        while not taken and time.monotonic() < deadline and b.poll() is None:
            time.sleep(0.1)
            if file and not (tmp_path / file).exists():
                continue  # b has not made it yet (opening it here would)
            try:  # as the workers open it, safe while b is creating its tables
                taken = optuna.load_study(study_name="shared", storage=open_storage(url)).trials
            except Exception:  # not created yet
                pass
        assert taken, log.read_text()[-3000:]
        a = run_main("lenet_exp", *study_args(data_dir, tmp_path / "a", *common))
        assert a.returncode == 0, a.stdout[-3000:] + a.stderr[-3000:]
    finally:
        finish(b, log)
    if kind == "journal":
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log"))
        )
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert sorted(t.number for t in trials) == list(range(4))  # exactly n_trials, no number twice
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}, [(t.number, t.state, t.user_attrs) for t in trials]
    ran = {**{n: "a" for n in jobs(tmp_path / "a")}, **{n: "b" for n in jobs(tmp_path / "b")}}
    assert set(ran.values()) == {"a", "b"}, ran  # both workers took trials
    assert len(jobs(tmp_path / "a")) + len(jobs(tmp_path / "b")) == 4 and sorted(ran) == list(range(4))
    for trial in trials:  # each in its own worker's folder, every epoch reported from whichever launcher ran it
        assert trial.user_attrs["job_folder"] == str(tmp_path / ran[trial.number] / str(trial.number))
        assert sorted(trial.intermediate_values) == list(range(1, trial.user_attrs["epochs"] + 1))
    for folder in ("a", "b"):  # each worker's results are the whole study's
        assert yaml.safe_load((tmp_path / folder / "optimization_results.yaml").read_text())["n_trials"] == 4


def test_a_killed_workers_trial_is_failed_by_the_next_worker_and_the_study_continues(tmp_path, data_dir, request):
    url = request.getfixturevalue("postgres").new_database("killed")
    args = study_args(
        data_dir,
        tmp_path / "study",
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.heartbeat_interval=0.5",
        "hydra.sweeper.grace_period=2",
    )
    first = worker(*args, log=tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            try:
                study = optuna.load_study(study_name="lenet", storage=url)
                running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            except Exception:  # not created yet, or its tables are being made
                running = []
            if running and (tmp_path / "study" / str(running[0].number) / ".hydra").is_dir():
                break  # its job has started
            time.sleep(0.1)
        assert running, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its job die mid-trial
        first.wait()
    time.sleep(2.5)  # longer than grace_period: the trial's heartbeat is stale
    again = run_main("lenet_exp", *args)  # the same command again (its main, in this process)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    trials = optuna.load_study(study_name="lenet", storage=url).trials
    assert [t.state.name for t in trials].count("FAIL") == 1 and len(trials) == 3
    killed = next(t for t in trials if t.state.name == "FAIL")
    assert killed.number == running[0].number and "its worker stopped (no heartbeat" in killed.user_attrs["error"]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials if t is not killed)
    assert f"trial {killed.number} of the study marked failed" in again.stdout + again.stderr
    assert sorted(jobs(tmp_path / "study")) == [0, 1, 2]  # the killed trial's folder stays; the others beside it
    assert not (tmp_path / "study" / str(killed.number) / "metrics.json").exists()


def test_two_objectives_give_a_pareto_front(tmp_path, data_dir):
    sweep = tmp_path / "study"
    lenet_exp.sweep(  # in this process: the tests above run studies as users do, from the command line
        *study_args(data_dir, sweep, "hydra.sweeper.n_trials=3", "trainer.max_epochs=1", "hydra.sweeper.pruner=none"),
        "hydra.sweeper.pruner_options=null",
        "optimized_metric=[val_acc,seconds_per_epoch]",
        "hydra.sweeper.direction=[maximize,minimize]",
    )
    study = optuna.load_study(study_name="lenet", storage=f"sqlite:///{sweep / 'optuna.db'}")
    front = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_trials"]
    assert [t["number"] for t in front] == [t.number for t in study.best_trials] and front
    for entry in front:
        metrics = json.loads((sweep / str(entry["number"]) / "metrics.json").read_text())
        assert entry["values"] == {"val_acc": metrics["val_acc"], "seconds_per_epoch": metrics["seconds_per_epoch"]}


class RemoveAtFitEnd(Callback):
    """Removes ``path`` when a trial's fit ends, once (``marker``): the study's database going away mid-study."""

    def __init__(self, path: str, marker: str) -> None:
        self.path, self.marker = Path(path), Path(marker)

    def on_fit_end(self, trainer, pl_module) -> None:
        if not self.marker.exists():
            self.marker.touch()
            self.path.unlink()


def test_a_storage_that_fails_between_trials_is_one_sentence_and_keeps_what_was_written(tmp_path, data_dir):
    """The SQLite file removed while trial 0 ends: the sweeper's next write to it failed in a traceback of Optuna's
    and SQLAlchemy's; now one sentence with SQLite's own reason, and trial 0's folder as it was written."""
    sweep = tmp_path / "study"
    remove = [
        f"+callbacks.remove._target_={__name__}.RemoveAtFitEnd",
        f"+callbacks.remove.path={sweep / 'optuna.db'}",
        f"+callbacks.remove.marker={tmp_path / 'removed'}",
    ]
    args = study_args(data_dir, sweep, "hydra.sweeper.n_trials=3", "trainer.max_epochs=1", *remove)
    with pytest.raises(UserError) as failed:
        lenet_exp.sweep(*args)  # in this process: the tests above run studies from the command line
    said = str(failed.value)
    assert said.startswith(f"the study's storage sqlite:///{sweep / 'optuna.db'} failed (")
    assert "readonly database" in said and "Nothing was run" not in said, said
    assert "run the same command again to go on" in said and "\n" not in said
    assert json.loads((sweep / "0" / "metrics.json").read_text())["epochs"] == 1  # what trial 0 wrote stays
    # The same command again, the storage still gone: a new study's trial 0 retrained into folder 0, replacing
    # its metrics.json; now refused, and the folder kept as it is.
    kept = (sweep / "0" / "metrics.json").read_bytes()
    with pytest.raises(UserError) as refused:
        lenet_exp.sweep(*args)
    assert (
        f"the study lenet is not in sqlite:///{sweep / 'optuna.db'} any more, but {sweep} holds the folders of 1"
        in (str(refused.value))
    )
    assert (sweep / "0" / "metrics.json").read_bytes() == kept and not (sweep / "1").exists()


def test_pruning_stops_every_ddp_rank_together(tmp_path, data_dir):
    sweep = tmp_path / "study"
    same = "data.eval_batch_size=${data.batch_size}"  # an interpolation, in the command line rank 1 starts with
    out = run_cli(
        *study_args(data_dir, sweep, *HOPELESS_SECOND, same), "trainer=ddp_cpu", "trainer.devices=2", timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = optuna.load_study(study_name="lenet", storage=f"sqlite:///{sweep / 'optuna.db'}")
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, [(t.number, t.state.name, t.intermediate_values) for t in study.trials]
    for trial in pruned:  # rank 1 stopped after the same epoch: the job ended, its folder complete
        metrics = json.loads((sweep / str(trial.number) / "metrics.json").read_text())
        assert metrics["epochs"] == metrics["trial"]["pruned_after"] == max(trial.intermediate_values)


def test_settings_that_cannot_work_are_one_sentence_before_any_trial(tmp_path, data_dir):
    sweep = tmp_path / "study"
    out = run_cli(*study_args(data_dir, sweep, "hydra.sweeper.sampler=bayes"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip() == (
        "error: hydra.sweeper.sampler=bayes is not known; choose one of tpe, random, gp, cmaes, qmc, nsga2. "
        "Nothing was run."
    )
    assert not sweep.exists()
    cases = {
        "hydra.sweeper.pruner=early": "hydra.sweeper.pruner=early is not known; choose one of median, hyperband,",
        "model.optimizer.lrr=interval(0.001,0.1)": "the search space names model.optimizer.lrr, which is not a key",
        "optimized_metric=test_acc": "optimized_metric=test_acc would choose hyperparameters on the test set",
        "optimized_metric=[val_acc,1]": "optimized_metric=['val_acc', 1] names no metric; give one of train_loss,",
        "hydra.sweeper.storage=mongodb://127.0.0.1/x": "hydra.sweeper.storage=mongodb://127.0.0.1/x is not a storage",
        "hydra.sweeper.storage=postgresql+psycopg://lenet@127.0.0.1:9/x": "postgresql+psycopg://lenet@127.0.0.1:9/x "
        "cannot be reached (connection failed",
        "hydra.sweeper.pruner=hyperband": "HyperbandPruner has no option n_startup_trials; it takes min_resource,",
        "optimized_metric=train_acc": "pruning compares one validation metric after every epoch, not train_acc",
        "+hydra.sweeper.max_failure_rate=0.5": "hydra.sweeper.max_failure_rate is not a setting of lenet_exp's Optuna",
        "hydra.sweeper.storage=sqlite:///:memory:": "is a database in memory, which each job would see empty",
        "hydra.sweeper.pruner_options=5": "hydra.sweeper.pruner_options=5 must be the options by name, such as",
        "hydra.sweeper.seed=abc": "hydra.sweeper.seed=abc must be a whole number, such as 42, or null.",
        # hydra-optuna-sweeper's default direction is minimize; lightning-hydra-template's metric often val_loss
        "optimized_metric=val_loss": "hydra.sweeper.direction=maximize with optimized_metric=val_loss would choose "
        "the trial of the highest val_loss; use minimize for it.",
        "hydra.sweeper.direction=minimize": "would choose the trial of the lowest val_acc; use maximize for it.",
        "hydra.sweeper.direction=null": "hydra.sweeper.direction=null is not a direction; use maximize or minimize.",
    }
    for override, sentence in cases.items():
        with pytest.raises(UserError, match=None) as refused:
            lenet_exp.sweep(*study_args(data_dir, sweep, override))
        assert sentence in str(refused.value), (override, str(refused.value))
        assert not sweep.exists(), override
    # a study stored with another direction
    stored = f"sqlite:///{tmp_path / 'stored.db'}"
    optuna.create_study(study_name="lenet", storage=stored, direction="minimize")
    with pytest.raises(UserError) as refused:
        lenet_exp.sweep(*study_args(data_dir, sweep, f"hydra.sweeper.storage={stored}"))
    assert "was created to minimize val_acc, not to maximize val_acc" in str(refused.value)
    assert len(optuna.load_study(study_name="lenet", storage=stored).trials) == 0
    # a setting every trial's job refuses: each trial fails, and the study ends with their list
    failing = tmp_path / "failing"
    with pytest.raises(UserError) as refused:
        lenet_exp.sweep(*study_args(data_dir, failing, "hydra.sweeper.n_trials=2", "data.batch_size=0"))
    listed = str(refused.value)
    assert listed.startswith("2 of 2 jobs of the sweep failed (each folder keeps its error.txt): job 0 ("), listed
    assert "such as 256; job 1 (" in listed and listed.endswith(f"such as 256. (the sweep folder {failing})"), listed
    assert (failing / "0" / "error.txt").read_text().startswith("data.batch_size=0 must be a positive whole number")
    # a study whose trials tried other values of a parameter: Optuna would fail the next trial (and count it)
    tried = f"sqlite:///{tmp_path / 'tried.db'}"
    spaces = {
        "model.optimizer.lr": optuna.distributions.CategoricalDistribution([0.01, 0.003, 1e-7]),  # study_args' space
        "model.label_smoothing": optuna.distributions.FloatDistribution(0.01, 0.2, log=True),
    }
    values = {"model.optimizer.lr": 0.01, "model.label_smoothing": 0.1}
    trial = optuna.trial.create_trial(params=values, distributions=spaces, value=0.5)
    optuna.create_study(study_name="lenet", storage=tried, direction="maximize").add_trial(trial)
    kept = "and a study keeps each parameter's kind (choice, range, interval), scale and choices; search"
    cases = {
        "model.optimizer.lr=choice(0.01,0.003)": "the search space gives model.optimizer.lr=choice(0.01, 0.003), but "
        f"the study lenet in {tried} has tried model.optimizer.lr=choice(0.01, 0.003, 1e-07), {kept} "
        "model.optimizer.lr=choice(0.01, 0.003, 1e-07), or give another hydra.sweeper.study_name.",
        "model.label_smoothing=interval(0.01,0.2)": "the search space gives model.label_smoothing=interval(0.01, 0.2), "
        f"but the study lenet in {tried} has tried model.label_smoothing=tag(log, interval(0.01, 0.2)), {kept} ",
        "model.label_smoothing=choice(0.1,0.2)": "has tried model.label_smoothing=tag(log, interval(0.01, 0.2)), ",
    }
    for override, sentence in cases.items():
        with pytest.raises(UserError) as refused:
            lenet_exp.sweep(*study_args(data_dir, sweep, f"hydra.sweeper.storage={tried}", override))
        assert sentence in str(refused.value), (override, str(refused.value))
        assert not sweep.exists(), override
    assert len(optuna.load_study(study_name="lenet", storage=tried).trials) == 1  # no trial failed on it


def test_a_sweep_checks_its_settings_and_opens_its_study_once(tmp_path, data_dir, monkeypatch):
    """lenet_exp.sweep, the SweepChecks callback and the sweeper all need the checked settings and the stored
    study: the settings are checked, the storage opened and the study loaded once for the whole sweep. (Its one
    trial's job fails on its own setting before training: the study records it FAIL, and with no other trial the
    sweep ends with it.)"""
    from hydra_plugins.lenet_exp_optuna import _study

    stored = f"sqlite:///{tmp_path / 'stored.db'}"
    earlier = optuna.create_study(study_name="lenet", storage=stored, direction="maximize")
    earlier.set_user_attr(_study.TARGET, 0)  # as a worker that queued its trials leaves it: joined without waiting
    calls: dict[str, int] = {}

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(_study, "search_plan", counted("checked", _study.search_plan))
    monkeypatch.setattr(_study, "open_storage", counted("storage opened", _study.open_storage))
    monkeypatch.setattr(optuna, "load_study", counted("study loaded", optuna.load_study))
    monkeypatch.setattr(optuna, "create_study", counted("study created", optuna.create_study))
    same = "data.eval_batch_size=${data.batch_size}"  # an interpolation: the command line as typed is the same
    args = study_args(data_dir, tmp_path / "study", "hydra.sweeper.n_trials=1", "data.batch_size=0", same)
    with pytest.raises(UserError, match=r"1 of 1 jobs .*: data.batch_size=0 must be a positive whole number"):
        lenet_exp.sweep(*args, f"hydra.sweeper.storage={stored}")
    assert calls == {"checked": 1, "storage opened": 1, "study loaded": 1}, calls
    assert [t.state.name for t in optuna.load_study(study_name="lenet", storage=stored).trials] == ["FAIL"]
