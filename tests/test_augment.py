"""Batch augmentation on the device: shifts within the padding, flips, repeatable per step."""

from __future__ import annotations

import torch

from lenet_exp.augment import BatchAugment


def test_batch_augment_shifts_within_the_padding_and_flips_repeatably():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 4:8] = 1.0  # a bar left of centre
    augment = BatchAugment(crop_padding=2, flip=True)
    out = augment(x, step=7)
    assert out.shape == x.shape and torch.equal(out, augment(x, step=7))
    assert not torch.equal(out, augment(x, step=8))
    assert torch.equal(out.sum((1, 2, 3)), x.sum((1, 2, 3)))  # a shift of <= 2 px keeps the whole bar
    columns = out[:, 0].sum(1).nonzero()[:, 1].view(64, -1)
    lefts = columns.min(1).values
    assert set(lefts.tolist()) <= {2, 3, 4, 5, 6} | {18, 19, 20, 21, 22}  # shifted, or flipped and shifted
    assert (lefts >= 18).any() and (lefts <= 6).any()
