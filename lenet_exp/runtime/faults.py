"""Faults during a run (Ctrl-C, SIGTERM, a full disk, a folder gone or read-only, memory run out): one sentence
that says what was kept and how to go on. What is on disk stays loadable: checkpoints and
metrics.json are replaced atomically."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lenet_exp.errors import INTERRUPTED, TERMINATED, UserError, chain, user_error
from lenet_exp.runtime.run_folder import kept
from lenet_exp.runtime.writes import NAMED, WRITE_ADVICE, WRITE_ERRORS

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
    return TERMINATED if isinstance(stop, SIGTERMException) else INTERRUPTED


# torch.save reports a failed write as a RuntimeError from its zip writer, without an errno
TORCH_WRITE_FAILED = ("file write failed", "PytorchStreamWriter failed", "unexpected pos")


def write_fault(err: BaseException | None) -> str | None:
    """Why writing failed, when ``err`` (or what caused it) is a file-system fault."""
    for cause in chain(err):
        if isinstance(cause, OSError) and cause.errno in WRITE_ERRORS:
            where = cause.filename2 or cause.filename  # (a rename's: its target)
            at = f": {where}" if cause.errno in NAMED and where else ""
            return WRITE_ERRORS[cause.errno] + at
        if isinstance(cause, RuntimeError) and any(text in str(cause) for text in TORCH_WRITE_FAILED):
            return "a file could not be written: the disk may be full"
    return None


def write_advice(err: BaseException | None) -> str:
    """What to do about the file-system fault behind ``err``: move what is in the way, make a file writable, ...;
    by default, free some space or make the folder writable."""
    code = next((c.errno for c in chain(err) if isinstance(c, OSError) and c.errno in WRITE_ERRORS), None)
    return WRITE_ADVICE.get(code, "free some space or make the folder writable")


def memory_fault(err: BaseException | None) -> str | None:
    """What ran out, when ``err`` (or what caused it) is a failed allocation: torch's allocators' RuntimeError
    (``torch.OutOfMemoryError`` on CUDA is one) or Python's MemoryError."""
    for cause in chain(err):
        text = str(cause)
        if isinstance(cause, MemoryError) or (
            isinstance(cause, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
        ):
            size = re.search(r"allocate (\d+ bytes|[\d.]+ [KMGT]iB)", text)
            where = "GPU memory" if "CUDA" in text else "memory"
            return where + (f" (it asked for {size[1]} more)" if size else "")
    return None


@contextmanager
def machine_faults(run_dir: Path) -> Iterator[None]:
    """A failed write into the run folder, or memory running out, becomes one sentence that names the folder and
    what it keeps. TensorBoard's event writer writes in a thread of its own, whose failed write Python would print
    as a thread's traceback before that sentence: the writer raises it again in the run's next write to it, which
    the sentence then names."""
    previous = threading.excepthook

    def quiet_writer(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and write_fault(args.exc_value) is not None:
            return
        previous(args)

    threading.excepthook = quiet_writer
    try:
        yield
    except Exception as err:
        if user_error(err) is not None:
            raise
        if (reason := write_fault(err)) is not None:
            raise UserError(f"writing into {run_dir} failed ({reason}); {write_advice(err)}; {kept(run_dir)}") from err
        if (memory := memory_fault(err)) is not None:
            raise UserError(
                f"the run ran out of {memory}; lower data.batch_size or data.eval_batch_size, or free the memory "
                f"other processes hold; {kept(run_dir)}"
            ) from err
        raise
    finally:
        threading.excepthook = previous
