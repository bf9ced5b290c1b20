"""The LightningModule: the loss mean, the NaN stop, schedules over the whole run, compile + bf16."""

from __future__ import annotations

import pytest
import torch
from conftest import ONE_EPOCH, TINY, compose_config
from pytorch_lightning.callbacks import Callback

from lenet_exp.errors import UserError
from lenet_exp.runtime.checkpoints import load_checkpoint
from lenet_exp.train import train


class InfiniteLearningRateFromEpoch(Callback):
    """Makes the loss blow up from a given epoch on (1-based), as a too-large learning rate does."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = float("inf")


def test_a_nan_loss_stops_the_run_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, fake_data):
    cfg = compose_config(
        tmp_path,
        [
            *ONE_EPOCH,
            "trainer.max_epochs=3",
            f"data.data_dir={fake_data}",
            "+callbacks.blow_up._target_=test_classifier.InfiniteLearningRateFromEpoch",
            "+callbacks.blow_up.epoch=2",
        ],
    )
    with pytest.raises(UserError, match=r"NaN or infinite in epoch 2 at step 2, .* lower the learning rate"):
        train(cfg)
    kept = load_checkpoint(
        tmp_path / "checkpoints" / "last.ckpt", trusted=["test_classifier.InfiniteLearningRateFromEpoch"]
    )
    assert kept["epoch"] == 0  # the index of the last good epoch (the first), not of the broken one
    assert all(torch.isfinite(t).all() for t in kept["state_dict"].values() if t.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()


def test_the_loss_mean_weights_each_batch_by_its_size_and_shows_a_nan():
    from lenet_exp.classifier import WeightedMean

    mean = WeightedMean()
    mean.update(torch.tensor(1.0), 3)
    mean.update(torch.tensor(2.0), 1)
    assert mean.compute() == pytest.approx(1.25)
    mean.update(torch.tensor(float("nan")), 2)
    assert torch.isnan(mean.compute())


def test_the_one_cycle_schedule_spans_the_whole_run(tmp_path, fake_data):
    cfg = compose_config(
        tmp_path, ["experiment=lenet_modern", *TINY, "trainer.max_epochs=2", f"data.data_dir={fake_data}"]
    )
    train(cfg)
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    (schedule,) = checkpoint["lr_schedulers"]
    assert schedule["total_steps"] == 2 * 4  # 64 images / 16 per batch, two epochs
    assert schedule["last_epoch"] == 8  # stepped after every optimizer step: the cycle is complete


@pytest.mark.slow
def test_compiled_bf16_training_keeps_plain_checkpoints(tmp_path, fake_data):
    cfg = compose_config(
        tmp_path,
        [
            *TINY,
            "trainer.max_epochs=1",
            f"data.data_dir={fake_data}",
            "model.compile=true",
            "trainer.precision=bf16-mixed",
        ],
    )
    assert 0.0 <= train(cfg)["test_acc"] <= 1.0
    keys = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"].keys()
    assert "net.features.0.weight" in keys and not any("_orig_mod" in k for k in keys)
