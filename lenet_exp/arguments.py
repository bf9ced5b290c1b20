"""The values lenet_exp's data module and LightningModule refuse, checked on plain values without loading torch.

``FashionMNIST`` and ``Classifier`` call these in their constructors; the command line calls them on a run's config
before torch and Lightning load (lenet_exp.runtime.checks), so that a wrong value is one sentence at once.
"""

from __future__ import annotations

from typing import Any

from lenet_exp.errors import UserError, check_value, typed

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AUGMENTATION = "lenet_exp.augment.BatchAugment"
AUGMENT_ADVICE = (
    f"give one such as {{_target_: {AUGMENTATION}, crop_padding: 2, flip: true}} (docs/configuration.md), or "
    "null for none."
)


def check_data(
    batch_size: Any = 256, eval_batch_size: Any = 1024, val_size: Any = 0, download: Any = False, verify_md5: Any = True
) -> None:
    """``FashionMNIST``'s sizes: whole batches of at least one image, and a validation split of zero or more; its
    switches true or false."""
    check_value("data.batch_size", batch_size, "whole", 256, low=1)
    check_value("data.eval_batch_size", eval_batch_size, "whole", 1024, low=1)
    check_value("data.val_size", val_size, "whole", "0 (no validation split) or 5000", low=0)
    check_value("data.download", download, "switch")
    check_value("data.verify_md5", verify_md5, "switch")


def check_split(val_size: int, processes: int) -> None:
    """Under DDP each training process evaluates its own part of the validation split; none may be empty."""
    if 0 < val_size < processes:
        raise UserError(
            f"data.val_size={val_size} leaves some of the {processes} training processes without a validation "
            f"image; hold out at least one per process (data.val_size={processes} or more) or train with fewer."
        )


def check_model(
    lr: Any = None,
    label_smoothing: Any = 0.0,
    ema_decay: Any = None,
    compile: Any = False,
    flip_average: Any = False,
    cuda_graph: Any = True,
) -> None:
    """``Classifier``'s numbers, switches and ``compile``: a positive learning rate (None: the optimizer's own), a
    smoothing and an EMA decay in [0, 1), true or false, and true, false or a torch.compile mode."""
    check_value("model.flip_average", flip_average, "switch")
    check_value("model.cuda_graph", cuda_graph, "switch")
    if lr is not None:
        check_value("model.optimizer.lr", lr, "number", 0.001)
    check_value("model.label_smoothing", label_smoothing, "number", 0.1, low=0, high=1)
    if ema_decay is not None:
        check_value("model.ema_decay", ema_decay, "number", 0.999, low=0, high=1)
    if isinstance(compile, str) and compile not in COMPILE_MODES:
        modes = list(COMPILE_MODES)
        raise UserError(f"model.compile={typed(compile)} is not known; use true, false or one of {modes}.")


def check_augment(crop_padding: Any = 2, flip: Any = True, erase: Any = 0.0) -> None:
    """``BatchAugment``'s settings: a padding from 0 to 27 pixels around the 28-pixel image (a crop of more would
    be all padding), a flip true or false, an erased share in [0, 1)."""
    check_value("model.augment.crop_padding", crop_padding, "whole", 2, low=0, high=27)
    check_value("model.augment.flip", flip, "switch")
    check_value("model.augment.erase", erase, "number", 0.25, low=0, high=1)


def check_classes(num_classes: Any, key: str = "model.num_classes") -> None:
    """The classifier's outputs for Fashion-MNIST, whose labels are 0 to 9: at least 10."""
    check_value(key, num_classes, "whole", "10 (Fashion-MNIST's classes)", low=10)


def check_logits(logits: Any, images: int, num_classes: int) -> None:
    """``model.net``'s output for a batch of ``images`` images: one tensor of a score per class for each, (images,
    num_classes). Another shape ended in cross-entropy's own error inside a traceback (a forgotten flatten, a last
    layer of 7), and another output (a tuple of logits and features) in an AttributeError."""
    shape = getattr(logits, "shape", None)
    if shape is None:
        raise UserError(
            f"model.net gives a {type(logits).__name__} for a batch of {images} images, not a tensor; its forward "
            f"must return the logits alone, one tensor of shape ({images}, {num_classes})."
        )
    if tuple(shape) != (images, num_classes):
        raise UserError(
            f"model.net gives logits of shape {tuple(shape)} for a batch of {images} images; it must give "
            f"({images}, {num_classes}), one score per class for each image (flatten before the last layer, and "
            f"give that layer {num_classes} outputs)."
        )
