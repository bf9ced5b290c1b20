"""The LightningModule: the loss mean, the NaN stop, schedules over the whole run, compile + bf16."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import ONE_EPOCH, TINY, compose_config, counted_over, load_checkpoint
from pytorch_lightning.callbacks import Callback

from lenet_exp.classifier import Classifier
from lenet_exp.errors import UserError
from lenet_exp.models import LeNet
from lenet_exp.train import train


class InfiniteLearningRateFromEpoch(Callback):
    """Makes the loss blow up from a given epoch on (1-based), as a too-large learning rate does."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = float("inf")


# 4: the whole epoch's 4 steps in one training_step (a few seconds more: make test runs it, make test-fast does not)
@pytest.mark.parametrize("steps_per_call", [1, pytest.param(4, marks=pytest.mark.slow)])
def test_a_nan_loss_stops_the_run_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(
    tmp_path, fake_data, steps_per_call
):
    cfg = compose_config(
        tmp_path,
        [
            *ONE_EPOCH,
            f"steps_per_call={steps_per_call}",
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


def test_a_nan_loss_of_float16_weights_says_to_keep_float32_weights_not_to_lower_the_rate(tmp_path, fake_data):
    """trainer.precision=16-true with Adam: its eps (1e-8) is 0 in float16, so the first steps divide by zero
    whatever the learning rate; and in the first epoch no checkpoint holds a good epoch yet."""
    settings = [*ONE_EPOCH, f"data.data_dir={fake_data}", "trainer.precision=16-true", "model.optimizer.lr=0.00001"]
    sentence = (
        r"in epoch 1 at step \d+, .*\(no epoch of this run was saved yet\); train with trainer.precision=16-mixed"
    )
    with pytest.raises(UserError, match=sentence):
        train(compose_config(tmp_path, settings))


def test_the_loss_mean_weights_each_batch_by_its_size_and_shows_a_nan():
    from lenet_exp.classifier import WeightedMean

    mean = WeightedMean()
    mean.update(torch.tensor(1.0), 3)
    mean.update(torch.tensor(2.0), 1)
    assert mean.compute() == pytest.approx(1.25)
    mean.update(torch.tensor(float("nan")), 2)
    assert torch.isnan(mean.compute())


@pytest.mark.slow
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
def test_compiled_bf16_training_keeps_plain_checkpoints_and_tests_on_the_graphs_validation_compiled(
    tmp_path, fake_data, monkeypatch
):
    """One graph for training and one for evaluation: the epoch's validation (under no_grad, as Lightning runs it
    during fit) and the final test (trainer.inference_mode is off with model.compile) use the same one."""
    import torch._inductor.config
    from torch._dynamo.utils import counters  # dynamo's own count of the graphs it compiled

    if os.environ.get("ATEN_CPU_CAPABILITY") == "avx2":  # the CPU without AVX-512, emulated (docs/testing.md):
        # inductor sizes the vectors of the C++ it writes by the CPU it finds, not by that variable. Its AVX-512
        # code beside ATen's AVX2 kernels gave a NaN loss at the first step; a CPU without AVX-512 gets 256 bits.
        monkeypatch.setattr(torch._inductor.config.cpp, "simdlen", 256)
    torch._dynamo.reset()
    counters.clear()
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
    assert cfg.trainer.inference_mode is False
    metrics = train(cfg)
    assert counted_over(metrics["test_acc"], 32) and metrics["epochs"] == 1  # fake_data's 32 test images
    assert counters["stats"]["unique_graphs"] == 2, dict(counters["stats"])  # 3 with the test in inference mode
    keys = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"].keys()
    assert "net.features.0.weight" in keys and not any("_orig_mod" in k for k in keys)


def test_flip_average_evaluates_an_image_and_its_mirror_image_alike():
    torch.manual_seed(0)
    module = Classifier(LeNet(activation="relu"), flip_average=True)
    x = torch.rand(8, 1, 28, 28)
    assert not torch.allclose(module(x), module(x.flip(-1)))  # training: the plain logits of each image
    module.eval()
    averaged = module(x)
    assert torch.allclose(averaged, module(x.flip(-1)), atol=1e-6)
    probabilities = (module.net(x).softmax(1) + module.net(x.flip(-1)).softmax(1)) / 2
    assert torch.allclose(averaged.exp(), probabilities, atol=1e-6)


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_the_weight_average_is_trained_checkpointed_evaluated_and_resumed_exactly(tmp_path, fake_data):
    common = [*TINY, f"data.data_dir={fake_data}", "model.ema_decay=0.9", "model.net.activation=relu"]
    train(compose_config(tmp_path / "straight", [*common, "trainer.max_epochs=2"]))
    state = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")["state_dict"]
    assert state["ema.n_averaged"] == 2 * 4  # updated after each of the 8 steps
    assert not torch.equal(state["ema.module.features.0.weight"], state["net.features.0.weight"])

    module = Classifier(LeNet(activation="relu"), ema_decay=0.9)
    module.load_state_dict(state)  # what eval and predict do: they evaluate the average
    module.eval()
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(module(x), module.ema.module(x)) and not torch.equal(module(x), module.net(x))

    train(compose_config(tmp_path / "resumed", [*common, "trainer.max_epochs=1"]))
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    train(compose_config(tmp_path / "resumed", [*common, "trainer.max_epochs=2", f"ckpt_path={last}"]))
    resumed = load_checkpoint(last)["state_dict"]
    assert resumed.keys() == state.keys() and all(torch.equal(resumed[k], state[k]) for k in state)


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_a_schedule_over_the_run_with_no_set_length_is_one_sentence(tmp_path, fake_data):
    """trainer.max_epochs=-1 ended by max_time leaves the run's length open; OneCycleLR needs it."""
    overrides = [*TINY, f"data.data_dir={fake_data}", "model=lenet_modern", "trainer.max_epochs=-1"]
    with pytest.raises(UserError, match=r"^model.scheduler.total_steps is the run's length, which trainer.max_epochs"):
        train(compose_config(tmp_path, [*overrides, "trainer.max_time=00:00:01:00"]))
    assert train(compose_config(tmp_path / "steps", [*overrides, "trainer.max_steps=6"]))["epochs"] == 2


class WrongLogits(torch.nn.Module):
    """A network of one's own whose output is not (N, 10): ``shape`` is what follows N."""

    def __init__(self, shape: list[int], features: bool = False, **lenets_settings) -> None:
        super().__init__()
        self.shape, self.features = tuple(shape), features
        self.linear = torch.nn.Linear(784, int(torch.tensor(self.shape).prod()))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear(x.flatten(1)).view(len(x), *self.shape)
        return (logits, x) if self.features else logits  # features: the logits and the input, as a pair


@pytest.mark.parametrize("shape", [[7], [10, 1, 1], [10]], ids=["7 classes", "no flatten", "logits and features"])
def test_a_network_whose_logits_are_not_one_score_per_class_is_one_sentence(tmp_path, fake_data, shape):
    """The commonest mistake of a network of one's own ended in cross-entropy's IndexError or RuntimeError
    ("Target 9 is out of bounds", "only batches of spatial targets supported") inside a traceback; a network that
    returns its logits with something else, in an AttributeError."""
    net = ["model.net._target_=test_classifier.WrongLogits", f"+model.net.shape={shape}"]
    net += ["+model.net.features=true"] if shape == [10] else []
    cfg = compose_config(tmp_path, [*ONE_EPOCH, f"data.data_dir={fake_data}", *net])
    shown = ", ".join(map(str, [16, *shape]))
    said = rf"of shape \({shown}\) for a batch of 16 images; it " if shape != [10] else "a tuple for a batch of 16 "
    with pytest.raises(UserError, match=rf"^model.net gives (logits )?{said}"):
        train(cfg)
    assert not (tmp_path / "metrics.json").exists()


class ThreeChannels(torch.nn.Module):
    """A network of one's own made for colour images: its first layer takes 3 channels."""

    def __init__(self, **lenets_settings) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.linear = torch.nn.Linear(4 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.conv(x).flatten(1))


def test_a_network_that_cannot_take_the_images_is_one_sentence_before_training(tmp_path, fake_data):
    """It ended in torch's RuntimeError inside Lightning's model summary, a traceback of about 100 lines."""
    net = ["model.net._target_=test_classifier.ThreeChannels"]
    cfg = compose_config(tmp_path, [*ONE_EPOCH, f"data.data_dir={fake_data}", *net])
    said = r"^model.net cannot take a batch of Fashion-MNIST images, shape \(2, 1, 28, 28\) \(RuntimeError: "
    said += r".*3 channels.*\); its first layer must take 1 channel of 28 x 28 pixels\.$"
    with pytest.raises(UserError, match=said):
        train(cfg)
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "checkpoints").exists()


class NoWeights(torch.nn.Module):
    """A network of one's own with nothing to train."""

    def __init__(self, **lenets_settings) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10]


def test_a_network_without_weights_is_said_so_not_to_lower_the_rate(tmp_path, fake_data):
    cfg = compose_config(
        tmp_path, [*ONE_EPOCH, f"data.data_dir={fake_data}", "model.net._target_=test_classifier.NoWeights"]
    )
    with pytest.raises(
        UserError, match=r"^model.optimizer is refused by torch \(.*empty parameter list\); model.net has"
    ):
        train(cfg)


class NaNOut(torch.nn.Module):
    """A network of one's own whose output is NaN from the start (a division by zero in its forward, say)."""

    def __init__(self, **lenets_settings) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * float("nan")


def test_a_nan_loss_at_the_first_step_points_at_the_network_not_the_learning_rate(tmp_path, fake_data):
    net = "model.net._target_=test_classifier.NaNOut"
    with pytest.raises(UserError, match=r"in epoch 1 at step 1, .*; at the first step, before any weight changed, it"):
        train(compose_config(tmp_path, [*ONE_EPOCH, f"data.data_dir={fake_data}", net]))
