"""Files that are never half written and that no planted link can redirect (no torch here: the report, the
sweeper and the Hydra callbacks write through these without loading it).

A received run folder is data: whoever made it may have put a symbolic link at the path of a file
lenet_exp writes (``checkpoints/last.ckpt.tmp``, ``metrics.json.tmp``, ``evaluations.jsonl``).
Every write here creates its file itself (``O_CREAT | O_EXCL | O_NOFOLLOW``) after removing what
was at that path, so an existing file or link is never opened, and appends refuse a link.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from lenet_exp.errors import UserError

# Why writing into a folder failed, by errno: said in the sentence of a run, an evaluation or a lock
WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "the folder was removed",
    errno.EACCES: "permission denied",
    errno.EIO: "input/output error",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "a folder is where a file belongs",
    errno.ENOTDIR: "a file is where a folder belongs",
    errno.EEXIST: "a file is where a folder belongs",  # a folder made where a file stands (mkdir's exist_ok)
    errno.ENAMETOOLONG: "a name in the path is too long",
}
# What to do about a failed write, where it is not to free some space or make the folder writable
WRITE_ADVICE = {
    errno.EPERM: "make the folder and its files writable (lsattr -d shows one made immutable)",
    errno.EISDIR: "move what is in the way out of the folder",
    errno.ENOTDIR: "move what is in the way out of the folder",
    errno.EEXIST: "move what is in the way out of the folder",
    errno.ENAMETOOLONG: "give the run a folder of a shorter path",
}
NAMED = (errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST)  # the file is said too: it is one thing in the folder

NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def create_new(path: Path) -> IO[bytes]:
    """``path`` opened for writing as a file created now: a stale file or a link there is removed
    first (the link itself, never what it points to), and if one reappears the open fails."""
    path.unlink(missing_ok=True)
    try:
        return os.fdopen(os.open(path, NEW_FILE, 0o644), "wb")
    except FileExistsError as err:  # planted again between the unlink and the open
        raise UserError(f"{path} reappeared while lenet_exp was replacing it; another process writes there.") from err


def atomic_write(path: Path, data: bytes | None = None, save: Callable[[IO[bytes]], None] | None = None) -> None:
    """Write ``data`` (or let ``save`` write into the file) so that ``path`` is never half a file:
    a temporary file beside it, flushed to disk, then renamed over it (a link at ``path`` is replaced,
    not followed). On failure ``path`` is as it was and the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with create_new(tmp) as f:
            f.write(data) if save is None else save(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_append(path: Path, text: bool = True) -> IO[Any]:
    """``path`` opened for appending (created if missing), refusing a symbolic link there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise UserError(
            f"{path} is a symbolic link; lenet_exp appends only to a plain file in the run folder, so remove the link."
        ) from err
    return os.fdopen(fd, "a" if text else "ab")


class AppendLog(logging.FileHandler):
    """A log file appended to as :func:`open_append` does: a link planted at its path is refused."""

    def _open(self) -> IO[str]:
        return open_append(Path(self.baseFilename))
