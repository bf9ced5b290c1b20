"""LeNet as in section 5.5 of *Dive into Deep Learning* (PyTorch edition), and its modern variants."""

from collections.abc import Sequence

from torch import Tensor, nn

from lenet_exp.errors import UserError, check_value, typed

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


class LeNet(nn.Module):
    """LeNet for 1x28x28 images: two 5x5 convolutions, two 2x2 max-pools, three linear layers.

    With the defaults it is exactly the book's network (sigmoid, 6 and 16 channels, 120 and 84
    hidden units: 44,426 parameters). ``channels``, ``hidden`` and ``batch_norm`` (after every
    convolution and hidden linear layer, before the activation) give its modern variants.
    """

    def __init__(
        self,
        activation: str = "sigmoid",
        num_classes: int = 10,
        channels: Sequence[int] = (6, 16),
        hidden: Sequence[int] = (120, 84),
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise UserError(f"model.net.activation={typed(activation)} is not known; use one of {sorted(ACTIVATIONS)}.")
        check_value("model.net.batch_norm", batch_norm, "switch")
        if len(channels) != 2 or len(hidden) != 2 or min(*channels, *hidden) < 1:
            raise UserError(
                f"model.net.channels={list(channels)} and model.net.hidden={list(hidden)} must be two positive "
                "numbers each, such as [6, 16] and [120, 84]."
            )
        act = ACTIVATIONS[activation]
        c1, c2 = channels
        h1, h2 = hidden

        def norm(kind: type[nn.Module], width: int) -> list[nn.Module]:
            return [kind(width)] if batch_norm else []

        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, bias=not batch_norm),  # (N,1,28,28) -> (N,c1,24,24)
            *norm(nn.BatchNorm2d, c1),
            act(),
            nn.MaxPool2d(2, 2),  # -> (N,c1,12,12)
            nn.Conv2d(c1, c2, 5, bias=not batch_norm),  # -> (N,c2,8,8)
            *norm(nn.BatchNorm2d, c2),
            act(),
            nn.MaxPool2d(2, 2),  # -> (N,c2,4,4)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # -> (N,c2*16)
            nn.Linear(c2 * 4 * 4, h1, bias=not batch_norm),
            *norm(nn.BatchNorm1d, h1),
            act(),
            nn.Linear(h1, h2, bias=not batch_norm),
            *norm(nn.BatchNorm1d, h2),
            act(),
            nn.Linear(h2, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N,1,28,28) float images in [0,1] -> (N,num_classes) logits."""
        return self.classifier(self.features(x))
