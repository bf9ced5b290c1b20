"""logger=mlflow on a real `mlflow server` (logger.mlflow.tracking_uri): a parallel sweep's runs, params, metrics
and artifacts read back through the server, a resumed job going on in its run, an unreachable server, and a server
that goes away in the middle of a run and comes back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import ONE_EPOCH, TINY, free_port, run_cli, run_main, sweep
from servers import answers_health, mlflow_server, running_mlflow_server  # noqa: F401 (a fixture)

import lenet_exp
from lenet_exp.loggers import UNSENT, send_unsent
from lenet_exp.resume import resume
from lenet_exp.runtime.run_folder import resume_hint

pytestmark = pytest.mark.slow

MLFLOW_FILES = {"mlflow", "mlruns", "mlflow.db", "mlflow.lock", "mlartifacts"}  # what a local store would write


def test_a_parallel_sweep_logs_runs_and_images_to_the_server(tmp_path, fake_data, mlflow_server):  # noqa: F811
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = mlflow_server.uri
    args = ["logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "data.batch_size=16,32"]
    out, folder = sweep(tmp_path, fake_data, *args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", in_process=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not [path for path in folder.rglob("*") if path.name in MLFLOW_FILES]

    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]  # both jobs made one
    assert experiment.name == "lenet_exp" and experiment.artifact_location.startswith("mlflow-artifacts:")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow 3's model-training view
    with pytest.raises(MlflowException) as twice:  # what the job that lost the race to create it is answered
        client.create_experiment("lenet_exp")
    assert twice.value.error_code == "RESOURCE_ALREADY_EXISTS"
    runs = client.search_runs([experiment.experiment_id])
    by_folder = {run.data.tags["run_dir"]: run for run in runs}
    assert sorted(by_folder) == [str(folder / "0"), str(folder / "1")]
    assert {run.data.params["data.batch_size"] for run in runs} == {"16", "32"}
    assert all(run.data.params["model.optimizer.lr"] == "0.001" for run in runs)
    assert all(run.data.params["trainer.max_epochs"] == "1" for run in runs)
    for job, run in by_folder.items():
        metrics = json.loads((Path(job) / "metrics.json").read_text())
        run_id = run.info.run_id
        # each job's last line links its page in the UI's model-training view (MLflow 3.17 ignores the kind there)
        page = f"MLflow run: {uri}/#/experiments/{experiment.experiment_id}/runs/{run_id}?workflowType=machine_learning"
        assert page in (Path(job) / "lenet_exp.log").read_text()
        assert run.info.status == "FINISHED" and run.data.metrics["test_acc"] == metrics["test_acc"]
        losses = client.get_metric_history(run_id, "train/loss")
        assert [m.step for m in losses] == [0] and losses[-1].value == pytest.approx(metrics["train_loss"])
        assert [m.step for m in client.get_metric_history(run_id, "test/acc")] == [0, 1]  # epoch 0, then the final test
        images = {"test/confusion_matrix.png", "test/misclassified.png"}
        assert {f.path for f in client.list_artifacts(run_id, "test")} == images  # listed through the server
        stored = {p.relative_to(mlflow_server.artifacts).as_posix() for p in mlflow_server.artifacts.rglob("*.png")}
        assert {f"{experiment.experiment_id}/{run_id}/artifacts/{image}" for image in images} <= stored


def test_a_resumed_run_goes_on_in_its_run_on_the_server(tmp_path, fake_data, mlflow_server):  # noqa: F811
    from mlflow.tracking import MlflowClient

    uri, folder = mlflow_server.uri, tmp_path / "run"
    # in this process: the sweep above runs the command as users do
    lenet_exp.run(
        *ONE_EPOCH,
        f"data.data_dir={fake_data}",
        f"hydra.run.dir={folder}",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={uri}",
        "logger.mlflow.experiment_name=resumed",
    )
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("resumed")
    (first,) = client.search_runs([experiment.experiment_id])
    (folder / "metrics.json").unlink()
    # the resume line an interrupt would have printed names the server, which resume uses only when named
    assert resume_hint(folder) == f"resume with: python -m lenet_exp.resume {folder} logger.mlflow.tracking_uri={uri}"
    resumed = resume(folder, given=[f"logger.mlflow.tracking_uri={uri}"])
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == first.info.run_id and again.data.tags["run_dir"] == str(folder)
    assert again.info.status == "FINISHED" and again.data.metrics["test_acc"] == resumed["test_acc"]
    assert not [path for path in folder.rglob("*") if path.name in MLFLOW_FILES]


def test_a_runs_own_store_opens_in_the_full_packages_server(tmp_path, fake_data):
    """docs/trackers.md's `mlflow ui --backend-store-uri sqlite:///<run>/mlflow/mlflow.db`, with the full package
    that make setup keeps in a venv of its own: the store lenet_exp's client wrote opens (a client newer than the
    server writes a schema the server refuses to open), and the server shows the run with its metrics."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path / "run"
    done = lenet_exp.run(*ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.run.dir={folder}", "logger=mlflow")
    with running_mlflow_server(folder / "mlflow") as server:
        client = MlflowClient(server.uri)
        (found,) = client.search_runs([client.get_experiment_by_name("lenet_exp").experiment_id])
        assert found.info.status == "FINISHED" and found.data.tags["run_dir"] == str(folder)
        assert found.data.metrics["test_acc"] == done.metrics["test_acc"]


@pytest.mark.parametrize("wrong", ["no scheme", "a typo of one", "a path the server does not serve"])
def test_an_address_that_is_no_servers_is_one_sentence_before_training(
    tmp_path,
    fake_data,
    mlflow_server,  # noqa: F811
    wrong,
):
    """Addresses typed wrong around a real server: each is refused as such before training (MLflow's client took
    the first two for a file store, the third for a server that stopped answering, and the run went on)."""
    host = mlflow_server.uri.partition("://")[2]
    no_server = "is not an MLflow server's address; give one as http://HOST:PORT (or https://)"
    uri, said = {
        "no scheme": (host, f"{no_server}, such as http://{host},"),
        "a typo of one": (f"htp://{host}", no_server),
        "a path the server does not serve": (f"{mlflow_server.uri}/mlflow", "answers, but not as an MLflow server"),
    }[wrong]
    run, logger = tmp_path / "run", ["logger=mlflow", f"logger.mlflow.tracking_uri={uri}"]
    out = run_main("lenet_exp", *ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.run.dir={run}", *logger)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: logger.mlflow.tracking_uri={uri} {said}"), line
    assert not (run / "checkpoints").exists() and not (run / "mlflow").exists()


def test_an_unreachable_server_is_one_sentence_before_training(tmp_path, fake_data):
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    run = tmp_path / "run"
    out = run_cli(
        *ONE_EPOCH,
        f"data.data_dir={fake_data}",
        f"hydra.run.dir={run}",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={uri}",
        timeout=120,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: logger.mlflow.tracking_uri={uri} cannot be reached (")
    assert line.endswith("or check the address.")
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists() and not (run / "mlflow").exists()


def test_a_server_that_goes_away_mid_run_leaves_a_finished_run_and_what_it_was_not_sent(tmp_path, fake_data):
    """The server stops as epoch 2 starts: the run goes on to its metrics.json and exit 0, says so in one line, and
    keeps epochs 2 and 3, the final test, the images and the run's end in mlflow_unsent.jsonl; with the server back
    (same store), send_unsent sends them, and the run reads as if nothing had happened."""
    from mlflow.tracking import MlflowClient

    store, run = tmp_path / "server", tmp_path / "run"
    store.mkdir()
    with running_mlflow_server(store) as server:
        uri, port = server.uri, int(server.uri.rpartition(":")[2])
        stop = {"_target_": "servers.StopServerAt", "pid": server.pid, "port": port, "epoch": 2}
        started = time.monotonic()
        stopping = [f"+callbacks.stop.{key}={value}" for key, value in stop.items()]
        args = [*TINY, "trainer.max_epochs=3", f"data.data_dir={fake_data}", f"hydra.run.dir={run}", "logger=mlflow"]
        # in this process (run_main, which finds servers.StopServerAt as pytest does): the sweep above runs its
        # logger=mlflow jobs as processes, and test_an_unreachable_server_is_one_sentence_before_training runs
        # logger=mlflow from a terminal
        out = run_main("lenet_exp", *args, f"logger.mlflow.tracking_uri={uri}", *stopping)
        seconds = time.monotonic() - started
        assert not answers_health(uri)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "Retrying" not in out.stdout + out.stderr  # urllib3's lines of each retry: the failure is said once
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and len(metrics["epoch_seconds"]) == 3
    (line,) = [line for line in out.stdout.splitlines() if "MLflow" in line]
    assert line == (
        f"MLflow server {uri} stopped answering at epoch 2 (Connection refused); training goes on, and what it was "
        f"not sent is kept in {run / UNSENT} (to send it later: python -m lenet_exp.loggers {run} {uri})"
    )
    # MLflow's own retries (7, backoff factor 2) would hold epoch 2 for about 4 minutes; lenet_exp's take seconds.
    assert seconds < 60, seconds

    calls = [json.loads(line) for line in (run / UNSENT).read_text().splitlines()]
    assert calls[0]["call"] == "run" and calls[0]["run_id"] and calls[0]["tags"]["run_dir"] == str(run)
    logged = [call for call in calls if call["call"] == "log_metrics"]
    assert [call["step"] for call in logged if "train/loss" in call["metrics"]] == [1, 2]  # epochs 2 and 3
    assert {call["step"] for call in logged} == {1, 2, 3}  # and the final test, at step 3
    assert [call["metrics"]["test_acc"] for call in logged if "test_acc" in call["metrics"]] == [metrics["test_acc"]]
    images = {call["artifact_file"] for call in calls if call["call"] == "log_image"}
    assert images == {"test/confusion_matrix.png", "test/misclassified.png"}
    assert any(call["call"] == "log_params" for call in calls)
    assert calls[-1] == {"call": "set_terminated", "status": "FINISHED"}

    with running_mlflow_server(store, port) as server:  # back, on its store: epoch 1 is there, the rest is sent
        assert send_unsent(run, uri) == len(calls) - 1  # what `python -m lenet_exp.loggers RUN URI` calls
        assert not (run / UNSENT).exists() and (run / "mlflow_unsent.sent.jsonl").is_file()
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("lenet_exp")
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        (found,) = client.search_runs([experiment.experiment_id])
        run_id = found.info.run_id
        assert run_id == calls[0]["run_id"] and found.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [0, 1, 2]
        assert [m.step for m in client.get_metric_history(run_id, "test/acc")] == [0, 1, 2, 3]
        assert found.data.metrics["test_acc"] == metrics["test_acc"]
        assert found.data.params["trainer.max_epochs"] == "3"
        assert {f.path for f in client.list_artifacts(run_id, "test")} == images


def test_sending_from_a_run_that_kept_nothing_is_one_sentence(tmp_path):
    out = run_cli(str(tmp_path), f"http://127.0.0.1:{free_port()}", module="lenet_exp.loggers", timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip() == (
        f"error: {tmp_path / UNSENT} does not exist: the run kept nothing unsent "
        "(give the run folder its warning named)."
    )


def test_a_servers_error_status_is_named_as_mlflows_client_reports_it():
    """MLflow's client reports a status it got either after requests' retries or from its own check of the
    answer, depending on the call; each is the status, not the first 200 characters of the message."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RetryError

    from lenet_exp.loggers import server_error_reason

    retried = RetryError("Max retries exceeded with url: /x (Caused by ResponseError('too many 503 error responses'))")
    try:
        raise MlflowException(f"API request to http://h/api/2.0/mlflow/runs/create failed with exception {retried}")
    except MlflowException as err:
        assert server_error_reason(err) == "it answered HTTP 503"
    checked = "API request to endpoint /api/2.0/mlflow/runs/create failed with error code 500 != 200. Response body: ''"
    assert server_error_reason(MlflowException(checked)) == "it answered HTTP 500"


@pytest.mark.slow  # MLflow's import and a short run: about 5 s
def test_a_server_that_answers_errors_is_said_to_answer_them(tmp_path, fake_data):
    """A server that answers HTTP 500 to every call (a broken MLflow, a proxy in front of a dead one): the warning
    named a cut-off "HTTPConnectionPool(host=..." as the reason and said the server stopped answering."""
    import http.server
    import threading

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_error(500, "broken")

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri, run = f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "run"
    try:
        args = [*ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.run.dir={run}", "logger=mlflow"]
        out = run_main("lenet_exp", *args, f"logger.mlflow.tracking_uri={uri}")
    finally:
        server.shutdown()
        server.server_close()
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    (line,) = [line for line in out.stdout.splitlines() if "MLflow" in line]
    assert line.startswith(
        f"MLflow server {uri} failed before the first epoch (it answered HTTP 500); training goes on"
    )
    assert (run / UNSENT).is_file() and (run / "metrics.json").is_file()
