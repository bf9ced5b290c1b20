"""Faults during a run (Ctrl-C, SIGTERM, a full disk, a folder gone or read-only): one sentence
that says what was kept and how to go on. What is on disk stays loadable: checkpoints and
metrics.json are replaced atomically."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lenet_exp.errors import INTERRUPTED, UserError, chain, user_error
from lenet_exp.runtime.run_folder import kept
from lenet_exp.runtime.writes import WRITE_ERRORS

log = logging.getLogger("lenet_exp")


@contextmanager
def resumable(trainer: pl.Trainer, run_dir: Path, testing: bool = False) -> Iterator[None]:
    """Lightning answers Ctrl-C and SIGTERM with SystemExit, after its on_exception hooks: in fitting, or
    (``testing``) in the final test, after every epoch was checkpointed."""
    try:
        yield
    except SystemExit as stop:
        during = "the final test" if testing else f"epoch {trainer.current_epoch + 1}"
        log.error(f"interrupted during {during}; {kept(run_dir, trainer.current_epoch)}")
        raise SystemExit(interrupt_status(stop)) from stop


def interrupt_status(stop: SystemExit) -> int:
    """The exit status of a command Lightning stopped with SystemExit: 143 for SIGTERM, else 130 (Ctrl-C)."""
    return 143 if isinstance(stop, SIGTERMException) else INTERRUPTED


# torch.save reports a failed write as a RuntimeError from its zip writer, without an errno
TORCH_WRITE_FAILED = ("file write failed", "PytorchStreamWriter failed", "unexpected pos")


def write_fault(err: BaseException | None) -> str | None:
    """Why writing failed, when ``err`` (or what caused it) is a file-system fault."""
    for cause in chain(err):
        if isinstance(cause, OSError) and cause.errno in WRITE_ERRORS:
            return WRITE_ERRORS[cause.errno]
        if isinstance(cause, RuntimeError) and any(text in str(cause) for text in TORCH_WRITE_FAILED):
            return "a file could not be written: the disk may be full"
    return None


@contextmanager
def file_system_faults(run_dir: Path) -> Iterator[None]:
    """A failed write into the run folder becomes one sentence that names the folder. TensorBoard's event writer
    writes in a thread of its own, whose failed write Python would print as a thread's traceback before that
    sentence: the writer raises it again in the run's next write to it, which the sentence then names."""
    previous = threading.excepthook

    def quiet_writer(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and write_fault(args.exc_value) is not None:
            return
        previous(args)

    threading.excepthook = quiet_writer
    try:
        yield
    except Exception as err:
        reason = write_fault(err)
        if reason is None or user_error(err) is not None:
            raise
        raise UserError(
            f"writing into {run_dir} failed ({reason}); free some space or make the folder writable; {kept(run_dir)}"
        ) from err
    finally:
        threading.excepthook = previous
