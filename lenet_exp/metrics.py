"""The training and evaluation metrics, accumulated on the device and summed across processes with no host sync."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class WeightedMean(Metric):
    """The mean of values given with weights (batch means with batch sizes), summed across processes.

    torchmetrics' MeanMetric either checks every value for NaN (a device sync per step) or, with
    ``nan_strategy="disable"``, ignores the weights; this one does neither, and a NaN shows.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: int) -> None:
        self.total += value * weight
        self.weight += weight

    def compute(self) -> Tensor:
        return self.total / self.weight


class Accuracy(Metric):
    """The share of correct top-1 predictions, counted on the device and summed across processes;
    ``update`` takes how many predictions were correct and how many were made.

    torchmetrics' MulticlassAccuracy counts through ``torch.bincount``, which on a GPU reads the
    largest value back to the host: a device sync per step. Counting matches needs none.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, correct: Tensor, total: int | Tensor) -> None:
        self.correct += correct
        self.total += total

    def compute(self) -> Tensor:
        return self.correct.float() / self.total
