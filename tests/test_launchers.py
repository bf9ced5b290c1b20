"""DDP started by the other launchers: torchrun (one node with two ranks, and two "nodes" on this machine) and
Lightning's ddp_spawn. Each writes one run folder, rank 0's, however far apart torchrun's nodes start, and trains
to the same result as trainer=ddp_cpu, whose run the tests share."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TIMING, epoch_lines, free_port, load_checkpoint, scalars, write_fake_fashion_mnist

from lenet_exp.runtime.run_folder import best_checkpoint, last_checkpoint

pytestmark = pytest.mark.slow
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # what the torchrun command runs


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_fake_fashion_mnist(folder, n_train=256, n_test=64)
    return folder


def args(data_dir: Path, *more: str) -> list[str]:
    """Two epochs with a validation split (so best.ckpt is kept and tested). threads=1: one torch thread in every
    rank, however many cores the machine has (each of torchrun's "nodes" here sees all of them), since another
    thread count sums in another order."""
    return ["trainer=ddp_cpu", "data.verify_md5=false", "data.batch_size=16", f"data.data_dir={data_dir}"] + [
        "trainer.max_epochs=2",
        "data.val_size=16",
        "threads=1",
        "logger=tensorboard",
        *more,
    ]


def start(command: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """``command`` in the background, its output in ``log``, and the temporary folder beside ``log`` (the test's own:
    torchrun leaves a torchelastic_* folder in it, which pytest then removes with the test's other old folders)."""
    env = {**os.environ, "TMPDIR": str(log.parent)}
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def finish(proc: subprocess.Popen, log: Path) -> None:
    try:
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()[-3000:]


def run_folders(cwd: Path) -> list[Path]:
    """The run folders Hydra made under ``cwd``/outputs (named by the clock: outputs/<date>/<time>)."""
    return sorted(path for path in (cwd / "outputs").glob("*/*") if path.is_dir())


def same(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {key: value for key, value in metrics.items() if key not in (*TIMING, "environment", "threads")}


def assert_equal_runs(a: Path, b: Path) -> None:
    assert same(a) == same(b)
    wa, wb = (load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"] for run in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # bit-identical on the CPU


@pytest.fixture(scope="module")
def ddp_cpu(data_dir, tmp_path_factory) -> Path:
    """The same run as Lightning starts it: trainer=ddp_cpu, two ranks."""
    run = tmp_path_factory.mktemp("ddp_cpu") / "run"
    log = run.parent / "run.log"
    finish(start([sys.executable, "-m", "lenet_exp", *args(data_dir), f"hydra.run.dir={run}"], ROOT, log), log)
    return run


def test_torchrun_on_one_node_writes_one_run_folder_equal_to_ddp_cpu(tmp_path, data_dir, ddp_cpu):
    log = tmp_path / "torchrun.log"
    finish(start([*TORCHRUN, "--nproc-per-node=2", "-m", "lenet_exp", *args(data_dir)], tmp_path, log), log)
    (run,) = run_folders(tmp_path)
    output = log.read_text()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output  # two ranks, each on its shard
    assert f"run folder {run}" in output
    assert_equal_runs(run, ddp_cpu)
    assert len(list((run / "tensorboard").rglob("events.out.tfevents.*"))) == 1  # rank 0 logs, once


def test_two_torchrun_nodes_started_seconds_apart_write_rank_0s_folder(tmp_path, data_dir, ddp_cpu):
    """Node 1 starts 2.5 s after node 0, so its clock names another second: it must still join rank 0's folder."""
    port = free_port()
    node = [*TORCHRUN, "--nnodes=2", "--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}"]
    more = ["trainer.devices=1", "trainer.num_nodes=2"]
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    cwds = [tmp_path / "node0", tmp_path / "node1"]  # each node's own working folder, as on two machines
    for cwd in cwds:
        cwd.mkdir()
    first = start([*node, "--node-rank=0", "-m", "lenet_exp", *args(data_dir, *more)], cwds[0], logs[0])
    try:
        time.sleep(2.5)
        second = start([*node, "--node-rank=1", "-m", "lenet_exp", *args(data_dir, *more)], cwds[1], logs[1])
        finish(second, logs[1])
    finally:
        finish(first, logs[0])
    (run,) = run_folders(cwds[0])
    assert run_folders(cwds[1]) == []  # node 1 wrote rank 0's folder, not one of its own
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1].read_text()
    assert_equal_runs(run, ddp_cpu)


def test_ddp_spawn_writes_the_run_that_ddp_writes(tmp_path, data_dir, ddp_cpu):
    """Lightning runs ddp_spawn's fit and test in processes it spawns; what lenet_exp records comes back from
    rank 0. The processes train bit-identically to trainer=ddp_cpu's (the same seeded start, shards and
    gloo reductions): the same metrics.json but for the timings, the same checkpoints, curves and epoch lines."""
    spawn, log = tmp_path / "spawn", tmp_path / "spawn.log"
    command = [
        sys.executable,
        "-m",
        "lenet_exp",
        *args(data_dir, "trainer.strategy=ddp_spawn"),
        f"hydra.run.dir={spawn}",
    ]
    finish(start(command, tmp_path, log), log)
    output = log.read_text()
    metrics, expected = (json.loads((run / "metrics.json").read_text()) for run in (spawn, ddp_cpu))
    assert "Traceback" not in output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["spawn", "spawn.log"]  # no temporary folder left
    assert {k: v for k, v in metrics.items() if k not in TIMING} == {
        k: v for k, v in expected.items() if k not in TIMING
    }
    assert metrics["epochs"] == 2 and metrics["tested"] == "best" and metrics["best_epoch"] in (1, 2)
    assert len(metrics["epoch_seconds"]) == 2 and metrics["first_step_at"] > 0
    assert metrics["seconds_per_epoch"] == pytest.approx(sum(metrics["epoch_seconds"]) / 2)

    def untimed(text: str) -> list[str]:
        return [re.sub(r", time .*", "", line) for line in epoch_lines(text)]

    assert untimed(output) == untimed((ddp_cpu.parent / "run.log").read_text()) and len(epoch_lines(output)) == 2
    assert output.count("test acc") == 1 and f"run folder {spawn}" in output  # the final line, once
    for file in (last_checkpoint, best_checkpoint):
        a, b = load_checkpoint(file(spawn)), load_checkpoint(file(ddp_cpu))
        assert a["epoch"] == b["epoch"] and all(
            torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]
        )
    assert load_checkpoint(best_checkpoint(spawn))["epoch"] + 1 == metrics["best_epoch"]
    for tag in ("train/loss", "val/acc", "test/acc"):  # the epoch axis; the final test at the epochs trained
        assert scalars(spawn, tag) == scalars(ddp_cpu, tag)
    assert [step for step, _ in scalars(spawn, "test/acc")] == [2]
    log_file = (spawn / "lenet_exp.log").read_text()  # the spawned ranks' lines, in the run's own log file
    assert len(epoch_lines(re.sub(r"^\[[^]]*\]\[lenet_exp\]\[INFO\] ", "", log_file, flags=re.MULTILINE))) == 2


def test_a_rank_that_cannot_reach_torchruns_store_is_one_sentence(monkeypatch):
    from lenet_exp.errors import UserError
    from lenet_exp.runtime import distributed

    port = free_port()  # nothing listens there
    env = {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1"}
    for key, value in {**env, "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(distributed, "TORCHRUN_WAIT", 2)
    with pytest.raises(UserError) as raised:
        distributed.torchrun_run_dir("outputs/x")
    sentence = str(raised.value)
    assert sentence.startswith(f"rank 1 could not learn rank 0's run folder from torchrun's store at 127.0.0.1:{port}")
    assert "\n" not in sentence and sentence.endswith("give every node the same hydra.run.dir=<folder>.")
    monkeypatch.setenv("WORLD_SIZE", "1")  # one rank: nothing to agree on
    assert distributed.torchrun_run_dir("outputs/x") == "outputs/x"
