"""On a CUDA GPU (skipped without one): data resident on the device, no host syncs between
training steps (one step per call, and a whole epoch per call as CUDA graphs), the CUDA-graph step
equal to the eager one, bf16 with augmentation, and a CUDA-graph (reduce-overhead) compile."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config, load_checkpoint, scalars, write_fake_fashion_mnist
from pytorch_lightning.callbacks import Callback

from lenet_exp.errors import UserError
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


class NoHostSyncsInCalls(NoHostSyncs):
    """With many steps per call: the sync debug mode "error" inside every call of the second epoch (the
    first warms up and captures the graph), the replayed steps and the short last batch's eager one."""

    batch_hooks_per_call = True  # a batch here is a call (lenet_exp.many_steps.BATCH_HOOKS)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 1:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.fixture
def gpu_data(tmp_path):
    folder = tmp_path / "data"
    write_fake_fashion_mnist(folder, n_train=2048 + 40, n_test=512)  # 32 training steps of 64 and one of 40
    return folder


@pytest.mark.parametrize("experiment", ["d2l_lenet", "lenet_modern"])
def test_training_steps_never_wait_for_the_gpu(tmp_path, gpu_data, experiment):
    cfg = compose_config(
        tmp_path,
        [
            *GPU,
            "trainer.max_epochs=1",
            "steps_per_call=1",
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


@pytest.mark.parametrize("experiment", ["d2l_lenet", "lenet_modern"])
def test_a_whole_epoch_of_cuda_graph_steps_never_waits_for_the_gpu(tmp_path, gpu_data, experiment):
    """steps_per_call=epoch on CUDA: a whole epoch per Lightning step, every optimizer step a replayed graph."""
    options = [
        *GPU,
        "trainer.max_epochs=2",
        f"experiment={experiment}",
        f"data.data_dir={gpu_data}",
        "steps_per_call=epoch",
    ]
    cfg = compose_config(tmp_path, [*options, "+callbacks.no_syncs._target_=test_gpu.NoHostSyncsInCalls"])
    try:
        metrics = train(cfg)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert metrics["epochs"] == 2 and metrics["environment"]["device"] == "cuda"
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 2 * 33


@pytest.mark.parametrize("experiment", ["d2l_lenet", "lenet_modern"])
def test_the_cuda_graph_step_trains_what_the_eager_step_trains(tmp_path, gpu_data, experiment):
    """The same optimizer steps with and without the graph: equal up to the GPU's rounding (cuDNN's
    kernels are not deterministic; the graph holds the learning rate and betas in float32), schedules and
    augmentation included; checkpoints stay plain numbers. lenet_modern's BatchNorm net amplifies a
    rounding difference (on the CPU a 1e-7 change of the learning rate moves its weights by 1e-2 in 26
    steps), so its weights are compared through the loss and accuracy only."""
    options = [*GPU, "trainer.max_epochs=2", f"experiment={experiment}", f"data.data_dir={gpu_data}"]
    graph = train(compose_config(tmp_path / "graph", [*options, "steps_per_call=epoch"]))
    eager = train(compose_config(tmp_path / "eager", [*options, "steps_per_call=1"]))
    first, second = (load_checkpoint(tmp_path / run / "checkpoints" / "last.ckpt") for run in ("graph", "eager"))
    assert first["global_step"] == second["global_step"] == 2 * 33
    assert first["lr_schedulers"] == second["lr_schedulers"]
    group = first["optimizer_states"][0]["param_groups"][0]
    assert isinstance(group["lr"], float)
    assert group["lr"] == pytest.approx(second["optimizer_states"][0]["param_groups"][0]["lr"], rel=1e-6)
    if experiment == "d2l_lenet":
        for key, value in first["state_dict"].items():
            assert torch.allclose(value.float(), second["state_dict"][key].float(), atol=1e-3, rtol=1e-2), key
    assert graph["train_loss"] == pytest.approx(eager["train_loss"], rel=5e-2)
    assert abs(graph["test_acc"] - eager["test_acc"]) < 0.05
    assert [s for s, _ in scalars(tmp_path / "graph", "train/loss")] == [0, 1]


def test_a_graph_run_resumes_from_its_checkpoint_as_if_uninterrupted(tmp_path, gpu_data):
    """A resumed graph run continues the schedule, Adam's state and the augmentation where they were (the
    book's net: lenet_modern's amplifies the GPU's rounding differences, see the test above)."""
    options = [*GPU, f"data.data_dir={gpu_data}", "steps_per_call=epoch"]
    full = train(compose_config(tmp_path / "full", [*options, "trainer.max_epochs=2"]))
    train(compose_config(tmp_path / "part", [*options, "trainer.max_epochs=1"]))
    last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    resumed = train(compose_config(tmp_path / "part", [*options, "trainer.max_epochs=2", f"ckpt_path={last}"]))
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-3)
    assert load_checkpoint(last)["global_step"] == 2 * 33
    a, b = (
        load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"] for run in (tmp_path / "full", last.parents[1])
    )
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=2e-3, rtol=1e-2) for k in a)


def test_a_step_that_waits_for_the_gpu_is_refused_before_any_capture(tmp_path, gpu_data, monkeypatch):
    """A training step that reads a number back (here the loss, by .item()) cannot be captured: its last warm-up
    step says so in one sentence, before a capture begins, so the process's CUDA state stays usable (a failed
    capture leaves the random generator in capture mode)."""
    from lenet_exp.classifier import Classifier

    loss_and_logits = Classifier.loss_and_logits

    def reads_back(self, x, y, label_smoothing=0.0):
        loss, logits = loss_and_logits(self, x, y, label_smoothing)
        loss.item()
        return loss, logits

    monkeypatch.setattr(Classifier, "loss_and_logits", reads_back)
    options = [*GPU, "trainer.max_epochs=1", f"data.data_dir={gpu_data}", "steps_per_call=epoch"]
    sentence = r"^model\.cuda_graph=true could not capture the training step as a CUDA graph \(.*synchroniz.*\); "
    with pytest.raises(UserError, match=sentence + r"set model\.cuda_graph=false to train without the graph\.$"):
        train(compose_config(tmp_path, options))
    assert torch.cuda.get_sync_debug_mode() == 0  # as it was
    torch.randn(4, device="cuda")  # the generator was never in a capture


def test_bf16_autocast_with_cuda_graphs_trains_like_bf16_without(tmp_path, gpu_data):
    options = [*GPU, "experiment=lenet_modern", "trainer.precision=bf16-mixed", f"data.data_dir={gpu_data}"]
    options.append("steps_per_call=epoch")  # auto is 1 on CUDA, which captures nothing
    graph = train(compose_config(tmp_path / "graph", [*options, "trainer.max_epochs=2"]))
    eager = train(compose_config(tmp_path / "eager", [*options, "trainer.max_epochs=2", "model.cuda_graph=false"]))
    assert graph["train_loss"] == pytest.approx(eager["train_loss"], rel=5e-2)
    assert abs(graph["test_acc"] - eager["test_acc"]) < 0.05


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
    today = [*GPU, f"data.data_dir={gpu_data}", "trainer.max_epochs=3", "steps_per_call=1"]
    plain = train(compose_config(tmp_path / "plain", today))
    graphs = compose_config(tmp_path / "graphs", [*today, "model.compile=reduce-overhead"])
    assert abs(train(graphs)["test_acc"] - plain["test_acc"]) < 0.1
