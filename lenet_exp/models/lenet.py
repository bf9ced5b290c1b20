"""LeNet-5 as in section 5.5 of *Dive into Deep Learning* (PyTorch edition)."""

from torch import Tensor, nn

from lenet_exp.errors import UserError

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


class LeNet(nn.Module):
    """LeNet for 1x28x28 images: two 5x5 convolutions, two 2x2 max-pools, three linear layers.

    With the default sigmoid it is exactly the book's network (44,426 parameters).
    """

    def __init__(self, activation: str = "sigmoid", num_classes: int = 10) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise UserError(f"model.net.activation={activation!r} is not known; use one of {sorted(ACTIVATIONS)}.")
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5),  # (N,1,28,28) -> (N,6,24,24)
            act(),
            nn.MaxPool2d(2, 2),  # -> (N,6,12,12)
            nn.Conv2d(6, 16, 5),  # -> (N,16,8,8)
            act(),
            nn.MaxPool2d(2, 2),  # -> (N,16,4,4)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # -> (N,256)
            nn.Linear(16 * 4 * 4, 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N,1,28,28) float images in [0,1] -> (N,num_classes) logits."""
        return self.classifier(self.features(x))
