"""DDP under Hydra on CPU (two processes over gloo): one folder per run, disjoint shards, exact metrics."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import run_cli, run_main, write_fake_fashion_mnist

from lenet_exp.data import find_files, load_split

TINY = ["trainer=ddp_cpu", "data.verify_md5=false", "data.batch_size=8"]


def ddp_env() -> dict[str, str]:
    # Rank 1 is a second `python -m lenet_exp` that Lightning starts; it must import the spy too.
    return {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}


@pytest.mark.slow
def test_two_process_run_writes_one_folder_shards_each_epoch_keeps_its_threads_and_reduces_metrics(tmp_path, fake_data):
    """threads=2: Lightning's DDP gives each rank cores / ranks threads (1 here) unless OMP_NUM_THREADS says
    otherwise; the threads a user gives are kept."""
    write_fake_fashion_mnist(fake_data, n_test=33)  # odd: a padded split would count an image twice
    run, spy = tmp_path / "run", tmp_path / "spy"
    spy_overrides = ["+callbacks.spy._target_=ddp_spy.ShardSpy", f"+callbacks.spy.folder={spy}"]
    out = run_cli(
        *TINY,
        f"data.data_dir={fake_data}",
        "trainer.max_epochs=2",
        "threads=2",
        f"hydra.run.dir={run}",
        *spy_overrides,
        env=ddp_env(),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run", "spy"]  # no folder per rank
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 logged into the same folder
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]

    images, _ = load_split(find_files(fake_data), "train", verify_md5=False)
    everything = sorted(hashlib.md5(image.numpy().tobytes()).hexdigest() for image in images)
    orders = {}
    for epoch in (0, 1):
        shards = [json.loads((spy / f"rank{rank}_epoch{epoch}.json").read_text()) for rank in (0, 1)]
        assert len(shards[0]) == len(shards[1]) == 32  # half of the 64 images each
        assert not set(shards[0]) & set(shards[1])  # disjoint
        assert sorted(shards[0] + shards[1]) == everything  # together: the whole training set
        orders[epoch] = shards[0]
    assert orders[0] != orders[1]  # a new shuffle every epoch

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["threads"] == 2
    ckpt = run / "checkpoints" / "last.ckpt"
    # in this process (test_checkpoints.py and others run python -m lenet_exp.eval in one of its own)
    evaluated = run_main("lenet_exp.eval", f"ckpt_path={ckpt}", "accelerator=cpu", "trust=ddp_spy.ShardSpy")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    single = json.loads((run / "evaluations.jsonl").read_text().splitlines()[-1])
    assert single["test_acc"] == metrics["test_acc"] and single["test_loss"] == pytest.approx(metrics["test_loss"])


@pytest.mark.slow
def test_multirun_with_ddp_gives_each_job_its_folder_and_does_not_hang(tmp_path, fake_data):
    sweep = tmp_path / "sweep"
    out = run_cli(
        "-m",
        *TINY,
        f"data.data_dir={fake_data}",
        "trainer.max_epochs=1",
        "data.batch_size=8,16",
        f"hydra.sweep.dir={sweep}",
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(p.name for p in sweep.iterdir()) == [".lock", "0", "1", "multirun.yaml"]  # .lock: the sweep's
    for job, batch in (("0", 8), ("1", 16)):
        assert json.loads((sweep / job / "metrics.json").read_text())["epochs"] == 1
        assert (sweep / job / "train_ddp_process_1.log").is_file()
        assert f"data.batch_size={batch}" in (sweep / job / ".hydra" / "overrides.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "sweep"]
