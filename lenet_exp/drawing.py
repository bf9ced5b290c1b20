"""Pictures: a confusion matrix and a captioned image grid (Pillow), curves with bands (matplotlib).

The Pillow pictures are PIL images for TensorBoard (``np.asarray(image)`` is the (H, W, 3) uint8 array
it takes); ``band_plot`` writes a PNG file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from lenet_exp.runtime.writes import atomic_write

if TYPE_CHECKING:  # torch for the pictures of tensors only: the report draws its curves without loading it
    import torch
    from matplotlib.figure import Figure


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
    pixels = (images[:, 0].clamp(0, 1) * 255).byte().cpu().numpy()
    for k in range(n):
        x, y = (k % columns) * cell_w, (k // columns) * cell_h
        tile = Image.fromarray(pixels[k], mode="L").resize((w * scale, h * scale), Image.NEAREST)
        grid.paste(tile.convert("RGB"), (x + (cell_w - w * scale) // 2, y))
        draw.text((x + cell_w // 2, y + h * scale + 2), captions[k], fill="black", anchor="ma", font=small)
    return grid


def band_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str,
    ylabel: str,
    xlabel: str = "epoch",
    legend_title: str = "",
) -> Figure:
    """Write a PNG with one line per entry of ``series``: (mean, std) at x = 1, 2, ..., in a band of ± std,
    and a legend (titled ``legend_title``) beside the axes.

    The figure is drawn on matplotlib's Agg canvas directly: no GUI backend, no pyplot state shared
    with whoever imported us.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for k, (name, (mean, std)) in enumerate(series.items()):
        x = range(1, len(mean) + 1)
        style = ["-", "--", ":", "-."][k // 10 % 4]  # the default cycle has 10 colours; then change the dashes
        (line,) = axes.plot(x, mean, style, marker="o", markersize=3, label=name)
        low, high = [m - s for m, s in zip(mean, std, strict=True)], [m + s for m, s in zip(mean, std, strict=True)]
        axes.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    # Epochs are whole numbers, also when a curve has one point (the locator's fallback is tenths).
    longest = max((len(mean) for mean, _ in series.values()), default=1)
    axes.set_xlim(0.5, longest + 0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.grid(alpha=0.3)
    if series:
        axes.legend(
            title=legend_title or None,
            alignment="left",
            loc="upper left",
            bbox_to_anchor=(1.01, 1),
            fontsize="small",
            title_fontsize="small",
            frameon=False,
        )
    else:
        axes.text(0.5, 0.5, "no evaluation curve logged", transform=axes.transAxes, ha="center", va="center")
    png = io.BytesIO()
    figure.savefig(png, format="png", bbox_inches="tight")  # "tight" keeps the legend beside the axes
    atomic_write(Path(path), png.getvalue())  # never through a link planted at that path
    return figure
