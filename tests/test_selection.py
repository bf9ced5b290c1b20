"""Model selection (best.ckpt, test_on, early stopping) and dashboards that compare (epoch steps, HParams names)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import (
    ONE_EPOCH,
    ROOT,
    TIMING,
    compose_config,
    event_dir,
    first_of_each,
    load_checkpoint,
    run_cli,
    run_main,
    scalars,
)
from hydra.utils import instantiate
from pytorch_lightning import Callback, Trainer
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.model_summary import ModelSummary

from lenet_exp.callbacks import TerminalProgressBar
from lenet_exp.errors import UserError
from lenet_exp.eval import evaluate
from lenet_exp.runtime.checks import check_run
from lenet_exp.train import train

DOC = (ROOT / "docs" / "configuration.md").read_text()


class SigtermOnce(Callback):
    """Sends this process SIGTERM as epoch ``epoch`` (from 0) starts, once per ``marker`` file: a kill
    that a resumed run (which replays the same config) does not repeat."""

    def __init__(self, epoch: int, marker: str) -> None:
        self.epoch, self.marker = epoch, Path(marker)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGTERM)


def test_best_ckpt_holds_the_best_epoch_and_the_test_uses_it(validated_run):
    run, metrics = validated_run  # VALIDATED: 3 epochs, a validation split, model.optimizer.lr=0.02
    val_acc = scalars(run, "val/acc")
    assert [step for step, _ in val_acc] == [0, 1, 2]  # the epoch (from 0) is the step
    best = max(range(3), key=lambda i: val_acc[i][1])  # the first of equal maxima, as ModelCheckpoint keeps it
    assert metrics["best_epoch"] == best + 1 and metrics["tested"] == "best"
    checkpoint = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert checkpoint["epoch"] == best
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 2
    evaluated = evaluate(run / "checkpoints" / "best.ckpt", "cpu")
    assert evaluated["test_acc"] == pytest.approx(metrics["test_acc"])
    assert evaluated["test_loss"] == pytest.approx(metrics["test_loss"])


@pytest.mark.slow
def test_the_documented_top_3_command_keeps_three_best_checkpoints_named_by_epoch_from_1(tmp_path, fake_data):
    """The command line of docs/configuration.md, through a shell, quotes and all."""
    run = tmp_path / "run"
    command = (
        f"{sys.executable} -m lenet_exp {' '.join(ONE_EPOCH)} trainer.max_epochs=3 data.val_size=16 "
        f"data.data_dir={fake_data} hydra.run.dir={run} "
        "callbacks.best.save_top_k=3 \"callbacks.best.filename='best-{epoch}'\""
    )
    assert "callbacks.best.save_top_k=3 \"callbacks.best.filename='best-{epoch}'\"" in DOC
    out = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    saved = sorted(p.name for p in (run / "checkpoints").glob("best-*.ckpt"))
    assert saved == ["best-1.ckpt", "best-2.ckpt", "best-3.ckpt"]
    best_epoch = json.loads((run / "metrics.json").read_text())["best_epoch"]
    assert load_checkpoint(run / "checkpoints" / f"best-{best_epoch}.ckpt")["epoch"] == best_epoch - 1


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_the_book_protocol_tests_the_last_weights_and_writes_no_best_ckpt(two_epochs_run):
    run, metrics = two_epochs_run  # TWO_EPOCHS: no validation split
    assert metrics["tested"] == "last" and metrics["best_epoch"] is None
    assert not (run / "checkpoints" / "best.ckpt").exists() and (run / "checkpoints" / "last.ckpt").is_file()
    assert scalars(run, "test/acc")[-1] == (2, pytest.approx(metrics["test_acc"]))  # the final test, after 2 epochs


REFUSED = [  # (overrides, what the refusal says)
    (["test_on=best"], "test_on=best needs a validation split"),
    (["test_on=first", "data.val_size=16"], "test_on=first is not known"),
    (["callbacks.best.monitor=test/acc", "data.val_size=16"], "would choose by the test set"),
    (["callbacks=with_early_stopping", "callbacks.early_stopping.monitor=test/loss"], "by the test set"),
    (["callbacks=with_early_stopping"], "monitors val/acc, which needs a validation split"),
    # a name the module does not log: Lightning's traceback after the first epoch, with no checkpoint saved
    (
        ["callbacks=with_early_stopping", "data.val_size=16", "callbacks.early_stopping.monitor=val/accuracy"],
        r"^callbacks.early_stopping.monitor=val/accuracy is not a metric the model logs, so Lightning would stop "
        r"at the end of the first epoch; monitor val/acc \(the model logs val/acc, val/loss, train/acc",
    ),
    (["callbacks.best.monitor=val_loss", "data.val_size=16"], "monitor val/loss "),  # metrics.json's spelling
    # last.ckpt every 2 epochs: eval and resume took epoch 2's weights for epoch 3's, which the test had used
    (["+callbacks.checkpoint.every_n_epochs=2"], r"^callbacks.checkpoint.every_n_epochs=2: checkpoints/last.ckpt"),
    (["+callbacks.checkpoint.every_n_train_steps=100"], r"^callbacks.checkpoint.every_n_train_steps=100: "),
    # best.ckpt held the first epoch kept, best-v1.ckpt the next: evaluating best.ckpt took the worst of 3
    (
        ["callbacks.best.save_top_k=3", "data.val_size=16"],
        r"^callbacks.best.save_top_k=3 keeps several checkpoints under the one name best, which Lightning numbers "
        r"best-v1, best-v2 in the order they are saved, so best.ckpt would not be the best; give each its epoch: "
        r"\"callbacks.best.filename='best-\{epoch\}'\"\.$",
    ),
]


@pytest.mark.parametrize(("overrides", "says"), first_of_each(REFUSED))
def test_choosing_or_stopping_by_the_test_set_is_refused(tmp_path, overrides, says):
    with pytest.raises(UserError, match=says):
        check_run(compose_config(tmp_path, [*ONE_EPOCH, *overrides]))


@pytest.mark.parametrize(
    "overrides",
    [
        # the newest 3 by Lightning's own epoch count, a usual ModelCheckpoint of one's own
        ["+callbacks.keep={_target_: pytorch_lightning.callbacks.ModelCheckpoint, monitor: epoch, mode: max}"],
        ["callbacks=with_early_stopping", "data.val_size=16", "callbacks.early_stopping.monitor=val/f1"]
        + ["+callbacks.early_stopping.strict=false"],  # Lightning only warns
        ["callbacks.best.monitor=val/f1", "data.val_size=16", "+callbacks.f1._target_=my_metrics.F1"],  # logs it
    ],
    ids=["monitor epoch", "not strict", "a callback of ones own"],
)
def test_a_monitor_lightning_takes_is_not_refused(tmp_path, overrides):
    check_run(compose_config(tmp_path, [*ONE_EPOCH, *overrides]))


def test_a_stored_run_is_finished_as_it_ran(tmp_path):
    """lenet_exp.resume of a run made before these checks: its settings cannot be changed by resume, so the
    settings that a new run is refused for do not stop it."""
    stored = compose_config(tmp_path, [*ONE_EPOCH, "+callbacks.checkpoint.every_n_epochs=2"])
    check_run(stored, new=False)
    with pytest.raises(UserError, match="every_n_epochs=2: checkpoints/last.ckpt is the last epoch's state"):
        check_run(stored)


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_a_checkpoint_every_second_epoch_is_added_as_the_docs_write_it(tmp_path, fake_data):
    own = next(line for line in DOC.splitlines() if line.startswith("`'+callbacks.every_2="))
    cfg = compose_config(tmp_path, [*ONE_EPOCH, "trainer.max_epochs=3", f"data.data_dir={fake_data}", own[2:-2]])
    train(cfg)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch=1.ckpt", "last.ckpt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["epoch"] == 2  # the last of 3 epochs


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_early_stopping_stops_when_val_acc_stops_improving(tmp_path, fake_data):
    run = tmp_path / "run"
    overrides = ["callbacks=with_early_stopping", "callbacks.early_stopping.patience=1"]
    overrides += ["callbacks.early_stopping.min_delta=2.0"]  # no accuracy improves by 2: stop after epoch 2
    cfg = compose_config(run, [*ONE_EPOCH, "trainer.max_epochs=5", "data.val_size=16", *overrides])
    cfg.data.data_dir = str(fake_data)
    metrics = train(cfg)
    assert metrics["epochs"] == 2 < cfg.trainer.max_epochs
    assert [step for step, _ in scalars(run, "train/loss")] == [0, 1]


@pytest.mark.slow
def test_a_resumed_run_keeps_best_ckpt_and_early_stopping_exact(tmp_path, fake_data):
    """Killed after epoch 2 and resumed, a run with early stopping (patience 3: it stops after epoch 4, not 5,
    only if the resumed run remembers the epochs without improvement) ends as an uninterrupted one."""
    common = [*ONE_EPOCH, "trainer.max_epochs=6", "data.val_size=16", f"data.data_dir={fake_data}"]
    common += ["callbacks=with_early_stopping", "callbacks.early_stopping.min_delta=2.0", "logger=none"]
    # one optimizer step per call: SIGTERM is honoured after the current call, so with the default (16 steps
    # per call, this tiny epoch's 3 batches in one) epoch 3 would end before the kill is seen
    common += ["steps_per_call=1"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run_main("lenet_exp", *common, f"hydra.run.dir={full}").returncode == 0  # in this process
    kill = ["+callbacks.kill._target_=test_selection.SigtermOnce", "+callbacks.kill.epoch=2"]
    kill += [f"+callbacks.kill.marker={tmp_path / 'killed-once'}"]
    out = run_cli(*common, *kill, f"hydra.run.dir={killed}", env=env)
    assert out.returncode == 143, out.stdout + out.stderr
    assert load_checkpoint(killed / "checkpoints" / "last.ckpt", ["test_selection.SigtermOnce"])["epoch"] == 1
    # resumed in this process (test_faults.py resumes a killed run, and test_resume.py one with trust=, as the command)
    resumed = run_main("lenet_exp.resume", str(killed), "trust=test_selection.SigtermOnce")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    a, b = (json.loads((run / "metrics.json").read_text()) for run in (full, killed))
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    assert a["epochs"] == 4 and a["best_epoch"] is not None
    trusted = ["test_selection.SigtermOnce"]
    best_a = load_checkpoint(full / "checkpoints" / "best.ckpt")
    best_b = load_checkpoint(killed / "checkpoints" / "best.ckpt", trusted)
    assert best_a["epoch"] == best_b["epoch"] == a["best_epoch"] - 1
    assert all(torch.equal(best_a["state_dict"][k], best_b["state_dict"][k]) for k in best_a["state_dict"])


def test_tensorboard_has_epoch_steps_no_epoch_tag_and_readable_hparams(two_epochs_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = two_epochs_run  # TWO_EPOCHS
    events = EventAccumulator(str(event_dir(run)))
    events.Reload()
    assert "epoch" not in events.Tags()["scalars"]
    assert [step for step, _ in scalars(run, "train/acc")] == [0, 1]
    assert [step for step, _ in scalars(run, "test/acc")] == [0, 1, 2]  # per epoch, then the final test
    hparams = b"".join(events.PluginTagToContent("hparams").values())
    assert b"_target_" not in hparams
    for name in (b"model.net.activation", b"model.optimizer.lr", b"data.batch_size", b"trainer.max_epochs"):
        assert name in hparams
    assert b"model.optimizer" in hparams and b"Adam" in hparams


def test_the_progress_bar_shows_no_version_and_the_summary_shows_shapes_and_flops(tmp_path):
    module = instantiate(compose_config(tmp_path, ONE_EPOCH).model)
    bar = TerminalProgressBar()
    trainer = Trainer(logger=TensorBoardLogger(tmp_path, version="a=1,b=2"), callbacks=[bar], accelerator="cpu")
    module.trainer = trainer
    assert "v_num" not in bar.get_metrics(trainer, module)
    module.trainer = None
    summary = ModelSummary(module, max_depth=-1)
    assert summary.total_flops > 0 and "[1, 10]" in str(summary)


@pytest.mark.parametrize(
    ("launcher", "accelerator", "devices", "gpus", "job", "chosen"),
    [
        (
            {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 4},
            "gpu",
            1,
            2,
            3,
            [1],
        ),
        (
            {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1},
            "auto",
            1,
            4,
            2,
            [2],
        ),
        (
            {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 1},
            "gpu",
            1,
            2,
            3,
            1,
        ),
        (  # two DDP ranks per job: job 3 gets the second pair of four GPUs
            {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 4},
            "gpu",
            2,
            4,
            3,
            [2, 3],
        ),
        (  # eight GPUs, four pairs: job 2 gets GPUs 4 and 5
            {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 4},
            "gpu",
            2,
            8,
            2,
            [4, 5],
        ),
        (  # three GPUs cannot give two jobs two each: the jobs share them
            {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2},
            "gpu",
            2,
            3,
            1,
            2,
        ),
        (
            {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 4},
            "gpu",
            1,
            1,
            3,
            1,
        ),
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, "gpu", 1, 2, 3, 1),
    ],
)
def test_each_parallel_joblib_job_gets_its_own_gpu(
    tmp_path, monkeypatch, launcher, accelerator, devices, gpus, job, chosen
):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from lenet_exp.runtime.threads import job_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    hydra = OmegaConf.create({"launcher": launcher, "job": {"num": job}})
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: hydra))
    assert job_devices(accelerator, devices) == chosen
