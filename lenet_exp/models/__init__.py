"""Plain ``nn.Module`` networks; no Lightning in here."""

from lenet_exp.models.lenet import LeNet

__all__ = ["LeNet"]
