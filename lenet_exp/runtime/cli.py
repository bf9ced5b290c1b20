"""The arguments of the commands other than training (eval, predict, resume, report): ``--help``, and
``key=value`` pairs; a wrong one ends the command through ``errors.fail``, with the usage line."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lenet_exp.errors import fail

CLOSED_OUTPUT = 141  # the exit status of a command whose reader stopped early (`| head`): 128 + SIGPIPE, as Unix's


@contextmanager
def output_read_to_the_end() -> Iterator[None]:
    """What the block prints goes to a reader that may stop early (``... | head -3``): the command then ends
    quietly, as Unix tools do, not with Python's BrokenPipeError traceback."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # what is still buffered goes nowhere, so that Python's own flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(CLOSED_OUTPUT)


def answer_help(argv: list[str], doc: str | None, source: str) -> None:
    """``-h`` or ``--help``: print the command's docstring (its usage, then what it does) and exit 0. Under
    ``python -OO``, which drops docstrings, it is read from the command's ``source`` file."""
    if any(arg in ("-h", "--help") for arg in argv):
        if doc is None:
            import ast
            from pathlib import Path

            doc = ast.get_docstring(ast.parse(Path(source).read_text(encoding="utf-8")), clean=False)
        with output_read_to_the_end():
            print((doc or "").strip().replace("``", ""))
        sys.exit(0)


def key_values(
    argv: list[str], usage: str, keys: set[str], prefix: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The arguments named in ``keys`` (their values as the strings given: a path with spaces, ``...`` or
    YAML's special characters is a path, not YAML), and those starting with ``prefix`` (such as ``data.``)
    as they are. Anything else ends the program, naming it, with the usage line."""
    passed = [a for a in argv if prefix and a.startswith(prefix)]
    mine = [a for a in argv if a not in passed]
    wrong = next((a for a in mine if "=" not in a or a.startswith("=")), None)
    if wrong is not None:
        fail(f"{wrong} is not a key=value argument; {usage}")
    args = dict(a.split("=", 1) for a in mine)
    unknown = sorted(set(args) - keys)
    if unknown:
        fail(f"{unknown[0]} is not an argument of this command; {usage}")
    return args, passed


def require(args: dict[str, Any], keys: tuple[str, ...], usage: str) -> None:
    missing = [key for key in keys if key not in args]
    if missing:
        fail(f"{missing[0]}= is missing; {usage}")


def whole(value: Any) -> Any:
    """``"3"`` as 3 (for check_value to accept); anything else as it is (for check_value to refuse)."""
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def names(value: Any) -> list[str]:
    """``trust=a.B,c.D`` (also written as Hydra writes a list, ``trust=[a.B,c.D]``, or a YAML list) as a list of
    names."""
    if value in (None, ""):
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [name for item in items if (name := str(item).strip().strip("[]").strip())]  # each trust=[...] given
