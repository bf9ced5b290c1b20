"""``python -m lenet_exp.predict ckpt_path=<ckpt> images=<file, a,b,c list, folder or pattern> [format=json] [top=3]
[trust=your.Class,...]``

Prints, for each image, the predicted class and the top probabilities. Any image is first made
the way Fashion-MNIST's were: grayscale; inverted when the object is darker than its background (the
corners' shade), so the object is light; the background's shade made black and its margins trimmed; scaled so its
longer side is 28 pixels, keeping its aspect ratio; centred on a black 28x28 canvas; pixels / 255. A
picture of 28x28 pixels already has Fashion-MNIST's size and is not trimmed or scaled. A file that
cannot be read (missing, not an image, truncated, or above ``MAX_PIXELS``, 40 megapixels) is an error
of its own: the others are still predicted, and the exit status is 1.

``lenet_exp.load(ckpt).predict(images)`` (TrainedModel here) is the same code path from Python; it also
takes PIL images, and tensors already in Fashion-MNIST's form, which it gives to the network as they are.
"""

from __future__ import annotations

import errno
import glob
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lenet_exp.errors import UserError, check_value, exit_on_user_error, fail
from lenet_exp.runtime.cli import answer_help, key_values, names, output_read_to_the_end, require, whole
from lenet_exp.runtime.console import log_to_console

if TYPE_CHECKING:
    import torch

log = logging.getLogger("lenet_exp")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
# The largest picture predict decodes, in pixels (8000 x 5000): a phone photo is far below it, and an
# image claiming more (a few kilobytes of PNG can claim gigapixels) is refused from its header, unread.
MAX_PIXELS = 40_000_000
# Fashion-MNIST's conversion trimmed the edges within 5 % of full intensity of the background's colour
TRIM = 0.05 * 255
# why a file cannot be opened, by errno (a damaged image's OSError has none)
OPEN_ERRORS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "a loop of symbolic links",
    errno.EISDIR: "it is a folder",
}


BLANK = "shows nothing but its background, so its class says nothing about it"


class Unreadable(UserError):
    """Why a picture cannot be made into Fashion-MNIST's form, said after the picture's name."""


def image_paths(spec: str) -> list[Path]:
    """A file (its name may hold a comma), a comma-separated list of files (also as Hydra writes a list,
    ``[a.png,b.png]``), a folder (its image files, sorted), or a pattern such as ``shoes/*.png`` (its files,
    sorted): quoted, ``'images=*.png'``, or as bash passes ``images=*.png`` on when no file's name begins with
    ``images=``."""
    spec = str(spec)
    if spec.startswith("[") and spec.endswith("]") and not Path(os.path.expanduser(spec)).exists():
        spec = spec[1:-1]
    paths: list[Path] = []
    whole = "," in spec and Path(os.path.expanduser(spec)).exists()  # a file or folder whose name holds a comma
    parts = [spec] if whole else spec.split(",")
    # an empty entry (images=, a trailing comma) is no file: Path("") would be the current folder, all of it
    for part in (part.strip() for part in parts if part.strip()):
        paths += _files(Path(os.path.expanduser(part)))
    if not paths:
        raise UserError(
            f"images={spec} names no image files; give a file, a comma-separated list, a folder or a pattern "
            "such as shoes/*.png."
        )
    return paths


def _files(path: Path) -> list[Path]:
    """A folder's image files (sorted; hidden ones, such as macOS's ``._shoe.png``, left out, as a pattern
    leaves them), a pattern's files (sorted), or the file itself."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not path.exists() and any(c in str(path) for c in "*?["):  # a pattern, not a file
        return sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    return [path]


def to_fashion_mnist(image: Image.Image) -> np.ndarray:
    """Any picture -> a 28x28 float32 array in [0, 1], light object on a black background (all black, or
    nearly, when it shows nothing but its background: :func:`blank`)."""
    if image.width * image.height == 0:
        raise Unreadable(f"it has no pixels ({image.width} x {image.height})")
    try:
        gray = _eight_bit(ImageOps.exif_transpose(image)).convert("L")
    except ValueError as err:  # a mode PIL cannot convert (LAB, say); else (a closed image) as it is
        if "conversion" not in str(err):
            raise
        raise Unreadable(
            f"its colour mode {image.mode} cannot be made grayscale; save it as RGB or grayscale"
        ) from None
    pixels = np.asarray(gray, dtype=np.float32)
    corners = np.array([pixels[0, 0], pixels[0, -1], pixels[-1, 0], pixels[-1, -1]])
    shade = float(np.median(corners))  # the background's (an object may reach into a corner, rarely into two)
    if np.clip(shade - pixels, 0, None).sum() > np.clip(pixels - shade, 0, None).sum():
        pixels = 255.0 - pixels  # the object is darker than its background, like a photo on white: inverted
    # the background's own shade, from its darkest corner (an object may fill the rest of the border), made black
    background = float(min(pixels[0, 0], pixels[0, -1], pixels[-1, 0], pixels[-1, -1]))
    pixels = (pixels - background) * (255.0 / (255.0 - background)) if background < 255 else pixels * 0
    pixels = np.clip(np.rint(pixels), 0, 255)
    shown = pixels > TRIM
    if shown.any() and pixels.shape != (28, 28):  # the background's margins trimmed, as Fashion-MNIST's conversion did
        rows, columns = np.flatnonzero(shown.any(axis=1)), np.flatnonzero(shown.any(axis=0))
        pixels = pixels[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    gray = Image.fromarray(pixels.astype(np.uint8), "L")
    scale = 28 / max(gray.size)
    size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(gray.resize(size, Image.LANCZOS), ((28 - size[0]) // 2, (28 - size[1]) // 2))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 8-bit values and no transparency.

    PIL's own conversion to "L" clips the grayscale modes with wider values: a 16-bit scan would be all white,
    and a float image in [0, 1] all black. A 16-bit image (``I;16``) is scaled from its full range; 32-bit
    integers and floats, whose full range is not known, from their own; a transparent value among them is kept
    as transparency. A cut-out (an alpha channel, a transparent colour) is put on a backdrop the object stands
    out from, as it would be photographed: white for a dark object, black for a light one. Its hidden colours
    would otherwise show, a black shoe on transparent black being black on black."""
    transparent = image.info.get("transparency")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise Unreadable("it holds values that are not numbers (NaN) or infinite")
        hidden = values == transparent if isinstance(transparent, int | float) else None
        if image.mode.startswith("I;16"):
            values = values / 257.0
        else:
            low, high = float(values.min()), float(values.max())
            values = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
        if hidden is None:
            return image
        image.putalpha(Image.fromarray(np.where(hidden, 0, 255).astype(np.uint8), "L"))
    if image.mode in ("RGBA", "LA", "PA") or transparent is not None:  # a cut-out
        cut_out = image.convert("RGBA")
        alpha = np.asarray(cut_out.getchannel("A"), dtype=np.float32)
        light = np.asarray(cut_out.convert("RGB").convert("L"), dtype=np.float32)
        dark = alpha.sum() == 0 or float((light * alpha).sum() / alpha.sum()) <= 127.5  # the object's own shade
        backdrop = Image.new("RGBA", image.size, "white" if dark else "black")
        return Image.alpha_composite(backdrop, cut_out).convert("RGB")
    return image


def blank(pixels: np.ndarray) -> bool:
    """Whether a picture made like Fashion-MNIST's shows nothing but its background (an empty or all-white
    picture, a cut-out that is all transparent)."""
    return float(pixels.max()) <= TRIM / 255


def read_image(file: Path) -> np.ndarray:
    """The picture in ``file``, made like Fashion-MNIST's; else one sentence naming the file."""
    try:
        with Image.open(file) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            if width * height > MAX_PIXELS:
                raise Unreadable(
                    f"it is {width} x {height} pixels, above predict's limit of {MAX_PIXELS:,} pixels; make it smaller"
                )
            return to_fashion_mnist(image)
    except Unreadable as err:
        raise UserError(f"{file} cannot be read: {err}") from None
    except Image.DecompressionBombError as err:  # PIL's own limit, hit while opening
        raise UserError(f"{file} cannot be read: it claims more pixels than PIL decodes ({err})") from err
    except UnidentifiedImageError as err:
        if file.suffix.lower() in (".npy", ".npz"):
            raise UserError(
                f"{file} cannot be read: it is a NumPy file, not a picture; give its array to "
                "lenet_exp.load(<checkpoint>).predict(numpy.load(file)) in Python"
            ) from err
        raise UserError(f"{file} cannot be read: not an image PIL can decode") from err
    except OSError as err:
        if err.errno in OPEN_ERRORS:  # the file, not its data
            raise UserError(f"{file} cannot be read: {OPEN_ERRORS[err.errno]}") from None
        raise UserError(f"{file} cannot be read: a damaged image ({type(err).__name__}: {err})") from err
    except (ValueError, SyntaxError, EOFError, MemoryError) as err:  # truncated or broken data
        raise UserError(f"{file} cannot be read: a damaged image ({type(err).__name__}: {err})") from err


def as_batch(images: Any) -> torch.Tensor:
    """``images`` as the network's input, an (N, 1, 28, 28) float tensor in [0, 1].

    ``images`` is one item or a list of them: a path (a file, a comma-separated list or a folder, as
    ``images=`` of the command) or a PIL image, made like Fashion-MNIST's first; or a tensor (or array)
    already in Fashion-MNIST's form, one image (28, 28) or (1, 28, 28) or a batch (N, 28, 28) or
    (N, 1, 28, 28), of uint8 pixels (0-255) or floats in [0, 1], given to the network as it is.
    """
    import torch

    pixels = []  # one (28, 28) float tensor per image
    for item in images if isinstance(images, list | tuple) else [images]:
        if isinstance(item, str | os.PathLike):  # a Path is one name, a folder or a pattern, never a comma list
            files = image_paths(item) if isinstance(item, str) else _files(Path(os.path.expanduser(item)))
            for file in files:
                pixels.append(torch.from_numpy(read_image(file)))
                if blank(pixels[-1].numpy()):
                    log.warning(f"{file} {BLANK}")
        elif isinstance(item, Image.Image):
            try:
                pixels.append(torch.from_numpy(to_fashion_mnist(item)))
                if blank(pixels[-1].numpy()):
                    log.warning(f"a PIL image {BLANK}")
            except (Unreadable, ValueError, OSError) as err:  # Unreadable: ours; the others: a closed image, say
                raise UserError(f"a PIL image cannot be read: {err}") from None
        elif isinstance(item, torch.Tensor | np.ndarray):
            pixels += list(_image_tensor(item if isinstance(item, torch.Tensor) else _array_tensor(item)))
        else:
            raise UserError(
                f"an image of type {type(item).__name__} cannot be read; give paths, PIL images or tensors of "
                "28x28 pixels."
            )
    if not pixels:
        raise UserError("no images were given; give paths, PIL images or tensors of 28x28 pixels.")
    return torch.stack(pixels).unsqueeze(1)


def _array_tensor(array: np.ndarray) -> torch.Tensor:
    """A NumPy array of pixels as a tensor; an array of what are not numbers (objects, strings) in one sentence."""
    import torch

    if not array.flags.writeable:  # a read-only memory map (np.load(..., mmap_mode="r")): torch warns of those
        array = np.array(array)
    try:
        return torch.as_tensor(np.ascontiguousarray(array))  # a flipped or rotated view has negative strides
    except TypeError:
        raise UserError(f"an image array of {array.dtype} is not pixels; {PIXELS}.") from None


PIXELS = "give whole numbers 0-255 or floats in [0, 1]"


def _image_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor of Fashion-MNIST-like images as (N, 28, 28) floats in [0, 1]."""
    import torch

    shape = tuple(tensor.shape)
    if shape[-2:] != (28, 28) or len(shape) > 4 or (len(shape) == 4 and shape[1] != 1):
        raise UserError(
            f"an image tensor of shape {shape} is not Fashion-MNIST's; give (28, 28), (N, 28, 28) or "
            "(N, 1, 28, 28) pixels, or paths or PIL images of any size."
        )
    tensor = tensor.detach().cpu().reshape(-1, 28, 28)
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise UserError(f"an image tensor of {tensor.dtype} is not pixels; {PIXELS}.")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.int64)  # any width: torch has no min() of 16-bit unsigned tensors
        if tensor.numel() and (tensor.min() < 0 or tensor.max() > 255):  # a 16-bit scan's values, say
            raise UserError(
                "image tensors of whole numbers must hold 0-255 pixels; scale them, or give floats in [0, 1]."
            )
        return tensor.float() / 255
    if tensor.numel() and not (tensor.isfinite().all() and tensor.min() >= 0 and tensor.max() <= 1):  # NaN too
        raise UserError("image tensors of floats must hold pixels in [0, 1]; divide 0-255 pixels by 255.")
    return tensor.float()


@dataclass
class Predictions:
    """What a model says about N images, in the order they were given."""

    classes: list[str]  # the most likely class of each image
    probabilities: torch.Tensor  # (N, number of classes), each row sums to 1; columns in the order of names
    names: list[str]  # the class names

    def top(self, k: int = 3) -> list[list[dict[str, Any]]]:
        """Per image, the ``k`` likeliest classes: ``[{"class", "probability"}, ...]``, best first."""
        check_value("top", k, "whole", 3, low=1)
        values, indices = self.probabilities.topk(min(k, self.probabilities.shape[1]), dim=1)
        return [
            [{"class": self.names[c], "probability": round(float(p), 4)} for p, c in zip(v, i, strict=True)]
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]


@dataclass
class TrainedModel:
    """A trained model read from a checkpoint (``lenet_exp.load``), ready to label pictures."""

    module: Any  # the LightningModule, in eval mode, on the CPU
    names: list[str]  # the class names, in the order of the network's outputs
    config: Any  # the run config stored in the checkpoint (a DictConfig)
    checkpoint: Path

    def predict(self, images: Any, batch_size: int = 1024) -> Predictions:
        """The class of each image and the probability of every class; ``images`` as ``as_batch`` takes them."""
        import torch

        check_value("batch_size", batch_size, "whole", 1024, low=1)
        weights = next(self.module.parameters())
        batch = as_batch(images).to(weights.device, weights.dtype)  # where and as the user put the module
        training, _ = self.module.training, self.module.eval()  # evaluation mode (batch norm, EMA), whatever it is in
        try:
            with torch.no_grad():
                probabilities = torch.cat([self.module(part).softmax(dim=1) for part in batch.split(batch_size)])
        finally:
            self.module.train(training)
        probabilities = probabilities.float().cpu()
        return Predictions([self.names[i] for i in probabilities.argmax(dim=1).tolist()], probabilities, self.names)


def load_model(ckpt_path: str | Path, trust: Sequence[str] = ()) -> TrainedModel:
    """The model in the checkpoint ``ckpt_path``, built only from allowed classes (lenet_exp's own and
    ``trust``) with weights that fit it, as eval and resume check."""
    from lenet_exp.runtime.stored_config import open_stored

    stored = open_stored(ckpt_path, trust, builds=("model",))  # it builds the model only

    import torch
    from hydra.utils import get_class

    from lenet_exp.runtime.checkpoints import rebuild

    with torch.random.fork_rng(devices=[]):  # the network's initial weights, replaced by the checkpoint's, draw
        module = rebuild(stored)  # from the caller's generator: put back (a notebook's own numbers stay its own)
    cfg = stored.config
    classes = getattr(get_class(cfg.data._target_), "classes", None) or range(cfg.model.get("num_classes", 10))
    return TrainedModel(module, [str(name) for name in classes], cfg, stored.checkpoint_path)


def predict(ckpt_path: str | Path, images: str, top: int = 3, trust: Sequence[str] = ()) -> list[dict]:
    """One result per image: ``{"image", "class", "top": [{"class", "probability"}, ...]}`` (and ``"warning"``
    for a picture that shows nothing but its background), or ``{"image", "error"}`` for a file that cannot be
    read as an image."""
    model = load_model(ckpt_path, trust)
    results: list[dict] = []
    arrays, readable = [], []
    for file in image_paths(images):
        results.append({"image": str(file)})
        try:
            arrays.append(read_image(file))
            readable.append(len(results) - 1)
            if blank(arrays[-1]):
                results[-1]["warning"] = f"{file} {BLANK}"
        except UserError as err:  # said for this file; the others are still predicted
            results[-1]["error"] = str(err)
    if arrays:
        for row, best in zip(readable, model.predict(np.stack(arrays)).top(top), strict=True):
            results[row].update({"class": best[0]["class"], "top": best})
    return results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    answer_help(argv, __doc__, __file__)
    log_to_console()
    usage = (
        "usage: python -m lenet_exp.predict ckpt_path=<file.ckpt> images=<file|a,b|folder|*.png> [format=json] [top=3] "
        "[trust=your.Class,...]"
    )
    args, _ = key_values(argv, usage, {"ckpt_path", "images", "format", "top", "trust"})
    require(args, ("ckpt_path", "images"), usage)
    if args.get("format", "text") not in ("text", "json"):
        fail(f"format={args['format']} is not known; use format=text or format=json.")
    top = exit_on_user_error(lambda: check_value("top", whole(args.get("top", 3)), "whole", 3, low=1))
    trust = names(args.get("trust"))
    results = exit_on_user_error(lambda: predict(args["ckpt_path"], str(args["images"]), top, trust))
    with output_read_to_the_end():  # predict ... | head
        for result in results:
            if args.get("format", "text") == "json":
                print(json.dumps(result), flush=True)
            elif "error" in result:
                print(f"error: {result['error']}", file=sys.stderr, flush=True)
            else:
                if "warning" in result:
                    print(f"warning: {result['warning']}", file=sys.stderr, flush=True)
                ranked = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
                print(f"{result['image']}: {result['class']}  ({ranked})", flush=True)
    if any("error" in r for r in results):
        sys.exit(1)  # the other images were predicted; the exit status says that not all were


if __name__ == "__main__":
    main()
