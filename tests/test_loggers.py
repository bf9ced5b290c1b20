"""The logger group: TensorBoard, CSV, MLflow, none, or several at once; each read back after a run."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import ONE_EPOCH, compose_config, event_dir, run_cli, run_main, scalars, sweep
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from lenet_exp.errors import UserError, user_error
from lenet_exp.resume import resume
from lenet_exp.runtime.lock import release
from lenet_exp.runtime.results import hyperparameters
from lenet_exp.train import train


def run(folder: Path, fake_data: Path, *overrides: str) -> dict:
    """Train in ``folder`` (2 epochs unless overridden) and return its metrics.json."""
    train(compose_config(folder, [*ONE_EPOCH, "trainer.max_epochs=2", f"data.data_dir={fake_data}", *overrides]))
    return json.loads((folder / "metrics.json").read_text())


def csv_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    ("choice", "loggers"),
    [
        ([], {"tensorboard"}),
        (["logger=csv"], {"csv"}),
        (["logger=mlflow"], {"mlflow"}),
        (["logger=none"], set()),
        (["logger=[tensorboard,csv,mlflow]"], {"tensorboard", "csv", "mlflow"}),
    ],
)
def test_the_logger_group_composes_any_set_of_loggers(tmp_path, choice, loggers):
    cfg = compose_config(tmp_path, choice)
    assert set(cfg.get("logger") or {}) == loggers
    if "mlflow" in loggers:
        assert cfg.logger.mlflow.experiment_name == "lenet_exp" and cfg.logger.mlflow.run_dir == str(tmp_path)


@pytest.mark.slow
def test_tensorboard_keeps_the_settings_in_hparams_yaml_and_the_summary_at_the_final_tests_step(two_epochs_run):
    """Lightning writes hparams.yaml once, at the end of fitting, before the run's settings are given: it held {}.
    The HParams summary metrics are the final test's, at its step (2 epochs: 2), not one point at step 0."""
    run, metrics = two_epochs_run
    settings = (event_dir(run) / "hparams.yaml").read_text()
    assert "model.optimizer.lr: 0.001" in settings and "data.batch_size: 16" in settings
    assert scalars(run, "test/acc")[-1] == (2, pytest.approx(metrics["test_acc"]))  # the final test
    assert scalars(run, "hparams/test_acc") == [(2, pytest.approx(metrics["test_acc"]))]
    assert [step for step, _ in scalars(run, "hparams/train_loss")] == [2]
    # every setting is a column of the HParams tab, one left empty too: TensorBoard takes the columns from one run
    events = EventAccumulator(str(event_dir(run)))
    events.Reload()
    content = events.SummaryMetadata("_hparams_/experiment").plugin_data.content
    columns = {info.name: info for info in hparams_metadata.parse_experiment_plugin_data(content).hparam_infos}
    assert {"model.ema_decay", "test_on", "steps_per_call", "seed", "model.optimizer.lr"} <= columns.keys()
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    values = hparams_metadata.parse_session_start_info_plugin_data(content).hparams
    assert values["model.ema_decay"].string_value == "None" and values["steps_per_call"].string_value == "auto"


@pytest.mark.slow
def test_csv_alone_writes_one_row_per_epoch(tmp_path, fake_data):
    metrics = run(tmp_path, fake_data, "logger=csv", "data.val_size=16")  # TestImages has no logger to draw for
    rows = csv_rows(tmp_path)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert list(rows[0]) == ["epoch", "train/acc", "train/loss", "val/acc", "val/loss"]  # no final test
    assert float(rows[-1]["train/loss"]) == pytest.approx(metrics["train_loss"])
    assert float(rows[-1]["val/acc"]) == pytest.approx(metrics["val_acc"])
    assert "model.optimizer.lr: 0.001" in (tmp_path / "csv" / "hparams.yaml").read_text()
    assert not (tmp_path / "tensorboard").exists()


@pytest.mark.slow
def test_csv_puts_lightnings_learning_rate_monitor_in_the_row_of_its_epoch(tmp_path, fake_data):
    """LearningRateMonitor logs by optimizer steps, not epochs: its value of epoch 1 went to a row of its own
    (the steps so far), which was never written, so only epoch 0's row had a learning rate."""
    monitor = "+callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor"
    run(tmp_path, fake_data, "logger=csv", monitor, "steps_per_call=1")  # a step per batch: steps are not epochs
    assert [(row["epoch"], row["lr-Adam"]) for row in csv_rows(tmp_path)] == [("0", "0.001"), ("1", "0.001")]
    # continued into a folder of its own (ckpt_path=): its first row is epoch 2's, with its learning rate
    more = tmp_path / "more"
    run(
        more,
        fake_data,
        "logger=csv",
        monitor,
        f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}",
        "trainer.max_epochs=3",
    )
    assert [(row["epoch"], row["lr-Adam"]) for row in csv_rows(more)] == [("2", "0.001")]


@pytest.mark.slow
def test_csv_of_a_continued_run_keeps_the_earlier_epochs(tmp_path, fake_data):
    run(tmp_path, fake_data, "logger=csv", "trainer.max_epochs=1")
    first = csv_rows(tmp_path)
    run(tmp_path, fake_data, "logger=csv", f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}")  # what resume does
    rows = csv_rows(tmp_path)
    assert [row["epoch"] for row in rows] == ["0", "1"] and rows[0] == first[0]


@pytest.mark.parametrize("damage", [bytes(range(256)), b"epoch,train/loss\nfirst,0.5\n"], ids=["bytes", "epoch"])
@pytest.mark.slow
def test_a_damaged_csv_log_is_one_sentence_when_its_run_is_resumed_and_is_left_as_it_was(tmp_path, fake_data, damage):
    """It was Hydra's InstantiationException around a UnicodeDecodeError (or int()'s ValueError)."""
    made = run_main("lenet_exp", *ONE_EPOCH, f"data.data_dir={fake_data}", "logger=csv", f"hydra.run.dir={tmp_path}")
    assert made.returncode == 0, made.stderr
    (tmp_path / "metrics.json").unlink()
    (tmp_path / "csv" / "metrics.csv").write_bytes(damage)
    out = run_main("lenet_exp.resume", str(tmp_path))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    said = f"error: {tmp_path / 'csv' / 'metrics.csv'} cannot be read as the run's CSV log ("
    assert said in out.stderr and "move it out of the folder and resume again" in out.stderr, out.stderr
    assert (tmp_path / "csv" / "metrics.csv").read_bytes() == damage


@pytest.mark.slow
def test_a_damaged_mlflow_store_is_one_sentence_and_a_new_one_goes_on_once_it_is_moved_away(tmp_path, fake_data):
    """It was Hydra's InstantiationException around SQLAlchemy's DatabaseError, about a hundred lines."""
    run_dir = tmp_path / "run"
    made = run_main("lenet_exp", *ONE_EPOCH, f"data.data_dir={fake_data}", "logger=mlflow", f"hydra.run.dir={run_dir}")
    assert made.returncode == 0, made.stderr
    (run_dir / "metrics.json").unlink()
    (run_dir / "mlflow" / "mlflow.db").write_bytes(b"not a database" * 400)
    out = run_main("lenet_exp.resume", str(run_dir))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    said = f"error: {run_dir / 'mlflow' / 'mlflow.db'} cannot be opened as an MLflow store (file is not a"
    assert said in out.stderr and f"move the folder {run_dir / 'mlflow'} out of the way" in out.stderr
    (run_dir / "mlflow").rename(tmp_path / "damaged")  # as the sentence says
    # (a process of its own: one that had the damaged file open keeps MLflow's engine on it, by its path)
    again = run_cli(str(run_dir), module="lenet_exp.resume", cwd=tmp_path)
    assert again.returncode == 0 and (run_dir / "metrics.json").is_file(), again.stderr


@pytest.mark.slow
def test_a_run_folder_whose_path_holds_a_dollar_keeps_its_tensorboard_events(tmp_path, fake_data, monkeypatch):
    """Lightning's TensorBoard logger expanded environment variables in its folder: the events of a run in
    ".../it's $HOME run" went to ".../it's /root run", outside the run folder."""
    monkeypatch.setenv("LENET_EXP_TEST_DOLLAR", "elsewhere")
    folder = tmp_path / "a $LENET_EXP_TEST_DOLLAR run"
    run(folder, fake_data, "trainer.max_epochs=1")
    assert list((folder / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (tmp_path / "a elsewhere run").exists()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a ~ in a folder the user names is theirs, as Lightning has it
    run(tmp_path / "tilde", fake_data, "trainer.max_epochs=1", "logger.tensorboard.save_dir='~/tb'")
    assert list((tmp_path / "home" / "tb").rglob("events.out.tfevents.*"))


def test_no_logger_still_writes_the_run_folder(tmp_path, fake_data):
    metrics = run(tmp_path, fake_data, "logger=none", "trainer.max_epochs=1")
    assert metrics["epochs"] == 1 and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "csv").exists()


@pytest.mark.slow
def test_tensorboard_writes_a_run_into_one_event_file_so_its_final_test_is_never_read_out_of_order(
    tmp_path, fake_data, monkeypatch
):
    """TensorBoard reads a run's event files in name order, and the names a process makes within one second
    differ only by a counter (``.9`` sorts after ``.10``). Bring the counter to such a step, as the fourth
    job of a sweep does, and the run's final test must still be its last point."""
    from tensorboard.summary.writer import event_file_writer
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    # Every file is named (and stamped) within the same second, as a fast run's files are.
    monkeypatch.setattr(event_file_writer, "time", SimpleNamespace(time=lambda: 1_800_000_000.0))
    scratch = tmp_path / "scratch"
    while True:  # each writer takes the next number, written at the end of its file's name
        EventFileWriter(str(scratch)).close()
        number = max(int(path.name.rsplit(".", 1)[1]) for path in scratch.iterdir())
        if set(str(number + 1)) == {"9"}:  # the run's files would have been ...9, ...10 (, ...11)
            break
    folder = tmp_path / "run"
    metrics = run(folder, fake_data)
    assert len(list((folder / "tensorboard").rglob("events.out.tfevents.*"))) == 1
    assert scalars(folder, "test/acc")[-1] == (2, pytest.approx(metrics["test_acc"]))  # after the 2 epochs


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_tensorboard_after_csv_still_gets_the_images(tmp_path, fake_data):
    run(tmp_path, fake_data, "logger=[csv,tensorboard]")
    assert len(csv_rows(tmp_path)) == 2 and len(scalars(tmp_path, "train/loss")) == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(event_dir(tmp_path)))
    events.Reload()
    assert {"test/confusion_matrix", "test/misclassified"} <= set(events.Tags()["images"])


def mlflow_runs(folder: Path) -> tuple[Any, list]:
    """MLflow's client on the store in ``folder`` (a run's or a sweep's), and its experiment ``lenet_exp``'s runs."""
    pytest.importorskip("mlflow", reason="logger=mlflow needs pip install 'lenet_exp[mlflow]' (make setup does)")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow' / 'mlflow.db'}")
    return client, client.search_runs([client.get_experiment_by_name("lenet_exp").experiment_id])


@pytest.mark.slow
def test_mlflow_run_reads_back_through_mlflows_client(tmp_path, fake_data):
    pytest.importorskip("mlflow", reason="logger=mlflow needs pip install 'lenet_exp[mlflow]' (make setup does)")
    overrides = ["logger=mlflow", "data.val_size=16"]
    metrics = run(tmp_path, fake_data, *overrides)
    client, (found,) = mlflow_runs(tmp_path)
    run_id, data = found.info.run_id, found.data
    assert found.info.status == "FINISHED" and data.tags["run_dir"] == str(tmp_path)
    cfg = compose_config(tmp_path, [*ONE_EPOCH, "trainer.max_epochs=2", f"data.data_dir={fake_data}", *overrides])
    assert data.params == {key: str(value) for key, value in hyperparameters(cfg).items()}

    history = {key: client.get_metric_history(run_id, key) for key in ("train/loss", "val/acc", "test/acc")}
    assert [m.step for m in history["train/loss"]] == [0, 1] and [m.step for m in history["val/acc"]] == [0, 1]
    assert history["train/loss"][-1].value == pytest.approx(metrics["train_loss"])
    assert [m.step for m in history["test/acc"]] == [2]  # the final test, after 2 epochs
    assert data.metrics["test_acc"] == metrics["test_acc"] and data.metrics["val_acc"] == metrics["val_acc"]

    assert {f.path for f in client.list_artifacts(run_id, "test")} == {
        "test/confusion_matrix.png",
        "test/misclassified.png",
    }
    matrix = Path(client.download_artifacts(run_id, "test/confusion_matrix.png", str(tmp_path / "download")))
    assert Image.open(matrix).size[0] > 100


@pytest.mark.slow
def test_mlflow_run_of_a_continued_run_goes_on(tmp_path, fake_data, caplog):
    pytest.importorskip("mlflow", reason="logger=mlflow needs pip install 'lenet_exp[mlflow]' (make setup does)")
    run(tmp_path, fake_data, "logger=mlflow", "trainer.max_epochs=1")
    run(tmp_path, fake_data, "logger=mlflow", f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}")  # as resume does
    client, (found,) = mlflow_runs(tmp_path)  # one run
    assert [m.step for m in client.get_metric_history(found.info.run_id, "train/loss")] == [0, 1]
    assert found.info.status == "FINISHED" and found.data.params["trainer.max_epochs"] == "1"
    assert "MLflow keeps the first values of trainer.max_epochs" in caplog.text


@pytest.mark.slow  # MLflow's import and a database: about 4 s
def test_a_moved_run_goes_on_in_its_mlflow_run_and_writes_its_pictures_in_its_folder(tmp_path, fake_data):
    """The run's own MLflow store named the folder it was made in: resumed after the folder was moved (or copied),
    the run wrote its pictures there (making that folder again) and began a second MLflow run beside the first."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    settings = [*ONE_EPOCH, f"data.data_dir={fake_data}", "logger=mlflow", f"hydra.run.dir={first}"]
    assert run_main("lenet_exp", *settings).returncode == 0
    (first / "metrics.json").unlink()  # as if killed in the final test
    shutil.move(first, moved)
    resumed = run_cli(str(moved), module="lenet_exp.resume")  # its own process (MLflow's client caches runs)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not first.exists()  # nothing written where the run was
    client, (found,) = mlflow_runs(moved)  # one MLflow run, this folder's
    assert found.data.tags["run_dir"] == str(moved) and found.info.status == "FINISHED"
    assert found.info.artifact_uri.startswith((moved / "mlflow").as_uri() + "/")
    assert {f.path for f in client.list_artifacts(found.info.run_id, "test")} == {
        "test/confusion_matrix.png",
        "test/misclassified.png",
    }
    assert [m.step for m in client.get_metric_history(found.info.run_id, "train/loss")] == [0]


@pytest.mark.slow  # MLflow's import and a database: about 4 s
def test_a_new_run_in_a_folder_used_before_gets_an_mlflow_run_of_its_own(tmp_path, fake_data, caplog):
    """A run folder removed and its path used again by a new run (a fixed hydra.run.dir): the new run was logged into
    the old run's MLflow run (its parameters kept, two points per epoch). The store outlives the folder here as a
    server's would."""
    pytest.importorskip("mlflow", reason="logger=mlflow needs pip install 'lenet_exp[mlflow]' (make setup does)")
    caplog.set_level(logging.INFO, logger="lenet_exp")
    folder, store = tmp_path / "run", tmp_path / "store"
    mine = ["logger=mlflow", f"logger.mlflow.save_dir={store / 'mlflow'}", "trainer.max_epochs=1"]
    run(folder, fake_data, *mine, "data.batch_size=16")
    shutil.rmtree(folder)
    run(folder, fake_data, *mine, "data.batch_size=32")
    client, runs = mlflow_runs(store)
    assert sorted(r.data.params["data.batch_size"] for r in runs) == ["16", "32"]  # two runs, each its own
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all([m.step for m in client.get_metric_history(r.info.run_id, "train/loss")] == [0] for r in runs)
    assert "this new run gets an MLflow run of its own" in caplog.text


@pytest.mark.slow  # MLflow's import and a database: about 4 s
def test_mlflow_on_a_database_of_the_users_keeps_the_artifacts_in_the_run_folder(tmp_path, fake_data, monkeypatch):
    """tracking_uri=sqlite:///...: MLflow put the images into ./mlruns of whatever folder the command ran in, and
    the run's last line gave the database's URI as a web page."""
    pytest.importorskip("mlflow", reason="logger=mlflow needs pip install 'lenet_exp[mlflow]' (make setup does)")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # the user's folder
    uri, run = f"sqlite:///{tmp_path / 'team.db'}", tmp_path / "run"
    args = [*ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.run.dir={run}", "logger=mlflow"]
    out = run_main("lenet_exp", *args, f"logger.mlflow.tracking_uri={uri}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (tmp_path / "mlruns").exists() and "MLflow run:" not in out.stdout + out.stderr
    assert "Creating initial MLflow database tables" not in out.stdout + out.stderr
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("lenet_exp").experiment_id])
    assert {f.path for f in client.list_artifacts(found.info.run_id, "test")} == {
        "test/confusion_matrix.png",
        "test/misclassified.png",
    }
    assert len(list((run / "mlflow" / "artifacts").rglob("*.png"))) == 2


def test_the_stores_mlflow_takes_without_a_server_pass_the_address_check_untouched():
    """Databricks (``databricks``, with no ``://``) and database URIs are MLflow's own: not refused as addresses
    of no server (test_mlflow_server.py refuses those against a real server)."""
    from lenet_exp.loggers import RunMLFlowLogger

    for uri in ("databricks", "databricks://profile", "sqlite:///team.db", "postgresql+psycopg://me@db/runs"):
        RunMLFlowLogger.check_reachable(uri)  # nothing contacted, nothing raised
    with pytest.raises(UserError, match=r"such as http://localhost:5000, or leave it null"):
        RunMLFlowLogger.check_reachable("localhost:5000")


def test_mlflow_without_mlflow_installed_is_one_clear_sentence(tmp_path, fake_data, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name, *a))
    with pytest.raises(Exception) as raised:
        run(tmp_path, fake_data, "logger=mlflow")
    assert isinstance(user_error(raised.value), UserError)
    assert "pip install 'lenet_exp[mlflow]'" in str(user_error(raised.value))
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_parallel_sweep_jobs_are_runs_of_one_mlflow_experiment_in_the_sweep_folder(tmp_path, fake_data):
    pytest.importorskip("mlflow", reason="logger=mlflow needs pip install 'lenet_exp[mlflow]' (make setup does)")
    args = ["logger=mlflow", "data.batch_size=16,32", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    out, folder = sweep(tmp_path, fake_data, *args, in_process=True)
    assert out.returncode == 0, out.stderr
    client, runs = mlflow_runs(folder)  # both jobs started together and created nothing twice
    by_folder = {run.data.tags["run_dir"]: run for run in runs}
    assert sorted(by_folder) == [str(folder / "0"), str(folder / "1")]
    for job, run in by_folder.items():
        assert run.info.status == "FINISHED"
        assert run.data.metrics["test_acc"] == json.loads((Path(job) / "metrics.json").read_text())["test_acc"]
    assert {run.data.params["data.batch_size"] for run in runs} == {"16", "32"}
    assert sorted("data.batch_size=16" in run.info.run_name for run in runs) == [False, True]
    assert not (folder / "0" / "mlflow").exists()

    (folder / "0" / "metrics.json").unlink()  # resuming a job goes on in its run of the sweep's store
    resumed = resume(folder / "0", given=[f"logger.mlflow.save_dir={folder / 'mlflow'}"])  # named: outside the job
    assert not (folder / "0" / "mlflow").exists()  # not a store of its own
    client, runs = mlflow_runs(folder)
    assert len(runs) == 2
    (again,) = [run for run in runs if run.data.tags["run_dir"] == str(folder / "0")]
    assert again.info.run_id == by_folder[str(folder / "0")].info.run_id
    assert again.data.metrics["test_acc"] == resumed["test_acc"]


@pytest.mark.slow
def test_a_stopped_sweep_job_names_its_sweeps_mlflow_store_in_its_resume_line_and_resumes_as_a_job(tmp_path, fake_data):
    """A job of a sweep keeps its MLflow run in the sweep's store, outside its own folder, which resume writes
    into only when the user names it: the interrupt's resume line names it, and the job goes on as a job of its
    sweep (its ${if_multirun:...} settings as when it ran: one MLflow run, no histograms)."""
    pytest.importorskip("mlflow", reason="logger=mlflow needs pip install 'lenet_exp[mlflow]' (make setup does)")
    mine = "test_trust.StopOnceAtEpoch"  # Ctrl-C as epoch 2 starts
    stop = [f"+callbacks.stop._target_={mine}", f"+callbacks.stop.marker={tmp_path / 'stopped'}"]
    args = ["logger=[tensorboard,mlflow]", "trainer.max_epochs=2", "seed=1", *stop]
    out, folder = sweep(tmp_path, fake_data, *args, in_process=True)  # the basic launcher: jobs in this process
    job, store = folder / "0", folder / "mlflow"
    assert out.returncode == 130, out.stderr[-3000:]
    line = f"resume with: python -m lenet_exp.resume {job} logger.mlflow.save_dir={store}"
    assert line in out.stdout + out.stderr
    release(job)  # as the stopped command's end would
    refused = run_main("lenet_exp.resume", str(job), f"trust={mine}")
    assert refused.returncode == 1 and f"names logger.mlflow.save_dir={store}, which writes into a folder outside" in (
        refused.stderr
    )
    resumed = run_main("lenet_exp.resume", str(job), f"trust={mine}", f"logger.mlflow.save_dir={store}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (job / "mlflow").exists()
    client, (found,) = mlflow_runs(folder)
    assert found.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(found.info.run_id, "train/loss")] == [0, 1]
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = sorted(event_dir(job).glob("events.out.tfevents.*"))
    values = [v for f in files for event in EventFileLoader(str(f)).Load() for v in event.summary.value]
    assert len(files) == 2 and any(v.tag == "train/loss" for v in values)  # the stopped process's and the resume's
    assert not [v.tag for v in values if v.metadata.plugin_data.plugin_name == "histograms" or v.HasField("histo")]


def test_a_run_without_naming_overrides_is_named_by_its_folders_date_and_time(tmp_path):
    from lenet_exp.loggers import RunTensorBoardLogger, readable_name

    assert compose_config(tmp_path, ["logger=[tensorboard,mlflow]"]).logger.tensorboard.version == ""  # no overrides
    assert readable_name("/home/me/outputs/2026-11-29/12-00-00") == "2026-11-29_12-00-00"
    assert readable_name("/home/me/outputs/multirun/2026-11-29/12-00-00/3") == "2026-11-29_12-00-00_3"
    assert readable_name("/home/me/experiments/first") == "first"  # hydra.run.dir of the user's choice
    folder = tmp_path / "outputs" / "2026-11-29" / "12-00-00"
    assert RunTensorBoardLogger(str(folder), version="").log_dir == str(folder / "tensorboard" / "2026-11-29_12-00-00")
    assert RunTensorBoardLogger(str(folder), version="seed=1").log_dir == str(folder / "tensorboard" / "seed=1")
    older = tmp_path / "older"  # a run that began with its events in tensorboard/ goes on there when resumed
    (older / "tensorboard").mkdir(parents=True)
    (older / "tensorboard" / "events.out.tfevents.1.host").touch()
    assert Path(RunTensorBoardLogger(str(older), version="").log_dir) == older / "tensorboard"


@pytest.mark.slow
def test_an_mlflow_run_without_naming_overrides_is_named_by_its_folder(tmp_path):
    pytest.importorskip("mlflow", reason="logger=mlflow needs pip install 'lenet_exp[mlflow]' (make setup does)")
    from hydra.utils import instantiate

    from lenet_exp.loggers import RunMLFlowLogger

    folder = tmp_path / "outputs" / "2026-11-29" / "12-00-00"
    # as an earlier run's stored config names it (logger.mlflow._target_), by the class's former name
    stored = {"_target_": "lenet_exp.loggers.LocalMLFlowLogger", "save_dir": str(folder / "mlflow")}
    logger = instantiate(stored, experiment_name="lenet_exp", run_dir=str(folder), run_name="")
    assert isinstance(logger, RunMLFlowLogger)
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.finalize("success")
    client, (found,) = mlflow_runs(folder)
    assert found.info.run_name == "2026-11-29_12-00-00"
    assert client.get_experiment_by_name("lenet_exp").tags["mlflow.experimentKind"] == "custom_model_development"


def test_a_job_named_by_long_overrides_gets_a_folder_name_the_file_system_takes(tmp_path):
    """A study's job is named by its overrides (sampled values with 17 digits among them), which can be longer
    than the 255 bytes a folder name may hold: clipped, with a hash of the whole so that two jobs differ."""
    from lenet_exp.loggers import RunTensorBoardLogger

    names = [",".join(f"model.key{i}=0.{i}12345678901234567" for i in range(12)) + f",seed={seed}" for seed in (1, 2)]
    assert len(names[0].encode()) > 255
    folders = []
    for name in names:
        logger = RunTensorBoardLogger(str(tmp_path), version=name)
        logger.log_metrics({"train/loss": 1.0}, step=0)
        logger.finalize("success")
        folders.append(Path(logger.log_dir))
    assert all(folder.is_dir() and len(folder.name.encode()) <= 255 for folder in folders)
    assert folders[0] != folders[1] and folders[0].name.startswith("model.key0=0.012345678901234567,")


def test_the_modules_values_are_logged_at_their_epoch_and_a_callbacks_per_step_values_at_their_step():
    """lenet_exp's loggers put an epoch's values (the module's, and what is logged with them) at the epoch, and
    what a callback of one's own logs at every step at Lightning's step, as without lenet_exp."""
    from lenet_exp.loggers import at_epoch

    assert at_epoch({"train/loss": 0.5, "mine": 1.0, "epoch": 2}, 470) == ({"train/loss": 0.5, "mine": 1.0}, 2)
    assert at_epoch({"mine/per_step": 1.0, "epoch": 2}, 470) == ({"mine/per_step": 1.0}, 470)
    assert at_epoch({"lr-Adam": 0.001}, 470) == ({"lr-Adam": 0.001}, 470)  # logged with its own step
