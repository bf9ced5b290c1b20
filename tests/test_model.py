import pytest
import torch

from lenet_exp.errors import UserError
from lenet_exp.models import LeNet


def test_lenet_is_the_books_network():
    net = LeNet()
    assert sum(p.numel() for p in net.parameters()) == 44_426
    kinds = [type(m).__name__ for m in net.modules() if not list(m.children())]
    assert kinds == [
        "Conv2d", "Sigmoid", "MaxPool2d", "Conv2d", "Sigmoid", "MaxPool2d",
        "Flatten", "Linear", "Sigmoid", "Linear", "Sigmoid", "Linear",
    ]  # fmt: skip


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


def test_the_loss_mean_weights_each_batch_by_its_size_and_shows_a_nan():
    from lenet_exp.module import WeightedMean

    mean = WeightedMean()
    mean.update(torch.tensor(1.0), 3)
    mean.update(torch.tensor(2.0), 1)
    assert mean.compute() == pytest.approx(1.25)
    mean.update(torch.tensor(float("nan")), 2)
    assert torch.isnan(mean.compute())
