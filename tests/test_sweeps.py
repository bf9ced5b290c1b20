"""Multirun sweeps (basic, joblib, submitit, Optuna), the sweep report, and TensorBoard's view of runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, compose_config, event_dir, run_cli, scalars

from lenet_exp.report import write_report
from lenet_exp.train import train

TINY = ["trainer=cpu", "trainer.max_epochs=1", "data.verify_md5=false", "data.batch_size=16"]


def sweep(tmp_path: Path, fake_data: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    folder = tmp_path / "sweep"
    out = run_cli("-m", *TINY, f"data.data_dir={fake_data}", f"hydra.sweep.dir={folder}", *args)
    return out, folder


def assert_complete(job: Path) -> dict:
    assert (job / "checkpoints" / "last.ckpt").is_file()
    assert (job / ".hydra" / "config.yaml").is_file()
    assert scalars(job, "train/loss")
    return json.loads((job / "metrics.json").read_text())


def test_basic_multirun_writes_one_complete_folder_per_job_named_by_its_overrides(tmp_path, fake_data):
    out, folder = sweep(tmp_path, fake_data, "model.net.activation=sigmoid,relu")
    assert out.returncode == 0, out.stdout + out.stderr
    for job, activation in (("0", "sigmoid"), ("1", "relu")):
        assert_complete(folder / job)
        assert f"model.net.activation={activation}" in event_dir(folder / job).name
        assert yaml.safe_load((folder / job / ".hydra" / "config.yaml").read_text())["model"]["net"]["activation"] == (
            activation
        )


def test_joblib_runs_jobs_in_parallel_with_their_share_of_the_cores(tmp_path, fake_data):
    out, folder = sweep(
        tmp_path, fake_data, "data.batch_size=16,32", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr
    share = max(1, (os.cpu_count() or 1) // 2)
    metrics = [assert_complete(folder / job) for job in ("0", "1")]
    assert [m["threads"] for m in metrics] == [share, share]
    # Hydra writes .hydra/config.yaml as a job starts and the job writes metrics.json as it ends: the two
    # jobs' lifetimes overlap (run one after the other, the second would start after the first ended).
    started = [(folder / job / ".hydra" / "config.yaml").stat().st_mtime for job in ("0", "1")]
    ended = [(folder / job / "metrics.json").stat().st_mtime for job in ("0", "1")]
    assert started[0] < ended[1] and started[1] < ended[0]


def test_threads_can_be_set_per_job(tmp_path, fake_data):
    out, folder = sweep(tmp_path, fake_data, "threads=1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert assert_complete(folder / "0")["threads"] == 1


def test_submitit_local_runs_two_jobs(tmp_path, fake_data):
    out, folder = sweep(tmp_path, fake_data, "data.batch_size=16,32", "hydra/launcher=slurm_local")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Submitit 'local' sweep" in out.stdout + out.stderr
    for job in ("0", "1"):
        assert assert_complete(folder / job)["epochs"] == 1
    assert (folder / ".submitit").is_dir()


def test_slurm_preset_carries_partition_gpus_time_and_memory():
    out = run_cli("hydra/launcher=slurm", "trainer=gpu", "trainer.devices=4", "hydra.launcher.partition=gpu",
                  "hydra.launcher.timeout_min=90", "hydra.launcher.mem_gb=32", "--cfg", "all", "-p", "hydra.launcher",
                  "--resolve")  # fmt: skip
    assert out.returncode == 0, out.stderr
    launcher = yaml.safe_load(out.stdout)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["tasks_per_node"]) == ("gpu", 4, 4)
    assert (launcher["timeout_min"], launcher["mem_gb"], launcher["nodes"]) == (90, 32, 1)


def test_optuna_study_maximizes_validation_accuracy_and_survives_a_failing_trial(tmp_path, fake_data):
    folder = tmp_path / "study"
    out = run_cli(
        "hparams_search=lenet_optuna", *TINY, f"data.data_dir={fake_data}", "data.val_size=16",
        "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={folder}", f"hydra.sweeper.storage=sqlite:///{tmp_path}/study.db",
        "model.net.activation=choice(relu,tanh)",  # tanh does not exist: those trials fail
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = sorted(p for p in folder.iterdir() if p.name.isdigit())
    assert len(jobs) == 4
    failed = [j for j in jobs if (j / "error.txt").is_file()]
    finished = {j: json.loads((j / "metrics.json").read_text()) for j in jobs if (j / "metrics.json").is_file()}
    assert failed and finished, "the seeded sampler should propose both activations"
    assert all("model.net.activation='tanh' is not known" in (j / "error.txt").read_text() for j in failed)
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(m["val_acc"] for m in finished.values()))
    assert results["best_params"]["model.net.activation"] == "relu"
    assert "Best parameters" in out.stdout + out.stderr
    import optuna  # the study was stored in the database too, trial by trial

    study = optuna.load_study(study_name="lenet", storage=f"sqlite:///{tmp_path}/study.db")
    assert [t.state.name for t in study.trials].count("FAIL") == len(failed) and len(study.trials) == 4


def test_report_lists_every_job_including_the_failed_one(tmp_path, fake_data):
    out, folder = sweep(tmp_path, fake_data, "data.batch_size=0,16", "trainer.max_epochs=2")
    assert out.returncode != 0  # one job failed; the other one ran
    printed = run_cli(str(folder), module="lenet_exp.report")
    assert printed.returncode == 0, printed.stderr
    rows = write_report(folder)
    assert [r["job"] for r in rows] == ["0", "1"]
    assert rows[0]["status"].startswith("failed: data.batch_size=0 must be a positive whole number")
    assert rows[1]["status"] == "ok" and rows[1]["test_acc"] is not None and len(rows[1]["curve"]) == 2
    csv_text = (folder / "summary.csv").read_text()
    assert csv_text.splitlines()[0] == "job,overrides,test_acc,val_acc,train_loss,seconds_per_epoch,status"
    assert "failed: data.batch_size=0" in csv_text and "failed: data.batch_size=0" in printed.stdout
    assert "| 1 | " in (folder / "summary.md").read_text() and "| 1 | " in printed.stdout
    png = (folder / "summary.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_report_refuses_a_folder_that_is_not_a_sweep(tmp_path):
    out = run_cli(str(tmp_path), module="lenet_exp.report")
    assert out.returncode == 1 and "holds no job folders" in out.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"X-XSRF-Protected": "1", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as response:
        return json.loads(response.read())


def test_a_real_tensorboard_server_shows_the_scalars_hparams_and_images_of_a_run(tmp_path, fake_data):
    run = tmp_path / "run"
    metrics = train(
        compose_config(run, [*TINY, "trainer.max_epochs=2", "data.val_size=16", f"data.data_dir={fake_data}"])
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                runs = get(f"{base}/data/runs")
                if runs:
                    break
            except OSError:
                pass
            assert time.time() < deadline and server.poll() is None, "TensorBoard did not start"
            time.sleep(0.5)
        (name,) = runs
        assert name == f"tensorboard/{event_dir(run).name}"
        query = urllib.parse.urlencode({"run": name, "tag": "train/loss"})
        points = get(f"{base}/data/plugin/scalars/scalars?{query}")
        assert [value for _, _, value in points] == pytest.approx([v for _, v in scalars(run, "train/loss")])
        assert len(points) == 2
        experiment = get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        hparams = {h["name"] for h in experiment["hparamInfos"]}
        assert {"model.optimizer.lr", "data.batch_size", "model.net.activation", "seed"} <= hparams
        metric_tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert metric_tags == {"hparams/test_acc", "hparams/val_acc", "hparams/train_loss"}
        groups = get(
            f"{base}/data/plugin/hparams/session_groups",
            {"experimentName": "", "startIndex": 0, "sliceSize": 10, "colParams": [],
             "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]},
        )["sessionGroups"]  # fmt: skip
        values = {m["name"]["tag"]: m["value"] for m in groups[0]["metricValues"]}
        assert values["hparams/val_acc"] == pytest.approx(metrics["val_acc"])
        assert values["hparams/test_acc"] == pytest.approx(metrics["test_acc"])
        images = get(f"{base}/data/plugin/images/tags")[name]
        assert {"test/confusion_matrix", "test/misclassified"} <= images.keys()
    finally:
        server.terminate()
        server.wait(timeout=30)
