"""logger=mlflow on a real `mlflow server` (logger.mlflow.tracking_uri): a parallel sweep's runs, params, metrics
and artifacts read back through the server, a resumed job going on in its run, and an unreachable server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ONE_EPOCH, free_port, run_cli, sweep
from servers import mlflow_server  # noqa: F401 (a fixture)

from lenet_exp.resume import resume

pytestmark = pytest.mark.slow

MLFLOW_FILES = {"mlflow", "mlruns", "mlflow.db", "mlflow.lock", "mlartifacts"}  # what a local store would write


def test_a_parallel_sweep_logs_runs_and_images_to_the_server(tmp_path, fake_data, mlflow_server):  # noqa: F811
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = mlflow_server.uri
    args = ["logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "data.batch_size=16,32"]
    out, folder = sweep(tmp_path, fake_data, *args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert not [path for path in folder.rglob("*") if path.name in MLFLOW_FILES]

    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]  # both jobs made one
    assert experiment.name == "lenet_exp" and experiment.artifact_location.startswith("mlflow-artifacts:")
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
    out = run_cli(*ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.run.dir={folder}", "logger=mlflow",
                  f"logger.mlflow.tracking_uri={uri}", "logger.mlflow.experiment_name=resumed")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("resumed")
    (first,) = client.search_runs([experiment.experiment_id])
    (folder / "metrics.json").unlink()
    resumed = resume(folder, given=[f"logger.mlflow.tracking_uri={uri}"])
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == first.info.run_id and again.data.tags["run_dir"] == str(folder)
    assert again.info.status == "FINISHED" and again.data.metrics["test_acc"] == resumed["test_acc"]
    assert not [path for path in folder.rglob("*") if path.name in MLFLOW_FILES]


def test_an_unreachable_server_is_one_sentence_before_training(tmp_path, fake_data):
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    run = tmp_path / "run"
    out = run_cli(*ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.run.dir={run}", "logger=mlflow",
                  f"logger.mlflow.tracking_uri={uri}", timeout=120)  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: logger.mlflow.tracking_uri={uri} cannot be reached (")
    assert line.endswith("or check the address.")
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists() and not (run / "mlflow").exists()
