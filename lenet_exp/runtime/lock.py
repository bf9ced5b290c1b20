"""One writer per run folder: an exclusive ``flock`` on ``<run>/.lock``, which holds the holder's PID.

The kernel releases the lock when the process ends, however it ends (a SIGKILL, a requeued cluster
job), so a lock is never stale: the next process that finds it free is the folder's only writer.
Lightning starts DDP ranks 1.. as copies of the command, with ``LOCAL_RANK`` (or, under SLURM,
``SLURM_PROCID``) set: those are part of the run that holds the lock and never take it themselves.

``eval`` takes no run lock: it only appends one line to ``evaluations.jsonl``, under a short lock of
that file (:func:`lenet_exp.runtime.results.append_jsonl`), so it may run beside a training.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lenet_exp.errors import UserError
from lenet_exp.runtime.run_folder import lock_file
from lenet_exp.runtime.writes import WRITE_ERRORS

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
_held: dict[Path, int] = {}  # run folder -> the open lock file of this process


def launched_rank() -> bool:
    """Whether this process is a DDP rank other than 0 (started by rank 0's launcher, or by srun)."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in RANK_VARIABLES)


class FolderInUse(UserError):
    """The run folder's lock is held by another process (its PID: ``holder``)."""

    def __init__(self, run: Path, holder: str) -> None:
        self.run, self.holder = run, holder
        super().__init__(
            f"{run} is in use by another lenet_exp process (PID {holder}), and a run folder has one writer at a "
            "time; wait for it to end (or stop it), then try again."
        )


def acquire(run_dir: str | Path) -> bool:
    """Hold ``run_dir``'s lock until :func:`release` or the end of this process; True if it was taken
    now (False: this process already holds it, or is a DDP rank of the run that does)."""
    run = Path(run_dir).resolve()
    if run in _held or launched_rank():
        return False
    path = lock_file(run)
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UserError(
                f"{path} is a symbolic link, so this run folder cannot be locked; remove the link."
            ) from err
        if err.errno in WRITE_ERRORS:
            raise UserError(
                f"{run} cannot be written ({WRITE_ERRORS[err.errno]}), and a run is written in its own folder; make "
                "it writable, or copy the folder to a place that is and give the copy."
            ) from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise FolderInUse(run, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[run] = fd
    return True


def release(run_dir: str | Path) -> None:
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the last descriptor releases the flock


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """``run_dir`` locked for this block (unless this process already held it: then it stays held)."""
    taken = acquire(run_dir)
    try:
        yield
    finally:
        if taken:
            release(run_dir)
