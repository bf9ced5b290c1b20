"""On a CUDA GPU (skipped without one): data resident on the device, no host syncs between
training steps, bf16 with augmentation, and a CUDA-graph (reduce-overhead) compile."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config, write_fake_fashion_mnist
from pytorch_lightning.callbacks import Callback

from lenet_exp.train import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
GPU = ["trainer=gpu", "data.verify_md5=false", "data.batch_size=64"]


class NoHostSyncs(Callback):
    """CUDA's sync debug mode set to "error" from the second training step to the second-to-last:
    any operation in between that waits for the GPU (fetching and indexing a batch, the step,
    the metric updates, Lightning's own loop) raises."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 1:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == trainer.num_training_batches - 2:
            torch.cuda.set_sync_debug_mode("default")

    def on_exception(self, trainer, pl_module, exception) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.fixture
def gpu_data(tmp_path):
    folder = tmp_path / "data"
    write_fake_fashion_mnist(folder, n_train=2048, n_test=512)  # 32 training steps of 64
    return folder


@pytest.mark.parametrize("experiment", ["d2l_lenet", "lenet_modern"])
def test_training_steps_never_wait_for_the_gpu(tmp_path, gpu_data, experiment):
    cfg = compose_config(
        tmp_path,
        [
            *GPU,
            "trainer.max_epochs=1",
            f"experiment={experiment}",
            f"data.data_dir={gpu_data}",
            "+callbacks.no_syncs._target_=test_gpu.NoHostSyncs",
        ],
    )
    try:
        metrics = train(cfg)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert metrics["epochs"] == 1 and metrics["environment"]["device"] == "cuda"


def test_on_a_gpu_the_data_lives_there_and_bf16_with_augmentation_trains(tmp_path, gpu_data, monkeypatch):
    from lenet_exp.data import FashionMNIST

    overrides = ["experiment=lenet_modern", "trainer.precision=bf16-mixed", "trainer.max_epochs=2"]
    cfg = compose_config(tmp_path, [*GPU, *overrides, f"data.data_dir={gpu_data}"])
    devices = []
    setup = FashionMNIST.setup

    def spy(self, stage=None):
        setup(self, stage)
        devices.append(self.splits["train"].images.device.type)

    monkeypatch.setattr(FashionMNIST, "setup", spy)
    assert train(cfg)["test_acc"] > 0.5  # 0.70 on the CPU in 2 epochs
    assert devices and set(devices) == {"cuda"}


def test_cuda_graphs_through_reduce_overhead_train_to_the_same_accuracy_band(tmp_path, gpu_data):
    plain = train(compose_config(tmp_path / "plain", [*GPU, f"data.data_dir={gpu_data}", "trainer.max_epochs=3"]))
    graphs = compose_config(
        tmp_path / "graphs",
        [*GPU, f"data.data_dir={gpu_data}", "trainer.max_epochs=3", "model.compile=reduce-overhead"],
    )
    assert abs(train(graphs)["test_acc"] - plain["test_acc"]) < 0.1
