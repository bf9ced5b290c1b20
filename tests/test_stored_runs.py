"""A run folder written by an earlier lenet_exp still evaluates, loads, predicts and resumes.

tests/data/run_f701b51 was written by commit f701b51 (``trainer=cpu data.verify_md5=false data.batch_size=16
trainer.max_epochs=2 steps_per_call=16 model.ema_decay=0.9`` on the synthetic files of conftest's
write_fake_fashion_mnist): its checkpoint holds the many-steps path's state and the EMA weights. Its data_dir,
/tmp/oldrun/data, is gone, so each command is given the user's own, as on another machine.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import counted_over, load_checkpoint, run_main, scalars

import lenet_exp
from lenet_exp.data import CLASSES

STORED = Path(__file__).resolve().parent / "data" / "run_f701b51"
STEPS_PER_EPOCH = 64 // 16  # its training images / its batch size


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "run_f701b51"
    shutil.copytree(STORED, run)
    return run


@pytest.mark.slow
def test_a_run_folder_of_commit_f701b51_evaluates_loads_predicts_and_resumes(old_run, fake_data):
    ckpt = old_run / "checkpoints" / "last.ckpt"
    stored = load_checkpoint(ckpt)
    assert stored["lenet_exp_git_rev"].startswith("f701b51") and stored["global_step"] == 2 * STEPS_PER_EPOCH

    # eval and resume through their main in this process (test_errors.py and test_packaging.py run them as commands)
    out = run_main("lenet_exp.eval", f"ckpt_path={ckpt}", "accelerator=cpu", f"data.data_dir={fake_data}")
    assert out.returncode == 0, out.stdout + out.stderr
    (evaluation,) = (json.loads(line) for line in (old_run / "evaluations.jsonl").read_text().splitlines())
    assert evaluation["epochs"] == 2 and evaluation["images"] == 32 and counted_over(evaluation["test_acc"], 32)

    model = lenet_exp.load(ckpt)
    weights = model.module.state_dict()
    assert weights.keys() == stored["state_dict"].keys()  # the network's and the EMA's, all of them
    assert all(torch.equal(weights[key], stored["state_dict"][key]) for key in weights)
    predictions = model.predict(torch.rand(5, 28, 28))
    assert len(predictions.classes) == 5 and set(predictions.classes) <= set(CLASSES)
    assert torch.allclose(predictions.probabilities.sum(dim=1), torch.ones(5))

    # As if it had been started for 3 epochs and stopped after 2: resume trains the third in place.
    (old_run / "metrics.json").unlink()
    config = yaml.safe_load((old_run / ".hydra" / "config.yaml").read_text())
    config["trainer"]["max_epochs"] = 3
    (old_run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    resumed = run_main("lenet_exp.resume", str(old_run), f"data.data_dir={fake_data}")
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output
    assert "epoch 3, loss" in output and "epoch 2, loss" not in output
    metrics = json.loads((old_run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and counted_over(metrics["test_acc"], 32)
    last = load_checkpoint(ckpt)
    assert last["epoch"] == 2 and last["global_step"] == 3 * STEPS_PER_EPOCH
    assert last["lenet_exp_config"]["model"]["ema_decay"] == 0.9 and last["lenet_exp_config"]["steps_per_call"] == 16
    # the stored copy keeps no event files: the resumed epoch's point continues the steps (epoch indices) at 2
    assert [step for step, _ in scalars(old_run, "train/loss")] == [2]
