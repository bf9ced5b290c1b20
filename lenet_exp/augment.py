"""Data augmentation on whole batches, on the device the batch is on (no per-image Python)."""

import math

import torch
from torch import Tensor, nn

from lenet_exp.arguments import check_augment


class BatchAugment(nn.Module):
    """Per-image random crop of a zero-padded image (a shift of up to ``crop_padding`` pixels each
    way), with ``flip`` a random horizontal flip, and with ``erase`` > 0 random erasing: that share
    of the images gets one rectangle (2% to 33% of the image, aspect ratio 0.3 to 3.3) set to
    zero, the background. (N,C,H,W) -> (N,C,H,W).

    The random numbers of a batch are a function of (torch's initial seed, ``step``), so a run
    resumed from a checkpoint draws exactly what an uninterrupted one would. The classifier passes the
    optimizer step, or with gradient accumulation over k batches, step * k + the batch within the step,
    so that each batch of a step draws its own.
    """

    def __init__(self, crop_padding: int = 2, flip: bool = True, erase: float = 0.0) -> None:
        super().__init__()
        check_augment(crop_padding, flip, erase)
        self.crop_padding, self.flip, self.erase = crop_padding, flip, erase

    def forward(self, x: Tensor, step: int) -> Tensor:
        n, _, h, w = x.shape
        generator = torch.Generator(device=x.device).manual_seed((torch.initial_seed() * 1_000_003 + step) % 2**63)
        if self.crop_padding:
            p = self.crop_padding
            padded = nn.functional.pad(x, (p, p, p, p))
            dy, dx = torch.randint(0, 2 * p + 1, (2, n, 1), device=x.device, generator=generator)
            rows = (torch.arange(h, device=x.device) + dy)[:, :, None]  # (N,H,1)
            cols = (torch.arange(w, device=x.device) + dx)[:, None, :]  # (N,1,W)
            batch = torch.arange(n, device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (N,H,W,C) gather
        if self.flip:
            flipped = torch.rand(n, device=x.device, generator=generator) < 0.5
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
        if self.erase:
            x = x.masked_fill(self._erased(n, h, w, x.device, generator)[:, None], 0.0)
        return x

    def _erased(self, n: int, h: int, w: int, device: torch.device, generator: torch.Generator) -> Tensor:
        """(N,H,W) bool: one random rectangle in each image chosen with probability ``erase``."""
        chosen, area, log_ratio, y, x = torch.rand(5, n, device=device, generator=generator)
        area = (0.02 + 0.31 * area) * h * w
        ratio = torch.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * log_ratio)  # height / width
        eh = (area * ratio).sqrt().round().clamp(1, h)
        ew = (area / ratio).sqrt().round().clamp(1, w)
        top, left = (y * (h - eh + 1)).floor(), (x * (w - ew + 1)).floor()
        rows = torch.arange(h, device=device)[None, :, None]
        cols = torch.arange(w, device=device)[None, None, :]
        in_rows = (rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])  # (N,H,1)
        in_cols = (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None])  # (N,1,W)
        return in_rows & in_cols & (chosen < self.erase)[:, None, None]
