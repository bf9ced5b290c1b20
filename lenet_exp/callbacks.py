"""Lightning callbacks: the epoch stopwatch, a stop kept across a resume, the book's per-epoch line, the best epoch's
checkpoint, test-set pictures, a quiet progress bar."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger
from torch import Tensor

from lenet_exp import drawing
from lenet_exp.loggers import log_image

log = logging.getLogger("lenet_exp")


class EpochTimer(Callback):
    """Wall time of every epoch (its training plus its evaluation) in ``seconds``, and the
    wall-clock time of this process's first training step in ``first_step_at``, for ``metrics.json``.
    ``seconds`` is kept in the checkpoints, so a resumed run's list holds the epochs of every process that
    trained it (``last.ckpt`` is saved after this callback's ``on_train_epoch_end``: Lightning runs the
    checkpoint callbacks last)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.first_step_at: float | None = None
        self._start = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": list(self.seconds)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A resume's checkpoint gives the epochs of the processes before it. The final test on ``best.ckpt``
        loads an earlier epoch's state too, which holds fewer epochs than this run trained: those stay."""
        stored = [float(s) for s in state_dict.get("seconds", [])]
        if len(stored) >= len(self.seconds):
            self.seconds = stored

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class KeptStop(Callback):
    """A run that a callback stopped before its last epoch (early stopping, a pruned trial, ``trainer.max_time``)
    stays stopped when its own folder's checkpoint is resumed: Lightning keeps each callback's state in
    ``last.ckpt``, not the trainer's ``should_stop``, so a run killed after that checkpoint (in its final test) would
    otherwise train on. ``resuming``: the checkpoint is this run's own (another run's, ``ckpt_path=``, starts
    training again whatever stopped that run)."""

    def __init__(self, resuming: bool) -> None:
        self.resuming, self.stopped = resuming, False
        self._trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:  # saved after the epoch's stopping callbacks (checkpoints come last)
        return {"stopped": bool(self._trainer is not None and self._trainer.should_stop)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stopped = bool(state_dict.get("stopped"))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.resuming and self.stopped:
            trainer.should_stop = True  # Lightning's fit loop then trains no epoch; the final test runs


def validated(trainer: pl.Trainer) -> bool:
    """Whether this hook follows a real evaluation of the fit's validation loop (not Lightning's sanity check)."""
    return not trainer.sanity_checking


class EpochLine(Callback):
    """Logs ``epoch 1, loss 0.5803, train acc 0.781, test acc 0.806, time 2.4 sec`` per epoch; the
    evaluation's accuracy only for an epoch that was evaluated (``trainer.check_val_every_n_epoch``).

    Lightning runs callbacks' ``on_train_epoch_end`` before the module's, where the training
    metrics are logged, so the line is written when the next epoch starts (or training ends).
    """

    def __init__(self, timer: EpochTimer) -> None:
        self.timer = timer
        self._pending: int | None = None  # the epoch whose line is still to be written
        self._timed = 0  # how many epochs the timer had measured when that epoch started
        self._validated = False  # whether the pending epoch was evaluated (else the metrics are an older epoch's)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)
        self._pending, self._timed, self._validated = trainer.current_epoch, len(self.timer.seconds), False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = self._validated or validated(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)

    def _write(self, trainer: pl.Trainer) -> None:
        epoch, self._pending = self._pending, None
        if epoch is None or len(self.timer.seconds) <= self._timed or not trainer.is_global_zero:
            return  # no epoch pending, or it did not finish (interrupted)
        m = trainer.callback_metrics
        split = getattr(trainer.datamodule, "eval_split", "val")
        evaluated = f", {split} acc {m[f'{split}/acc']:.3f}" if self._validated and f"{split}/acc" in m else ""
        log.info(
            f"epoch {epoch + 1}, loss {m['train/loss']:.4f}, "
            f"train acc {m['train/acc']:.3f}{evaluated}, time {self.timer.seconds[-1]:.1f} sec"
        )


class BestCheckpoint(ModelCheckpoint):
    """``<dirpath>/<filename>.ckpt``: the weights of the epoch with the best validation ``monitor``.

    Keeps the ``save_top_k`` best epochs (with more than one, ``filename`` needs ``{epoch}``, which counts
    from 1 like ``best_epoch`` and the epoch lines). Saves after the module's epoch-end checks, like
    ``last.ckpt``, and considers only the epochs that were validated (by the epoch's last validation, with
    ``trainer.val_check_interval`` < 1): another epoch's metrics are an older one's. In the book's protocol
    (no validation split) there is nothing to choose by, and it saves nothing.
    """

    def __init__(
        self, dirpath: str, monitor: str = "val/acc", mode: str = "max", save_top_k: int = 1, filename: str = "best"
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            mode=mode,
            save_top_k=save_top_k,
            auto_insert_metric_name=False,
            save_on_train_epoch_end=True,
        )
        self.active = True
        self.best_epoch: int | None = None  # from 1; kept in last.ckpt, so a resumed run knows it
        self._validated = False  # whether the current epoch was validated
        self._own_run = True  # whether the checkpoint being restored is one of this folder's (a resume)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_epoch": self.best_epoch}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """Before ``load_state_dict``: a resume restores a checkpoint of this folder, ``ckpt_path=`` another run's."""
        given = trainer.ckpt_path
        self._own_run = given is not None and Path(given).resolve().parent == Path(self.dirpath).resolve()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The stored paths name the folder the checkpoint was written in. A resumed run folder that was moved or
        copied since keeps its best checkpoints in its own folder: the paths are read there, never in the folder
        it came from (which may be gone, or hold another run's weights by now). A checkpoint of another run
        (``ckpt_path=``) starts this folder's choice afresh: its best epochs are that run's files."""
        stored = state_dict.get("dirpath")
        if stored and self.dirpath and stored != self.dirpath:
            state_dict = self._moved(state_dict, stored) if self._own_run else self.state_dict()
        super().load_state_dict(state_dict)
        self.best_epoch = state_dict.get("best_epoch")

    def _moved(self, state_dict: dict[str, Any], stored: str) -> dict[str, Any]:
        """``state_dict`` with the paths under ``stored`` moved to this callback's folder (and none outside it)."""

        def here(path: Any) -> str:
            inside = isinstance(path, str) and path and Path(path).parent == Path(stored)
            return str(Path(self.dirpath) / Path(path).name) if inside else ""

        moved = {
            key: here(state_dict.get(key)) for key in ("best_model_path", "kth_best_model_path", "last_model_path")
        }
        best_k = {here(path): score for path, score in state_dict.get("best_k_models", {}).items() if here(path)}
        return {**state_dict, **moved, "best_k_models": best_k, "dirpath": self.dirpath}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.active = getattr(trainer.datamodule, "eval_split", "val") == "val"

    def format_checkpoint_name(
        self, metrics: dict[str, Tensor], filename: str | None = None, ver: int | None = None, prefix: str | None = None
    ) -> str:
        """Lightning's file name, with ``{epoch}`` from 1 (Lightning's counts from 0)."""
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)  # saves nothing: this one saves at the train epoch's end
        self._validated = self._validated or validated(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.active and self._validated:
            before = self.best_model_score
            super().on_train_epoch_end(trainer, pl_module)
            if self.best_model_score is not before:  # a new best: this epoch
                self.best_epoch = trainer.current_epoch + 1


class TestImages(Callback):
    """After testing, logs a confusion matrix with class names and a grid of misclassified test images
    captioned "predicted / true": to TensorBoard as images, to MLflow as artifacts (other loggers: nothing).

    Uses the predicted classes that the module's ``test_step`` returns, and the datamodule's
    ``classes`` for the names.
    """

    def __init__(self, max_misclassified: int = 32) -> None:
        self.max_misclassified = max_misclassified
        self._targets: list[Tensor] = []
        self._preds: list[Tensor] = []
        self._wrong: list[tuple[Tensor, Tensor, Tensor]] = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._targets, self._preds, self._wrong = [], [], []

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        x, y = batch
        preds = outputs.detach()
        self._targets.append(y.cpu())
        self._preds.append(preds.cpu())
        room = self.max_misclassified - sum(len(w[0]) for w in self._wrong)
        if room > 0:
            wrong = preds != y
            self._wrong.append((x[wrong][:room].cpu(), preds[wrong][:room].cpu(), y[wrong][:room].cpu()))

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loggers = [each for each in trainer.loggers if isinstance(each, TensorBoardLogger | MLFlowLogger)]
        if not loggers or not self._targets:
            return
        if trainer.world_size > 1:  # every rank tested its own shard: put the pieces together
            pieces = [None] * trainer.world_size
            torch.distributed.all_gather_object(pieces, (self._targets, self._preds, self._wrong))
            self._targets, self._preds, self._wrong = ([x for piece in pieces for x in piece[i]] for i in range(3))
        if not trainer.is_global_zero:
            return
        names = getattr(trainer.datamodule, "classes", None) or [str(i) for i in range(pl_module.hparams.num_classes)]
        n = len(names)
        counts = torch.bincount(torch.cat(self._targets) * n + torch.cat(self._preds), minlength=n * n).view(n, n)
        step = trainer.current_epoch  # beside the final test's scalars: the number of epochs trained
        images = {"test/confusion_matrix": drawing.confusion_matrix(counts, names)}
        if self._wrong and sum(len(w[0]) for w in self._wrong):
            x, pred, true = (torch.cat(parts) for parts in zip(*self._wrong, strict=True))
            captions = [f"{names[p]} / {names[t]}" for p, t in zip(pred.tolist(), true.tolist(), strict=True)]
            images["test/misclassified"] = drawing.image_grid(x, captions)
        for logger in loggers:
            for tag, image in images.items():
                log_image(logger, tag, image, step)


class TerminalProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, shown only when stderr is a terminal, so log files and CI stay clean."""

    def __init__(self, refresh_rate: int = 20) -> None:
        super().__init__(refresh_rate=refresh_rate)
        if sys.stderr is None or not sys.stderr.isatty():  # None: started with stderr closed (2>&-)
            self.disable()

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, int | str | float]:
        """Lightning's, without the logger's version tag ``v_num`` (here: the run's overrides, long and known)."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
