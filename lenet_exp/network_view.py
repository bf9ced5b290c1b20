"""Inside the network, in TensorBoard: what a run writes beyond its curves and images.

Per epoch (the epoch, from 0, as the step, like every other curve): histograms of every parameter and of its
gradient and of every activation module's outputs, and per layer the mean absolute gradient and, for sigmoid and
tanh layers, the share of saturated outputs (for ReLU layers: of dead units), all measured on one fixed batch of
training images. Once per run: the plain net's
graph. After the final test: a precision-recall curve per class, and the penultimate layer's features of the first
test images for the embedding projector.

A projector config in a run folder is data: ``read_projector_config`` refuses one that names a file outside the
folder it lies in. Check a folder someone sent before opening TensorBoard on it:

    python -m lenet_exp.network_view <folder>
"""

from __future__ import annotations

import copy
import logging
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor, nn

from lenet_exp.errors import UserError, exit_on_user_error, fail, first_line, typed
from lenet_exp.runtime.cli import answer_help
from lenet_exp.runtime.run_folder import (
    EVENT_FILES,
    PROJECTOR,
    PROJECTOR_CONFIG,
    PROJECTOR_FEATURES,
    PROJECTOR_LABELS,
    PROJECTOR_SPRITE,
)
from lenet_exp.runtime.writes import atomic_write

log = logging.getLogger("lenet_exp")

# A sigmoid output below or above these is saturated: its gradient is at most 0.0475, a fifth of its largest. For
# tanh, the same fifth: outside -0.9..0.9 (tanh(x) = 2 sigmoid(2x) - 1).
SATURATED = {nn.Sigmoid: (0.05, 0.95), nn.Tanh: (-0.9, 0.9)}
# The layers of the per-layer gradient chart. torch's base class of Conv1d/2d/3d (and of BatchNorm1d/2d/3d below)
# is private; it is the one class their isinstance checks share.
WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)
BOUNDED = tuple(SATURATED)  # activations whose saturation is measured
RECTIFIED = (nn.ReLU, nn.ReLU6)  # activations whose dead units are counted
# Activations that are neither (GELU, SiLU, LeakyReLU, ...): histograms of their outputs only. torch's activation
# modules, but for the ones that make a distribution or hold an attention layer.
NOT_ACTIVATIONS = (nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d, nn.MultiheadAttention)


def _activation(module: nn.Module) -> bool:
    return type(module).__module__ == nn.modules.activation.__name__ and not isinstance(module, NOT_ACTIVATIONS)


# The activations' histograms from the first 64 probe images: the same shape at half the callback's cost (a
# histogram of conv1's outputs for all 256 is 0.9 million values).
HISTOGRAM_IMAGES = 64
HISTOGRAM_BINS = 64  # TensorBoard draws 30; its default (bins="tensorflow") stores ~10x more bytes per histogram
# Scalar tags, one per layer under each prefix; each prefix is one chart of the Custom Scalars tab.
CHARTS = {
    "grad_mean_abs": "mean |gradient| of the weights, by layer",
    "saturated": "share of saturated sigmoid (or tanh) outputs, by layer",
    "dead": "share of dead ReLU units, by layer",
}


def _has(net: nn.Module, kinds: tuple[type, ...]) -> bool:
    return any(isinstance(module, kinds) for module in net.modules())


def layer_names(net: nn.Module) -> dict[nn.Module, str]:
    """Readable names in depth order: conv1, conv2, linear1, ... for convolutions and linear layers, bn1, ... for
    batch norms, and each activation named after the convolution or linear layer it follows."""
    counts: Counter[str] = Counter()
    names: dict[nn.Module, str] = {}
    last = "input"
    for qualified, module in net.named_modules():
        kind = (
            "conv"
            if isinstance(module, nn.modules.conv._ConvNd)
            else "linear"
            if isinstance(module, nn.Linear)
            else "bn"
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
            else None
        )
        if kind is not None:
            counts[kind] += 1
            names[module] = f"{kind}{counts[kind]}"
            last = names[module] if kind != "bn" else last
        elif _activation(module) and not any(True for _ in module.parameters(recurse=False)):
            names[module] = last  # (PReLU, whose weight is charted, keeps its own name)
        elif any(True for _ in module.parameters(recurse=False)):
            names[module] = qualified
    return names


class NetworkView(Callback):
    """TensorBoard's Histograms, Distributions, Graphs, PR Curves and Projector tabs, and per-layer curves.

    Every ``every_n_epochs`` epochs (and after the last; 0: never) at the epoch's end, on the trained net
    (``pl_module.net``) and the first ``probe_images`` training images, in training mode (batch norm uses the
    batch's statistics; its running statistics are put back, and nothing is updated): the gradients of the mean
    cross-entropy, computed here and not read from ``.grad``, so that the values are the same with any
    ``steps_per_call``, under DDP (rank 0 computes and writes) and with a compiled net. Scalars per layer:
    ``grad_mean_abs/<layer>`` (mean |dL/dW|), ``saturated/<layer>`` (share of sigmoid outputs outside
    0.05..0.95, of tanh outputs outside -0.9..0.9), ``dead/<layer>`` (share of ReLU units that are 0 for every
    probe image). With ``histograms``:
    ``weights/<param>``, ``gradients/<param>`` and ``activations/<layer>``.

    With ``graph``, once per run, the plain net's graph for one 28x28 image. After the final test (the tested
    weights): with ``pr_curves``, ``pr/<class>`` from the test set's class probabilities; with
    ``projector_images`` > 0, the penultimate layer's features (the last linear layer's input) of that many
    first test images, their class names and a sprite of the images, in ``<tensorboard run>/projector/``.

    Writes only to TensorBoard loggers; without one it does nothing.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        histograms: bool = True,
        probe_images: int = 256,
        graph: bool = True,
        pr_curves: bool = True,
        projector_images: int = 1000,
    ) -> None:
        for key, value in (
            ("every_n_epochs", every_n_epochs),
            ("probe_images", probe_images),
            ("projector_images", projector_images),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"callbacks.network_view.{key}={typed(value)} must be a whole number >= 0, such as 1.")
        self.every_n_epochs, self.histograms, self.probe_images = every_n_epochs, histograms, probe_images
        self.graph, self.pr_curves, self.projector_images = graph, pr_curves, projector_images
        self._probe: tuple[Tensor, Tensor] | None = None
        self._hook: Any = None
        self._probs: list[Tensor] = []
        self._labels: list[Tensor] = []

    @staticmethod
    def _writers(trainer: pl.Trainer) -> list[Any]:
        if not trainer.is_global_zero:
            return []
        return [each.experiment for each in trainer.loggers if isinstance(each, TensorBoardLogger)]

    @staticmethod
    def _log_dirs(trainer: pl.Trainer) -> list[Path]:
        return [Path(each.log_dir) for each in trainer.loggers if isinstance(each, TensorBoardLogger)]

    # -- once per run: the chart layout and the graph ---------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run writes a new event file into the same TensorBoard run: what an earlier process of the run
        # wrote there once is not written again (TensorBoard warns of a second graph and keeps one)
        writers = [w for w in self._writers(trainer) if len(list(Path(w.log_dir).glob(EVENT_FILES))) < 2]
        if not writers:
            return
        net = _plain_net(pl_module)
        # the charts this run fills: none without probes, saturation with sigmoids, dead units with ReLUs
        probed = bool(self.every_n_epochs and self.probe_images)
        filled = {"grad_mean_abs": True, "saturated": _has(net, BOUNDED), "dead": _has(net, RECTIFIED)}
        charts = {title: ["Multiline", [f"{tag}/.*"]] for tag, title in CHARTS.items() if probed and filled[tag]}
        layout = {"inside the network": charts} if charts else {}
        for writer in writers:
            if layout:
                writer.add_custom_scalars(layout)
            if self.graph:
                # A copy on the CPU, in eval mode: tracing runs the net once, which must not move batch-norm
                # statistics; the plain net, never a compiled or graph-captured one.
                shown = copy.deepcopy(net).cpu().eval()
                dtype = next(shown.parameters()).dtype
                try:
                    with warnings.catch_warnings():  # torch.jit.trace's deprecation: add_graph's, not the user's
                        warnings.simplefilter("ignore", FutureWarning)
                        writer.add_graph(shown, torch.zeros(1, 1, 28, 28, dtype=dtype))
                except Exception as err:  # a net torch.jit.trace cannot follow: the run goes on without its picture
                    log.warning(f"callbacks.network_view: the net's graph could not be traced ({first_line(err)})")

    # -- per epoch: weights, gradients, activations of a fixed batch --------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._writers(trainer) or not self.every_n_epochs or not self.probe_images:
            return
        dataset = trainer.train_dataloader.dataset
        x, y = _first(dataset, min(self.probe_images, len(dataset)))
        dtype = next(_plain_net(pl_module).parameters()).dtype
        self._probe = x.to(pl_module.device, dtype), y.to(pl_module.device)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        due = self.every_n_epochs and ((epoch + 1) % self.every_n_epochs == 0 or last)
        writers = self._writers(trainer)
        if not due or not writers or self._probe is None:
            return
        net = _plain_net(pl_module)
        scalars, histograms = measure(net, layer_names(net), *self._probe)
        # Computed once for every writer; a NaN epoch (refused by the module right after) gets no histograms
        shown = histograms if self.histograms else {}
        fields = [(tag, histogram(values)) for tag, values in shown.items() if torch.isfinite(values).all()]
        for writer in writers:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, epoch)
            for tag, field in fields:
                writer.add_histogram_raw(tag, **field, global_step=epoch)

    # -- after the final test: PR curves and the projector ------------------------------------------------------

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._probs, self._labels = [], []
        if self.pr_curves and self._log_dirs(trainer):  # on every rank: each holds a shard of the test set

            def keep(module: nn.Module, args: Any, output: Tensor) -> None:
                self._probs.append(output.detach().float().softmax(1))

            # The module's own output, as test_step computes it (with EMA, flip averaging): nothing is run twice.
            self._hook = pl_module.register_forward_hook(keep)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._hook is not None:
            self._labels.append(batch[1])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._hook is None:
            return
        self._hook.remove()
        self._hook = None
        probs, labels = torch.cat(self._probs).cpu(), torch.cat(self._labels).cpu()
        self._probs, self._labels = [], []
        if trainer.world_size > 1:  # every rank tested its own shard
            pieces: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(pieces, (probs, labels))
            probs, labels = (torch.cat([piece[i] for piece in pieces]) for i in range(2))
        names = _class_names(trainer, probs.shape[1])
        for writer in self._writers(trainer):
            for c, name in enumerate(names):
                writer.add_pr_curve(f"pr/{name.replace('/', '_')}", labels == c, probs[:, c], trainer.current_epoch)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.projector_images or not self._writers(trainer):
            return
        loader = trainer.test_dataloaders
        dataset = (loader[0] if isinstance(loader, list | tuple) else loader).dataset
        x, y = _first(dataset, min(self.projector_images, len(dataset)))
        features = _penultimate(_evaluated_net(pl_module), x.to(pl_module.device))
        if features is None:
            log.info("callbacks.network_view: the net has no linear layer, so the projector shows nothing")
            return
        names = _class_names(trainer, int(y.max()) + 1)
        for log_dir in self._log_dirs(trainer):
            write_projector(log_dir, features, [names[i] for i in y.tolist()], x)


def histogram(values: Tensor, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """The fields of TensorBoard's histogram of ``values`` (``add_histogram_raw``): ``bins`` equal bins from the
    smallest value to the largest, empty bins at either end left out, as ``add_histogram`` stores them. Computed
    with torch (in float64, on the CPU): the callback's epoch-end work takes about 22 ms, against 33-84 ms
    through ``add_histogram``'s NumPy (2-core CPU, 2026-12-05)."""
    flat = values.detach().flatten().cpu().double()
    low, high = flat.min().item(), flat.max().item()
    lo, hi = (low - 0.5, high + 0.5) if low == high else (low, high)  # one value: one bin around it, like NumPy's
    counts = torch.histc(flat, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    filled = counts.nonzero().flatten()
    first, last = int(filled[0]), int(filled[-1]) + 1
    # TensorBoard keeps each bin's right edge only: an empty bin in front keeps the leftmost edge.
    return {
        "min": low,
        "max": high,
        "num": flat.numel(),
        "sum": flat.sum().item(),
        "sum_squares": flat.square().sum().item(),
        "bucket_limits": edges[first : last + 1].tolist(),
        "bucket_counts": [0.0, *counts[first:last].tolist()],
    }


def _plain_net(pl_module: pl.LightningModule) -> nn.Module:
    """The trained network as written (``Classifier.net``), never its compiled or graph-captured form."""
    return getattr(pl_module, "net", pl_module)


def _evaluated_net(pl_module: pl.LightningModule) -> nn.Module:
    """The network the final test evaluated: the weight average with ``ema_decay``, else the trained net."""
    ema = getattr(pl_module, "ema", None)
    return ema.module if ema is not None else _plain_net(pl_module)


def _first(dataset: Any, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` images (n,1,28,28) and labels of a dataset, in its own order."""
    if hasattr(dataset, "__getitems__"):
        return dataset.__getitems__(list(range(n)))
    return torch.utils.data.default_collate([dataset[i] for i in range(n)])


def _class_names(trainer: pl.Trainer, n: int) -> list[str]:
    names = getattr(trainer.datamodule, "classes", None)
    return list(names) if names and len(names) >= n else [str(i) for i in range(n)]


def measure(
    net: nn.Module, names: dict[nn.Module, str], x: Tensor, y: Tensor
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """The per-layer scalars (``grad_mean_abs/``, ``saturated/``, ``dead/``) and the tensors of the histograms
    (``weights/``, ``gradients/``, ``activations/``) of ``net`` on the probe images ``x`` with labels ``y``."""
    grads, outputs = _probe(net, names, x, y)
    scalars: dict[str, float] = {}
    histograms: dict[str, Tensor] = {}
    for module, name in names.items():
        for param_name, param in module.named_parameters(recurse=False):
            grad = grads.get(param)
            histograms[f"weights/{name}.{param_name}"] = param.detach()
            if grad is not None:
                histograms[f"gradients/{name}.{param_name}"] = grad
                if param_name == "weight" and isinstance(module, WEIGHTED):
                    scalars[f"grad_mean_abs/{name}"] = grad.abs().mean().item()
    for name, (module, out) in outputs.items():
        histograms[f"activations/{name}"] = out[:HISTOGRAM_IMAGES]
        if isinstance(module, BOUNDED):
            low, high = next(bounds for kind, bounds in SATURATED.items() if isinstance(module, kind))
            scalars[f"saturated/{name}"] = ((out < low) | (out > high)).float().mean().item()
        elif isinstance(module, RECTIFIED):  # a unit (channel x position) is dead when it is 0 for every image
            scalars[f"dead/{name}"] = (out.flatten(1) <= 0).all(0).float().mean().item()
    return scalars, histograms


def _probe(
    net: nn.Module, names: dict[nn.Module, str], x: Tensor, y: Tensor
) -> tuple[dict[nn.Parameter, Tensor], dict[str, tuple[nn.Module, Tensor]]]:
    """The gradients of the mean cross-entropy of (x, y) with respect to every parameter, and the outputs of the
    activation modules, in training mode; the net's weights, ``.grad`` and batch-norm statistics stay as they were."""
    outputs: dict[str, tuple[nn.Module, Tensor]] = {}
    handles = []
    for module, name in names.items():
        if _activation(module):

            def keep(m: nn.Module, args: Any, out: Tensor, name: str = name) -> None:
                outputs[name] = (m, out.detach())

            handles.append(module.register_forward_hook(keep))
    buffers = {key: value.clone() for key, value in net.named_buffers()}
    params = [p for p in net.parameters() if p.requires_grad]
    was_training = net.training
    try:
        net.train()
        with torch.enable_grad():
            loss = F.cross_entropy(net(x), y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for key, value in net.named_buffers():
                value.copy_(buffers[key])
        net.train(was_training)
    return {p: g for p, g in zip(params, grads, strict=True) if g is not None}, outputs


@torch.no_grad()
def _penultimate(net: nn.Module, x: Tensor, batch: int = 1024) -> Tensor | None:
    """The input of the net's last linear layer (N, features) for images x, in eval mode; None without one."""
    last = next((m for m in reversed(list(net.modules())) if isinstance(m, nn.Linear)), None)
    if last is None:
        return None
    kept: list[Tensor] = []
    handle = last.register_forward_pre_hook(lambda m, args: kept.append(args[0].detach().flatten(1).float().cpu()))
    was_training = net.training
    try:
        net.eval()
        dtype = next(net.parameters()).dtype
        for i in range(0, len(x), batch):
            net(x[i : i + batch].to(dtype))
    finally:
        handle.remove()
        net.train(was_training)
    return torch.cat(kept)


# -- the projector's files ------------------------------------------------------------------------------------------


def write_projector(log_dir: Path, features: Tensor, labels: list[str], images: Tensor) -> None:
    """``<log_dir>/projector/``: features.tsv (N rows), labels.tsv (a header, then N class names
    and indices in the test set) and sprite.png
    (the N 28x28 images in a square grid), and ``<log_dir>/projector_config.pbtxt`` naming them by paths
    relative to ``log_dir``, so the run folder can be moved. Each file is created anew (a link there is replaced,
    never followed)."""
    from google.protobuf import text_format
    from PIL import Image
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
    from torchvision.utils import make_grid

    folder = Path(log_dir) / PROJECTOR
    if folder.is_symlink():
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join("\t".join(f"{v:.4g}" for v in row) for row in features.tolist()) + "\n"
    atomic_write(folder / PROJECTOR_FEATURES, text.encode())
    # Two columns with a header (the projector takes a header only with several): color by class, find an image.
    rows = [f"{name}\t{i}" for i, name in enumerate(labels)]
    atomic_write(folder / PROJECTOR_LABELS, ("class\ttest image\n" + "\n".join(rows) + "\n").encode())
    side = int(np.ceil(np.sqrt(len(images))))
    grid = make_grid(images.float().cpu(), nrow=side, padding=0)[0]  # (side*28, side*28) in [0, 1]
    square = torch.zeros(side * images.shape[-2], side * images.shape[-1])
    square[: grid.shape[0], : grid.shape[1]] = grid
    png = Image.fromarray((square * 255).round().clamp(0, 255).byte().numpy(), mode="L")
    atomic_write(folder / PROJECTOR_SPRITE, save=lambda f: png.save(f, format="PNG", optimize=True))
    config = ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = "penultimate features of the first test images"
    embedding.tensor_path = f"{PROJECTOR}/{PROJECTOR_FEATURES}"
    embedding.metadata_path = f"{PROJECTOR}/{PROJECTOR_LABELS}"
    embedding.sprite.image_path = f"{PROJECTOR}/{PROJECTOR_SPRITE}"
    embedding.sprite.single_image_dim.extend([images.shape[-1], images.shape[-2]])
    atomic_write(Path(log_dir) / PROJECTOR_CONFIG, text_format.MessageToString(config).encode())


def read_projector_config(path: Path) -> Any:
    """The ``ProjectorConfig`` in the file ``path``, refused (UserError) where any file it names lies outside the
    folder that holds it: TensorBoard would read and serve that file to whoever opens the Projector tab."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    path = Path(path)
    try:
        config = text_format.Parse(path.read_text(), ProjectorConfig())
    except (text_format.ParseError, UnicodeDecodeError, OSError) as err:
        raise UserError(
            f"{path} is not a TensorBoard projector config ({err}); TensorBoard would not show it."
        ) from None
    named = [
        ("model_checkpoint_path", config.model_checkpoint_path),
        ("model_checkpoint_dir", config.model_checkpoint_dir),
    ]
    for e in config.embeddings:
        named += [
            ("tensor_path", e.tensor_path),
            ("metadata_path", e.metadata_path),
            ("bookmarks_path", e.bookmarks_path),
            ("sprite.image_path", e.sprite.image_path),
        ]
    home = path.parent.resolve()
    for key, value in named:
        if value and (
            Path(value).is_absolute() or value.startswith("~") or not (home / value).resolve().is_relative_to(home)
        ):
            raise UserError(
                f"{path} names {key}={value}, a file outside its folder {path.parent}; a run folder is data and "
                "its projector may show only its own files. Remove that file before opening TensorBoard here."
            )
    return config


def check_projector_configs(folder: Path) -> int:
    """Every projector config under ``folder`` read with ``read_projector_config``; returns how many there are."""
    if not Path(folder).is_dir():  # a typo would otherwise read as a folder that passed
        raise UserError(f"{folder} is not a folder; give the run, sweep or outputs folder TensorBoard is to show.")
    configs = sorted(Path(folder).rglob(PROJECTOR_CONFIG))
    for config in configs:
        read_projector_config(config)
    return len(configs)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    answer_help(argv, __doc__, __file__)
    if len(argv) != 1 or argv[0].startswith("-"):
        fail("give one folder; usage: python -m lenet_exp.network_view <folder>")
    found = exit_on_user_error(lambda: check_projector_configs(Path(argv[0])))
    print(f"{found} projector configs under {argv[0]} name only files inside their own folders")


if __name__ == "__main__":
    main()
