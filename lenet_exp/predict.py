"""``python -m lenet_exp.predict ckpt_path=<ckpt> images=<file, a,b,c list, or folder> [format=json] [top=3]``

Prints, for each image, the predicted class and the top probabilities. Any image is first made
the way Fashion-MNIST's were: grayscale; inverted when its background (the border pixels) is
light, so the object is light on dark; scaled so its longer side is 28 pixels, keeping its
aspect ratio; centred on a black 28x28 canvas; pixels / 255.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lenet_exp.errors import UserError, check_value, exit_on_user_error, fail
from lenet_exp.runtime.cli import answer_help, key_values, names, require
from lenet_exp.runtime.console import log_to_console

log = logging.getLogger("lenet_exp")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def image_paths(spec: str) -> list[Path]:
    """A file, a comma-separated list of files, or a folder (its image files, sorted)."""
    paths: list[Path] = []
    for part in str(spec).split(","):
        path = Path(part.strip()).expanduser()
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(path)
    if not paths:
        raise UserError(f"images={spec} names no image files; give a file, a comma-separated list or a folder.")
    return paths


def to_fashion_mnist(image: Image.Image) -> np.ndarray:
    """Any picture -> a 28x28 float32 array in [0, 1], light object on a dark background."""
    gray = ImageOps.exif_transpose(image).convert("L")
    pixels = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127.5:  # a light background, like a photo on white: make it dark
        gray = ImageOps.invert(gray)
    scale = 28 / max(gray.size)
    size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(gray.resize(size, Image.LANCZOS), ((28 - size[0]) // 2, (28 - size[1]) // 2))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def predict(ckpt_path: str | Path, images: str, top: int = 3, trust: list[str] = ()) -> list[dict]:
    """One result per image: ``{"image", "class", "top": [{"class", "probability"}, ...]}``,
    or ``{"image", "error"}`` for a file that cannot be read as an image."""
    from lenet_exp.runtime.checks import checkpoint_file

    path = checkpoint_file(ckpt_path)  # before torch takes its seconds to load

    import torch
    from hydra.utils import get_class

    from lenet_exp.runtime.checkpoints import load_checkpoint, rebuild

    cfg, module = rebuild(load_checkpoint(path, trust), path)
    names = list(getattr(get_class(cfg.data._target_), "classes", None) or range(cfg.model.get("num_classes", 10)))
    results: list[dict] = []
    arrays, readable = [], []
    for file in image_paths(images):
        try:
            with Image.open(file) as image:
                arrays.append(to_fashion_mnist(image))
            readable.append(len(results))
            results.append({"image": str(file)})
        except (OSError, UnidentifiedImageError, ValueError) as err:
            reason = "no such file" if not file.exists() else f"not a readable image ({type(err).__name__})"
            results.append({"image": str(file), "error": f"{file} cannot be read: {reason}"})
    if arrays:
        with torch.no_grad():
            batch = torch.from_numpy(np.stack(arrays)).unsqueeze(1)  # (N,1,28,28)
            probabilities = module(batch).softmax(dim=1)
        k = min(top, probabilities.shape[1])
        values, indices = probabilities.topk(k, dim=1)
        for i, row in enumerate(readable):
            pairs = zip(values[i].tolist(), indices[i].tolist(), strict=True)
            best = [{"class": str(names[c]), "probability": round(float(p), 4)} for p, c in pairs]
            results[row].update({"class": best[0]["class"], "top": best})
    return results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    answer_help(argv, __doc__)
    log_to_console()
    usage = (
        "usage: python -m lenet_exp.predict ckpt_path=<file.ckpt> images=<file|a,b|folder> [format=json] [top=3] "
        "[trust=your.Class,...]"
    )
    args, _ = key_values(argv, usage, {"ckpt_path", "images", "format", "top", "trust"})
    require(args, ("ckpt_path", "images"), usage)
    if args.get("format", "text") not in ("text", "json"):
        fail(f"format={args['format']} is not known; use format=text or format=json.")
    top = exit_on_user_error(lambda: check_value("top", args.get("top", 3), "whole", 3, low=1))
    trust = names(args.get("trust"))
    results = exit_on_user_error(lambda: predict(args["ckpt_path"], str(args["images"]), top, trust))
    for result in results:
        if args.get("format", "text") == "json":
            print(json.dumps(result), flush=True)
        elif "error" in result:
            print(f"error: {result['error']}", file=sys.stderr, flush=True)
        else:
            ranked = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
            print(f"{result['image']}: {result['class']}  ({ranked})", flush=True)
    if any("error" in r for r in results):
        sys.exit(1)  # the other images were predicted; the exit status says that not all were


if __name__ == "__main__":
    main()
