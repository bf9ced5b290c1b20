"""lenet_exp: config-driven LeNet / Fashion-MNIST experiments (Lightning + Hydra).

From Python: ``lenet_exp.run(...)``, ``lenet_exp.sweep(...)`` and ``lenet_exp.load(...)`` (lenet_exp/api.py),
loaded on first use, so that ``import lenet_exp`` stays fast.
"""

import os as _os
import stat as _stat
import tempfile as _tempfile

from lenet_exp.runtime import resolvers as _resolvers  # noqa: F401  (registers ${if_multirun:...} for conf/)


def _matplotlib_folder() -> None:
    """matplotlib, which Lightning imports, keeps its settings and font cache in ~/.config/matplotlib. Where that
    cannot be made or written (``HOME=/`` in a container started as a bare user ID, a read-only home), it warns in
    every command's output and builds its font cache anew each time: a folder of this user's alone in the temporary
    folder instead, kept from one command to the next. A folder the user set (MPLCONFIGDIR) is left as it is."""
    if "MPLCONFIGDIR" in _os.environ or not hasattr(_os, "getuid"):
        return
    home = _os.path.expanduser("~")  # "~" itself where there is no home folder (HOME unset, no passwd entry)
    config = _os.environ.get("XDG_CONFIG_HOME") or (home != "~" and _os.path.join(home, ".config"))
    try:
        if config and _os.path.isabs(config):
            _os.makedirs(_os.path.join(config, "matplotlib"), exist_ok=True)
            if _os.access(_os.path.join(config, "matplotlib"), _os.W_OK):
                return
    except OSError:
        pass
    folder = _os.path.join(_tempfile.gettempdir(), f"lenet_exp-matplotlib-{_os.getuid()}")
    try:
        _os.makedirs(folder, mode=0o700, exist_ok=True)
        info = _os.lstat(folder)
    except OSError:
        return
    if _stat.S_ISDIR(info.st_mode) and info.st_uid == _os.getuid() and not info.st_mode & 0o077:  # its user's alone
        _os.environ["MPLCONFIGDIR"] = folder


_matplotlib_folder()

__all__ = ["load", "run", "sweep"]


def __getattr__(name: str):
    if name in __all__:
        from lenet_exp import api

        return getattr(api, name)
    raise AttributeError(f"module 'lenet_exp' has no attribute {name!r}")
