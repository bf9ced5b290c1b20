"""Sweeps on a real SLURM cluster (tests/servers.py starts munged, slurmctld and slurmd on this machine):
jobs submitted through real sbatch, DDP tasks under srun, a failing job, and a requeued job that continues
in its folder."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TIMING, write_fake_fashion_mnist
from servers import slurm  # noqa: F401 (a fixture)

from lenet_exp.api import run as run_here

pytestmark = pytest.mark.slow
COMPARED = ("train_loss", "train_acc", "test_loss", "test_acc", "epochs", "seed")


def lenet_exp(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lenet_exp", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def empty_queue(cluster, wait_s: float = 30) -> bool:
    """The launcher returns once the results exist; the jobs may still be completing for a moment."""
    deadline = time.monotonic() + wait_s
    while cluster.queue() and time.monotonic() < deadline:
        time.sleep(0.5)
    return not cluster.queue()


def test_the_cpu_ddp_sweep_runs_through_sbatch_as_written_and_equals_the_same_runs_without_slurm(tmp_path, request):
    cluster = request.getfixturevalue("slurm")
    # docs/clusters.md's command, on the synthetic files: the real ones add six decodes of 70,000 images, no check
    write_fake_fashion_mnist(tmp_path / "data", n_train=128)
    command = "-m hydra/launcher=slurm hydra.launcher.partition=debug trainer=ddp_cpu trainer.devices=2 debug=limit"
    command += f" data.data_dir={tmp_path / 'data'} data.verify_md5=false data.batch_size=16 trainer.max_epochs=1"
    command += " seed=1,2"
    # the same job without SLURM (compared below), meanwhile: Lightning starts rank 1 itself
    with (tmp_path / "local.log").open("w") as log:  # a file, not a pipe nobody reads while the sweep runs
        local = subprocess.Popen(
            [sys.executable, "-m", "lenet_exp", *command.split()[3:-1], "seed=1", f"hydra.run.dir={tmp_path}/local"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        out = lenet_exp(*command.split(), f"hydra.sweep.dir={tmp_path / 'slurm'}", env=cluster.env)
        local.wait(timeout=600)
    finally:
        if local.poll() is None:
            local.kill()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    for job, seed in (("0", 1), ("1", 2)):
        folder = tmp_path / "slurm" / job
        assert metrics(folder)["seed"] == seed and metrics(folder)["epochs"] == 1
        assert (folder / "checkpoints" / "last.ckpt").is_file()
    # each job's two DDP ranks were SLURM tasks: submitit keeps a result per task, and task 1 joined as rank 1
    arrays = sorted(p for p in (tmp_path / "slurm" / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    assert len(arrays) == 2
    for tasks in arrays:
        job = tasks.name
        assert (tasks / f"{job}_0_result.pkl").is_file() and (tasks / f"{job}_1_result.pkl").is_file()
        assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (tasks / f"{job}_1_log.out").read_text()
    assert empty_queue(cluster)
    # the same job without SLURM: the reduced metrics are the same
    assert local.returncode == 0, (tmp_path / "local.log").read_text()[-3000:]
    on_slurm, here = metrics(tmp_path / "slurm" / "0"), metrics(tmp_path / "local")
    assert {k: on_slurm[k] for k in COMPARED} == {k: here[k] for k in COMPARED}
    assert on_slurm.get("val_acc") == here.get("val_acc")
    saved = [
        torch.load(p / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for p in (tmp_path / "slurm" / "0", tmp_path / "local")
    ]
    assert all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])


def test_a_failing_slurm_job_leaves_its_error_and_the_sweep_exits_non_zero(tmp_path, fake_data, request):
    cluster = request.getfixturevalue("slurm")
    sweep = tmp_path / "sweep"
    out = lenet_exp(
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=debug",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "data.verify_md5=false",
        f"data.data_dir={fake_data}",
        "data.batch_size=0,16",
        f"hydra.sweep.dir={sweep}",
        env=cluster.env,
    )
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "data.batch_size=0 must be a positive whole number" in (sweep / "0" / "error.txt").read_text()
    assert metrics(sweep / "1")["epochs"] == 1
    assert "error: 1 of 2 jobs of the sweep failed" in out.stderr, out.stderr[-3000:]
    assert empty_queue(cluster)


def test_a_sweep_sbatch_refuses_is_one_sentence_and_its_corrected_command_runs(tmp_path, fake_data, request):
    """sbatch refuses a partition the cluster lacks at once: the sweep ends with its reason in one sentence (it was
    submitit's traceback), and the same command with the partition corrected runs into the same folder."""
    cluster = request.getfixturevalue("slurm")
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=slurm", "trainer=cpu", "trainer.max_epochs=1", "data.verify_md5=false"]
    args += [f"data.data_dir={fake_data}", "data.batch_size=16", f"hydra.sweep.dir={sweep}"]
    out = lenet_exp(*args, "hydra.launcher.partition=nope", env=cluster.env)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    said = [line for line in out.stderr.splitlines() if line.startswith("error: ")]  # below sbatch's own lines
    assert said == [
        "error: sbatch refused the sweep's jobs (sbatch: error: invalid partition specified: nope); nothing was "
        "submitted. Change the hydra.launcher.* setting it names (sinfo lists the partitions and their limits), or "
        "run where SLURM is set up, and start the sweep again."
    ], out.stderr[-3000:]
    again = lenet_exp(*args, "hydra.launcher.partition=debug", env=cluster.env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert metrics(sweep / "0")["epochs"] == 1
    assert empty_queue(cluster)


# How SLURM stops a job that runs again: requeued (by an admin, or a preemption that requeues), or signalled
# USR2 as it is signal_delay_s before its time limit (what `--signal=USR2@120` sends; submitit then requeues
# the job itself).
STOPS = {
    "scontrol requeue": ["scontrol", "requeue"],
    "signal before the time limit": ["scancel", "--signal=USR2"],
}


@pytest.fixture(scope="module")
def requeued_run(tmp_path_factory) -> tuple[list[str], dict]:
    """The overrides of the job both kinds of stop requeue, and metrics.json of the same run uninterrupted
    (trained once, in this process: lenet_exp.run writes what `python -m lenet_exp` would)."""
    images = tmp_path_factory.mktemp("data")
    write_fake_fashion_mnist(images, n_train=3000, n_test=64)  # epochs of a few seconds, to requeue in one
    run = [
        "trainer=cpu",
        "trainer.max_epochs=3",
        "data.verify_md5=false",
        f"data.data_dir={images}",
        "data.batch_size=16",
        "threads=1",
        "steps_per_call=1",  # one optimizer step per Lightning step: the epochs stay long enough to requeue in
    ]
    alone = run_here(*run, f"hydra.run.dir={tmp_path_factory.mktemp('alone') / 'run'}")
    return run, alone.metrics


@pytest.mark.parametrize("stop", STOPS)
def test_a_requeued_job_continues_in_its_folder_and_ends_equal_to_an_uninterrupted_run(
    stop, tmp_path, request, requeued_run
):
    cluster = request.getfixturevalue("slurm")
    run, reference = requeued_run
    sweep = tmp_path / "sweep"
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lenet_exp",
            "-m",
            "hydra/launcher=slurm",
            "hydra.launcher.partition=debug",
            *run,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=ROOT,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        last = sweep / "0" / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 180
        while not last.is_file() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.2)
        assert last.is_file(), "the job never finished its first epoch"
        (job_id,) = cluster.queue()
        cluster.run(*STOPS[stop], job_id)  # the job stops and SLURM runs its batch script again
        output, _ = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, output[-3000:]
    restarts = cluster.run("scontrol", "show", "job", job_id).stdout
    assert "Restarts=1" in restarts, restarts
    folder = sweep / "0"
    log = (folder / "lenet_exp.log").read_text()
    assert "SLURM runs this job again (restart 1): continuing" in log, log[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0"]  # no second folder
    done = metrics(folder)
    assert done["epochs"] == 3
    assert {k: v for k, v in done.items() if k not in TIMING and k != "environment"} == {
        k: v for k, v in reference.items() if k not in TIMING and k != "environment"
    }
    assert empty_queue(cluster)
