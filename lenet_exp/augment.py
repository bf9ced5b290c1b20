"""Data augmentation on whole batches, on the device the batch is on (no per-image Python)."""

import torch
from torch import Tensor, nn


class BatchAugment(nn.Module):
    """Per-image random crop of a zero-padded image (a shift of up to ``crop_padding`` pixels each
    way) and, with ``flip``, a random horizontal flip. (N,C,H,W) -> (N,C,H,W).

    The random numbers of a batch are a function of (torch's initial seed, ``step``), so a run
    resumed from a checkpoint draws exactly what an uninterrupted one would.
    """

    def __init__(self, crop_padding: int = 2, flip: bool = True) -> None:
        super().__init__()
        self.crop_padding, self.flip = crop_padding, flip

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
        return x
