"""Batch augmentation on the device: shifts within the padding, flips, erasing, repeatable per step."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, run_main

from lenet_exp.augment import BatchAugment
from lenet_exp.errors import UserError


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


def test_random_erasing_blanks_one_rectangle_in_about_that_share_of_images_repeatably():
    x = torch.ones(2000, 1, 28, 28)
    augment = BatchAugment(crop_padding=0, flip=False, erase=0.5)
    out = augment(x, step=3)
    assert torch.equal(out, augment(x, step=3)) and not torch.equal(out, augment(x, step=4))
    blank = (out == 0).float().sum((1, 2, 3)) / (28 * 28)  # the erased share of each image
    erased = blank > 0
    assert 0.45 < erased.float().mean() < 0.55
    # 2% to 33% of the image, give or take the rounding of each side to whole pixels: the extremes
    # that rounding allows are 12 pixels (4x3, 6x2) and 275 (25x11) (the seed differs from run to run)
    assert blank[erased].min() >= 12 / 784 and blank[erased].max() <= 275 / 784
    for image in out[erased][:50, 0]:  # each blank area is one rectangle: its bounding box is all blank
        rows, cols = (image == 0).nonzero().unbind(1)
        assert (image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] == 0).all()
    assert torch.equal(BatchAugment(crop_padding=0, flip=False, erase=0.0)(x, step=3), x)


def test_an_erasing_share_outside_0_to_1_is_one_sentence():
    with pytest.raises(UserError, match=r"model.augment.erase=1.5 must be a number in \[0, 1\)"):
        BatchAugment(erase=1.5)


PROBE = torch.arange(4 * 28 * 28, dtype=torch.float32).view(4, 1, 28, 28)  # a shift or flip of it shows


class Drawn(BatchAugment):
    """lenet_modern's augmentation, keeping for each training batch what it drew (its shifts and flips of PROBE)."""

    drawn: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, step: int) -> torch.Tensor:
        Drawn.drawn.append(super().forward(PROBE, step))
        return super().forward(x, step)


@pytest.mark.slow
def test_each_batch_of_an_accumulated_optimizer_step_draws_its_own_shifts_and_flips(tmp_path, fake_data):
    """4 batches of 16 images, 2 per optimizer step: 4 different draws (the same 2 twice, before)."""
    Drawn.drawn.clear()
    augment = "model.augment={_target_:test_augment.Drawn,crop_padding:2,flip:true}"
    overrides = [*TINY, "trainer.max_epochs=1", "trainer.accumulate_grad_batches=2", "logger=none"]
    out = run_main("lenet_exp", *overrides, f"data.data_dir={fake_data}", f"hydra.run.dir={tmp_path / 'run'}", augment)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert len(Drawn.drawn) == 4
    assert all(not torch.equal(a, b) for i, a in enumerate(Drawn.drawn) for b in Drawn.drawn[i + 1 :])
