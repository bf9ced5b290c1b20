"""On a CUDA GPU (skipped without one): data resident on the device, bf16 with augmentation."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config

from lenet_exp.train import train


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_data_lives_there_and_bf16_with_augmentation_trains(tmp_path, fake_data, monkeypatch):
    from lenet_exp.data import FashionMNIST

    overrides = ["experiment=lenet_modern", "trainer=gpu", "trainer.precision=bf16-mixed", "trainer.max_epochs=1"]
    cfg = compose_config(tmp_path, [*overrides, "data.verify_md5=false", f"data.data_dir={fake_data}"])
    devices = []
    setup = FashionMNIST.setup

    def spy(self, stage=None):
        setup(self, stage)
        devices.append(self.splits["train"].images.device.type)

    monkeypatch.setattr(FashionMNIST, "setup", spy)
    assert 0.0 <= train(cfg)["test_acc"] <= 1.0
    assert devices and set(devices) == {"cuda"}
