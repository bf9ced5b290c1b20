"""Multirun sweeps: basic, joblib, submitit, Optuna, and a failing job among others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ONE_EPOCH, TINY, assert_complete, event_dir, run_cli, run_main, sweep, write_fake_fashion_mnist

import lenet_exp
from lenet_exp.errors import UserError

pytestmark = pytest.mark.slow  # every test here starts processes (sweeps, servers)


def test_basic_multirun_writes_one_complete_folder_per_job_named_by_its_overrides(tmp_path, fake_data):
    out, folder = sweep(tmp_path, fake_data, "model.net.activation=sigmoid,relu", in_process=True)
    assert out.returncode == 0, out.stdout + out.stderr
    for job, activation in (("0", "sigmoid"), ("1", "relu")):
        assert_complete(folder / job)
        assert f"model.net.activation={activation}" in event_dir(folder / job).name
        assert yaml.safe_load((folder / job / ".hydra" / "config.yaml").read_text())["model"]["net"]["activation"] == (
            activation
        )


def test_joblib_runs_jobs_in_parallel_with_their_share_of_the_cores_or_the_threads_set_per_job(tmp_path, fake_data):
    share = max(1, (os.cpu_count() or 1) // 2)
    # job 0 takes its share; job 1 sets threads itself, to a number no share here could be
    out, folder = sweep(
        tmp_path,
        fake_data,
        f"threads=null,{share + 1}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        in_process=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr
    metrics = [assert_complete(folder / job) for job in ("0", "1")]
    assert [m["threads"] for m in metrics] == [share, share + 1]
    # Hydra writes .hydra/config.yaml as a job starts and the job writes metrics.json as it ends: the two
    # jobs' lifetimes overlap (run one after the other, the second would start after the first ended).
    started = [(folder / job / ".hydra" / "config.yaml").stat().st_mtime for job in ("0", "1")]
    ended = [(folder / job / "metrics.json").stat().st_mtime for job in ("0", "1")]
    assert started[0] < ended[1] and started[1] < ended[0]


def test_submitit_local_runs_two_jobs(tmp_path, fake_data):
    out, folder = sweep(tmp_path, fake_data, "data.batch_size=16,32", "hydra/launcher=slurm_local", in_process=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Submitit 'local' sweep" in out.stdout + out.stderr
    for job in ("0", "1"):  # run at once, each on the CPUs the preset gives a task (it took every core)
        assert assert_complete(folder / job)["epochs"] == 1 and assert_complete(folder / job)["threads"] == 1
    assert (folder / ".submitit").is_dir()


def test_slurm_preset_carries_partition_gpus_time_and_memory():
    out = run_main(
        "lenet_exp",
        "hydra/launcher=slurm",
        "trainer=gpu",
        "trainer.devices=4",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=90",
        "hydra.launcher.mem_gb=32",
        "--cfg",
        "all",
        "-p",
        "hydra.launcher",
        "--resolve",
    )
    assert out.returncode == 0, out.stderr
    launcher = yaml.safe_load(out.stdout)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["tasks_per_node"]) == ("gpu", 4, 4)
    assert (launcher["timeout_min"], launcher["mem_gb"], launcher["nodes"]) == (90, 32, 1)


def test_optuna_study_maximizes_validation_accuracy_and_survives_a_failing_trial(tmp_path, fake_data):
    folder = tmp_path / "study"
    out = run_main(
        "lenet_exp",
        "hparams_search=lenet_optuna",
        *ONE_EPOCH,
        f"data.data_dir={fake_data}",
        "data.val_size=16",
        "hydra.sweeper.n_trials=4",
        f"hydra.sweep.dir={folder}",
        f"hydra.sweeper.storage=sqlite:///{tmp_path}/study.db",
        "model.net.activation=choice(relu,tanh)",  # tanh does not exist: those trials fail
    )
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


def test_a_failing_job_keeps_the_other_jobs_of_a_sweep(tmp_path, fake_data):
    sweep = tmp_path / "sweep"
    out = run_cli(
        "-m",
        *ONE_EPOCH[:2],
        "trainer.max_epochs=1",
        f"data.data_dir={fake_data}",
        "data.batch_size=0,16",
        f"hydra.sweep.dir={sweep}",
    )
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stderr
    assert "job 0 (" in out.stderr and "data.batch_size=0) failed: data.batch_size=0 must be a positive" in out.stderr
    # the sweep ends with the list of its failed jobs (then Hydra's own hint about HYDRA_FULL_ERROR)
    last = [line for line in out.stderr.splitlines() if line.strip()][-2]
    assert last.startswith("error: 1 of 2 jobs of the sweep failed (each folder keeps its error.txt): job 0 (")
    assert last.endswith(" data.batch_size=0): data.batch_size=0 must be a positive whole number, such as 256.")
    assert "must be a positive whole number" in (sweep / "0" / "error.txt").read_text()
    assert not (sweep / "0" / "metrics.json").exists()
    assert json.loads((sweep / "1" / "metrics.json").read_text())["epochs"] == 1
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file()


def test_a_study_that_would_optimize_the_test_set_is_refused_before_any_trial(tmp_path):
    # in this process (test_search.py answers a study's setting from a terminal, in the same form)
    out = run_main(
        "lenet_exp", "hparams_search=lenet_optuna", "optimized_metric=test_acc", f"hydra.sweep.dir={tmp_path / 'study'}"
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr and "No trials" not in out.stderr, out.stderr
    assert out.stderr.strip() == (
        "error: optimized_metric=test_acc would choose hyperparameters on the test set; use optimized_metric=val_acc "
        "with data.val_size > 0. Nothing was run."
    )
    assert not (tmp_path / "study").exists()


def test_an_interval_in_a_grid_sweep_says_where_it_belongs_before_any_job(tmp_path, fake_data):
    """interval() is a search space: Hydra's basic sweeper ends in its own traceback on it."""
    interval = "model.optimizer.lr=tag(log,interval(0.001,0.01))"
    args = ("-m", *ONE_EPOCH, f"data.data_dir={fake_data}", interval, f"hydra.sweep.dir={tmp_path / 'grid'}")
    out = run_main("lenet_exp", *args)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: {interval} draws values from an interval, which a grid sweep cannot: list the values to run "
        "(model.optimizer.lr=0.001,0.01) or give a range(), or search the interval in a study: "
        f"hparams_search=lenet_optuna '{interval}' (docs/search.md). Nothing was run."
    )
    assert not (tmp_path / "grid").exists()
    with pytest.raises(UserError, match=r"^model.optimizer.lr=tag\(log,interval\(0.001,0.01\)\) draws values"):
        lenet_exp.sweep(*args[1:])  # the Python API checks the same before Hydra starts
    assert not (tmp_path / "grid").exists()


def test_a_grid_of_no_job_an_interval_in_its_config_or_no_joblib_worker_is_one_sentence_before_any_job(
    tmp_path, fake_data
):
    """An interval() in hydra.sweeper.params (a grid written in a config file) and hydra.launcher.n_jobs=0 ended in
    Hydra's and joblib's tracebacks; seed='range(3,1)' ran no job and ended as if the sweep had succeeded; jobs
    whose hydra.sweep.subdir names them alike wrote one folder, each replacing the one before."""
    group = tmp_path / "conf" / "grid"
    group.mkdir(parents=True)
    (group / "lr.yaml").write_text("# @package hydra.sweeper\nparams:\n  model.optimizer.lr: interval(0.001,0.01)\n")
    cases = {
        "interval": (
            [f"--config-dir={tmp_path / 'conf'}", "+grid=lr"],
            "model.optimizer.lr=interval(0.001,0.01) draws",
        ),
        "empty": (["seed=range(3,1)"], "seed=range(3,1) holds no value (a range runs from its start up to, not"),
        "n_jobs": (["seed=1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0 runs no"),
        # jobs without .hydra/: they ran, and lenet_exp.sweep, the report and resume found none of them
        "no settings": (["seed=1,2", "hydra.output_subdir=null"], "hydra.output_subdir=null leaves a sweep's jobs"),
        # a config group's options by glob(): the grid's check of job folders raised, and every later check was skipped
        "glob": (
            ["model=glob(lenet*)", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"],
            "hydra.launcher.n_jobs=0 runs no",
        ),
        # jobs named alike: the second replaced the first's results without a word (threads is not in the name)
        "alike": (["threads=1,2", "hydra.sweep.subdir=${hydra:job.override_dirname}"], "jobs 0 and 1 of this sweep"),
        "fixed": (
            ["seed=1,2,3", "hydra.sweep.subdir=same"],
            "jobs 0 and 1 of this sweep would both write the folder same",
        ),
    }
    for name, (given, said) in cases.items():
        folder = tmp_path / name
        out = run_main("lenet_exp", "-m", *given, *ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.sweep.dir={folder}")
        assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stderr
        assert f"error: {said}" in out.stderr and out.stderr.rstrip().endswith("Nothing was run."), out.stderr
        assert not folder.exists()


def test_sigterm_to_a_joblib_sweep_stops_its_jobs_with_it_in_one_sentence(tmp_path):
    """SIGTERM to a joblib sweep's own process (a scheduler's or a user's kill of the command) ended it silently
    with 143, while its two workers, orphaned, went on training both jobs to their end; Ctrl-C there ended in
    joblib's traceback."""
    data, folder = tmp_path / "data", tmp_path / "sweep"
    write_fake_fashion_mnist(data, n_train=3000)  # long enough epochs to be signalled in
    args = [*TINY, f"data.data_dir={data}", "logger=none", "trainer.max_epochs=4", "threads=1", "seed=1,2"]
    args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={folder}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lenet_exp", "-m", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    workers = []
    try:
        deadline = time.monotonic() + 120
        while not (folder / "0" / "checkpoints" / "last.ckpt").is_file() and proc.poll() is None:
            assert time.monotonic() < deadline, "no epoch ended in 120 s"
            time.sleep(0.2)
        workers = [int(pid) for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        proc.send_signal(signal.SIGTERM)  # the command's own process only, as kill <pid> does
        output, _ = proc.communicate(timeout=60)
        deadline = time.monotonic() + 20
        while (left := [pid for pid in workers if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for pid in [proc.pid, *workers]:  # whatever is left, even when the test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert proc.returncode == 143 and "Traceback" not in output, output[-3000:]
    said = f"interrupted (SIGTERM): the sweep in {folder} stopped, and its running jobs with it, each keeping its"
    assert said in output, output[-3000:]
    assert workers and not left  # no orphan trains on
    assert not list(folder.glob("*/metrics.json"))


def test_ddp_jobs_run_in_parallel_joblib_jobs_each_in_its_own_folder(tmp_path, fake_data):
    """Two parallel joblib jobs of two DDP ranks each: each job's ranks are copies of that job (its own
    overrides, its own folder), not of the joblib worker, and both folders are complete."""
    out, folder = sweep(
        tmp_path,
        fake_data,
        "seed=1,2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "trainer=ddp_cpu",
        in_process=True,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1"]
    for job, seed in (("0", 1), ("1", 2)):
        metrics = assert_complete(folder / job)
        assert metrics["seed"] == seed and metrics["epochs"] == 1
        # rank 1 joined this job's run (its log beside rank 0's), a world of two
        assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (folder / job / "train_ddp_process_1.log").read_text()
