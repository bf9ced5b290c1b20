"""The plain networks: the book's LeNet and the options lenet_modern is composed from."""

import pytest
import torch
from conftest import TINY, compose_config
from hydra.utils import instantiate

from lenet_exp.augment import BatchAugment
from lenet_exp.errors import UserError
from lenet_exp.models import LeNet
from lenet_exp.train import train


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


def test_lenet_modern_composes_from_small_options_under_100k_parameters(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=lenet_modern"])
    assert cfg.trainer.max_epochs <= 20
    module = instantiate(cfg.model)
    assert sum(p.numel() for p in module.parameters()) <= 100_000
    kinds = {type(m).__name__ for m in module.net.modules()}
    assert {"ReLU", "BatchNorm2d", "BatchNorm1d"} <= kinds and "Sigmoid" not in kinds
    assert isinstance(module.augment, BatchAugment) and module.label_smoothing == 0.1
    assert cfg.model.optimizer._target_ == "torch.optim.AdamW"


def test_lenet_modern_passes_a_fast_dev_run(tmp_path, fake_data):
    cfg = compose_config(
        tmp_path, ["experiment=lenet_modern", *TINY, f"data.data_dir={fake_data}", "+trainer.fast_dev_run=true"]
    )
    assert 0.0 <= train(cfg)["test_acc"] <= 1.0
