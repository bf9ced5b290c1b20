"""The plain networks: the book's LeNet and the options lenet_modern and lenet_plus are composed from."""

import pytest
import torch
from conftest import CONF_DIR, TINY, compose_config, counted_over, first_of_each, load_checkpoint
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lenet_exp.augment import BatchAugment
from lenet_exp.errors import UserError
from lenet_exp.models import LeNet
from lenet_exp.train import train

ABLATION_ROWS = sorted(path.stem for path in (CONF_DIR / "ablation").glob("*.yaml"))  # conf/ablation/, in order


def test_lenet_is_the_books_network():
    net = LeNet()
    assert sum(p.numel() for p in net.parameters()) == 44_426
    kinds = [type(m).__name__ for m in net.modules() if not list(m.children())]
    expected = "Conv2d Sigmoid MaxPool2d Conv2d Sigmoid MaxPool2d Flatten Linear Sigmoid Linear Sigmoid Linear"
    assert kinds == expected.split()


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_lenet_maps_images_to_ten_logits(activation):
    out = LeNet(activation=activation)(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10) and out.dtype == torch.float32


def test_relu_variant_uses_relu_only():
    names = {type(m).__name__ for m in LeNet(activation="relu").modules()}
    assert "ReLU" in names and "Sigmoid" not in names


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(UserError, match="model.net.activation='tanh' is not known; use one of"):
        LeNet(activation="tanh")


@pytest.mark.slow
def test_lenet_modern_composes_from_small_options_under_100k_parameters(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=lenet_modern"])
    assert cfg.trainer.max_epochs == 20 and cfg.data.batch_size == 128
    module = instantiate(cfg.model)
    assert sum(p.numel() for p in module.net.parameters()) == 86_074
    kinds = {type(m).__name__ for m in module.net.modules()}
    assert {"ReLU", "BatchNorm2d", "BatchNorm1d"} <= kinds and "Sigmoid" not in kinds
    assert isinstance(module.augment, BatchAugment) and module.label_smoothing == 0.1
    assert cfg.model.optimizer._target_ == "torch.optim.AdamW"


def test_lenet_modern_passes_a_fast_dev_run(tmp_path, fake_data):
    cfg = compose_config(
        tmp_path, ["experiment=lenet_modern", *TINY, f"data.data_dir={fake_data}", "trainer.fast_dev_run=true"]
    )
    metrics = train(cfg)
    assert counted_over(metrics["test_acc"], 32) and metrics["epochs"] == 1  # one test batch: all 32 images


@pytest.mark.slow
def test_lenet_plus_is_the_chosen_ablation_row_under_100k_parameters(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=lenet_plus", "data.val_size=5000"])
    module = instantiate(cfg.model)
    assert sum(p.numel() for p in module.net.parameters()) == 86_074
    assert module.flip_average and module.ema is None and isinstance(module.augment, BatchAugment)
    assert module.augment.crop_padding == 1 and weight_decay(module) == 0.01
    assert cfg.data.batch_size == 128 and cfg.trainer.max_epochs == 20
    # The table measures what lenet_plus runs: its row, evaluated in other batches (which changes no result).
    assert cfg == compose_config(tmp_path, ["+ablation=8_shifts_of_1_pixel", "data.eval_batch_size=256"])
    first = compose_config(tmp_path, [f"+ablation={ABLATION_ROWS[0]}"])
    assert first == compose_config(tmp_path, ["experiment=lenet_modern", "data.val_size=5000"])


def builds_on(row: str) -> str:
    """The row an ablation row adds its change to: the first entry of its defaults list."""
    return OmegaConf.load(CONF_DIR / "ablation" / f"{row}.yaml").defaults[0]


def conv2_channels(module) -> int:
    return module.net.features[4].out_channels


def weight_decay(module) -> float:
    return module.optimizer(module.net.parameters()).defaults["weight_decay"]


# What each row changes, seen on the config and the module built from it; a new row needs its entry.
ROW_CHANGES = {
    "1_flip_average": lambda cfg, module: module.flip_average,
    "2_ema": lambda cfg, module: module.ema is not None,
    "3_wider_conv2_batch_256": lambda cfg, module: conv2_channels(module) == 48 and cfg.data.batch_size == 256,
    "4_wider_conv2_17_epochs": lambda cfg, module: conv2_channels(module) == 48 and cfg.trainer.max_epochs == 17,
    "5_random_erasing": lambda cfg, module: module.augment.erase == 0.25,
    "6_weight_decay_0.01": lambda cfg, module: weight_decay(module) == 0.01,
    "7_no_weight_decay": lambda cfg, module: weight_decay(module) == 0.0,
    "8_shifts_of_1_pixel": lambda cfg, module: module.augment.crop_padding == 1 and module.augment.flip,
    "9_no_shifts": lambda cfg, module: module.augment.crop_padding == 0 and module.augment.flip,
}


@pytest.mark.parametrize("row", first_of_each(ABLATION_ROWS[1:]))
def test_each_ablation_row_makes_its_one_change_to_the_row_it_builds_on(tmp_path, row):
    before = compose_config(tmp_path, [f"+ablation={builds_on(row)}"])
    after = compose_config(tmp_path, [f"+ablation={row}"])
    changed, module = ROW_CHANGES[row], instantiate(after.model)
    assert changed(after, module) and not changed(before, instantiate(before.model))
    wider = row.startswith(("3_", "4_"))  # 48 channels in the second convolution: docs/results.md's table
    assert sum(p.numel() for p in module.net.parameters()) == (89_066 if wider else 86_074)
    assert after.data.val_size == 5000 and after.seed == before.seed  # chosen on the validation split


@pytest.mark.slow
def test_an_ablation_row_trains_with_its_options_wired(tmp_path, fake_data):
    overrides = [
        "+ablation=3_wider_conv2_batch_256",  # a moving average, a wider network and the flip average
        *TINY,
        f"data.data_dir={fake_data}",
        "trainer.max_epochs=1",
        "data.val_size=16",
    ]
    cfg = compose_config(tmp_path, overrides)
    metrics = train(cfg)
    assert counted_over(metrics["val_acc"], 16) and counted_over(metrics["test_acc"], 32)
    assert metrics["tested"] == "best" and metrics["best_epoch"] == 1
    state = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
    assert state["ema.n_averaged"] == 3  # 64 images less a validation split of 16 (TINY's data), batches of 16
    assert state["ema.module.features.4.weight"].shape == (48, 16, 5, 5)
    assert cfg.model.flip_average


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_lenet_plus_trains_with_its_options_wired(tmp_path, fake_data):
    overrides = [
        "experiment=lenet_plus",
        *TINY,
        f"data.data_dir={fake_data}",
        "trainer.max_epochs=1",
        "data.val_size=16",
    ]
    metrics = train(compose_config(tmp_path, overrides))
    assert counted_over(metrics["val_acc"], 16) and counted_over(metrics["test_acc"], 32)
    assert metrics["tested"] == "best" and metrics["best_epoch"] == 1
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["weight_decay"] == 0.01
    assert checkpoint["hyper_parameters"]["flip_average"]
    weights = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.") and "running_" not in k}
    assert sum(v.numel() for k, v in weights.items() if "num_batches_tracked" not in k) == 86_074
