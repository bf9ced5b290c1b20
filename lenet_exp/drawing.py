"""Pictures drawn with Pillow: a confusion matrix, a captioned image grid, a line plot.

Each returns a PIL image; ``np.asarray(image)`` is the (H, W, 3) uint8 array TensorBoard takes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError):
        return ImageFont.load_default()


def confusion_matrix(counts: torch.Tensor, names: Sequence[str]) -> Image.Image:
    """Rows: true class; columns: predicted class. Cells hold counts, shaded by the row's share."""
    n, cell, left, top = len(names), 46, 150, 34
    image = Image.new("RGB", (left + n * cell + 12, top + n * cell + 30), "white")
    draw, small = ImageDraw.Draw(image), font(13)
    shares = counts.float() / counts.sum(1, keepdim=True).clamp(min=1)
    for i in range(n):
        draw.text((left - 8, top + i * cell + cell // 2), f"{names[i]} {i}", fill="black", anchor="rm", font=small)
        draw.text((left + i * cell + cell // 2, top - 8), str(i), fill="black", anchor="ms", font=small)
        for j in range(n):
            share = float(shares[i, j])
            shade = int(255 * (1 - share))
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
            draw.rectangle(box, fill=(shade, shade, 255), outline=(210, 210, 210))
            ink = "white" if share > 0.5 else "black"
            centre = (left + j * cell + cell // 2, top + i * cell + cell // 2)
            draw.text(centre, str(int(counts[i, j])), fill=ink, anchor="mm", font=small)
    caption = "rows: true class, columns: predicted class"
    draw.text((left, top + n * cell + 8), caption, fill="black", font=small)
    return image


def image_grid(images: torch.Tensor, captions: Sequence[str], columns: int = 8, scale: int = 3) -> Image.Image:
    """(N, 1, H, W) images in [0, 1], each enlarged ``scale`` times with its caption below."""
    n, (h, w) = len(images), images.shape[-2:]
    cell_w, cell_h = max(w * scale, 124), h * scale + 18
    rows = max(1, -(-n // columns))
    grid = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw, small = ImageDraw.Draw(grid), font(11)
    pixels = (images[:, 0].clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    for k in range(n):
        x, y = (k % columns) * cell_w, (k // columns) * cell_h
        tile = Image.fromarray(pixels[k], mode="L").resize((w * scale, h * scale), Image.NEAREST)
        grid.paste(tile.convert("RGB"), (x + (cell_w - w * scale) // 2, y))
        draw.text((x + cell_w // 2, y + h * scale + 2), captions[k], fill="black", anchor="ma", font=small)
    return grid


def line_plot(series: dict[str, Sequence[float]], title: str, ylabel: str, xlabel: str = "epoch") -> Image.Image:
    """One line per entry of ``series`` (y values at x = 1, 2, ...), with axes and a legend."""
    width, height, left, right, top, bottom = 1000, 480, 70, 360, 40, 50
    image = Image.new("RGB", (width, height), "white")
    draw, small = ImageDraw.Draw(image), font(13)
    values = [v for ys in series.values() for v in ys]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-9 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    n = max((len(ys) for ys in series.values()), default=1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return left + (x - 1) / max(n - 1, 1) * plot_w, top + (hi - y) / (hi - lo) * plot_h

    draw.rectangle((left, top, left + plot_w, top + plot_h), outline="black")
    for t in range(6):
        y = lo + (hi - lo) * t / 5
        _, py = at(1, y)
        draw.line((left - 4, py, left, py), fill="black")
        draw.text((left - 6, py), f"{y:.3f}", fill="black", anchor="rm", font=small)
    for x in range(1, n + 1, max(1, n // 10)):
        px, _ = at(x, lo)
        draw.line((px, top + plot_h, px, top + plot_h + 4), fill="black")
        draw.text((px, top + plot_h + 6), str(x), fill="black", anchor="ma", font=small)
    draw.text((left + plot_w // 2, height - 18), xlabel, fill="black", anchor="ma", font=small)
    draw.text((left, top - 10), f"{title} ({ylabel})", fill="black", anchor="ls", font=font(15))
    for k, (name, ys) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        points = [at(i + 1, y) for i, y in enumerate(ys)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for px, py in points:
            draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=color)
        ly = top + 10 + 20 * k
        draw.line((left + plot_w + 14, ly, left + plot_w + 34, ly), fill=color, width=3)
        draw.text((left + plot_w + 40, ly), name[:52], fill="black", anchor="lm", font=small)
    return image
