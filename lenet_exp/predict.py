"""``python -m lenet_exp.predict ckpt_path=<ckpt> images=<file, a,b,c list, folder or pattern> [format=json] [top=3]
[trust=your.Class,...]``

Prints, for each image, the predicted class and the top probabilities. Any image is first made
the way Fashion-MNIST's were: grayscale; inverted when its background (the border pixels) is
light, so the object is light on dark; scaled so its longer side is 28 pixels, keeping its
aspect ratio; centred on a black 28x28 canvas; pixels / 255. A file that cannot be read (missing,
not an image, truncated, or above ``MAX_PIXELS``, 40 megapixels) is an error of its own: the others are
still predicted, and the exit status is 1.

``lenet_exp.load(ckpt).predict(images)`` (TrainedModel here) is the same code path from Python; it also
takes PIL images, and tensors already in Fashion-MNIST's form, which it gives to the network as they are.
"""

from __future__ import annotations

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
        path = Path(os.path.expanduser(part))
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif not path.exists() and any(c in str(path) for c in "*?["):  # a pattern, not a file
            paths += sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        else:
            paths.append(path)
    if not paths:
        raise UserError(
            f"images={spec} names no image files; give a file, a comma-separated list, a folder or a pattern "
            "such as shoes/*.png."
        )
    return paths


def to_fashion_mnist(image: Image.Image) -> np.ndarray:
    """Any picture -> a 28x28 float32 array in [0, 1], light object on a dark background."""
    gray = _eight_bit(ImageOps.exif_transpose(image)).convert("L")
    pixels = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127.5:  # a light background, like a photo on white: make it dark
        gray = ImageOps.invert(gray)
    scale = 28 / max(gray.size)
    size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(gray.resize(size, Image.LANCZOS), ((28 - size[0]) // 2, (28 - size[1]) // 2))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 8-bit values and no transparency. A cut-out (an alpha channel, a transparent colour) is put on
    white, as a photo on white: its hidden colours would otherwise show, a black shoe on transparent black
    being black on black. PIL's own conversion to "L" clips the grayscale modes with wider values:
    a 16-bit scan would be all white, and a float image in [0, 1] all black. A 16-bit image (``I;16``) is
    scaled from its full range; 32-bit integers and floats, whose full range is not known, from their own."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:  # a cut-out: on white, as photographed
        return Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA")).convert("RGB")
    if image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float32) / 257.0
    elif image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        values = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    else:
        return image
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def read_image(file: Path) -> np.ndarray:
    """The picture in ``file``, made like Fashion-MNIST's; else one sentence naming the file."""
    if not file.exists():
        raise UserError(f"{file} cannot be read: no such file")
    try:
        with Image.open(file) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            if width * height > MAX_PIXELS:
                raise UserError(
                    f"{file} cannot be read: it is {width} x {height} pixels, above predict's limit of "
                    f"{MAX_PIXELS:,} pixels; make it smaller"
                )
            return to_fashion_mnist(image)
    except Image.DecompressionBombError as err:  # PIL's own limit, hit while opening
        raise UserError(f"{file} cannot be read: it claims more pixels than PIL decodes ({err})") from err
    except UnidentifiedImageError as err:
        raise UserError(f"{file} cannot be read: not an image PIL can decode") from err
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as err:  # truncated or broken data
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
        if isinstance(item, str | os.PathLike):
            files = image_paths(item) if isinstance(item, str) else [Path(item)]
            pixels += [torch.from_numpy(read_image(file)) for file in files]
        elif isinstance(item, Image.Image):
            pixels.append(torch.from_numpy(to_fashion_mnist(item)))
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

    from hydra.utils import get_class

    from lenet_exp.runtime.checkpoints import rebuild

    module, cfg = rebuild(stored), stored.config
    classes = getattr(get_class(cfg.data._target_), "classes", None) or range(cfg.model.get("num_classes", 10))
    return TrainedModel(module, [str(name) for name in classes], cfg, stored.checkpoint_path)


def predict(ckpt_path: str | Path, images: str, top: int = 3, trust: Sequence[str] = ()) -> list[dict]:
    """One result per image: ``{"image", "class", "top": [{"class", "probability"}, ...]}``,
    or ``{"image", "error"}`` for a file that cannot be read as an image."""
    model = load_model(ckpt_path, trust)
    results: list[dict] = []
    arrays, readable = [], []
    for file in image_paths(images):
        results.append({"image": str(file)})
        try:
            arrays.append(read_image(file))
            readable.append(len(results) - 1)
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
                ranked = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
                print(f"{result['image']}: {result['class']}  ({ranked})", flush=True)
    if any("error" in r for r in results):
        sys.exit(1)  # the other images were predicted; the exit status says that not all were


if __name__ == "__main__":
    main()
