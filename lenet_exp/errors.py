"""The one exception type whose message is meant for the user, and the one check for config values."""

import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Bad input (config, files, environment). The message is one sentence saying what to do.

    The entry points print it alone, without a traceback, and exit non-zero.
    """


def check_value(key: str, value: Any, kind: str, example: Any = None, low: float = 0, high: float | None = None) -> Any:
    """Return ``value`` if it is what config key ``key`` needs, else raise one sentence that says so.

    ``kind`` is ``"whole"`` (an int >= ``low``, never a bool) or ``"number"`` (an int or float
    > ``low``, or in [``low``, ``high``) when ``high`` is given).
    """
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "whole":
        ok = numeric and isinstance(value, int) and value >= low
        must = "a positive whole number" if low == 1 else f"a whole number >= {low:g}"
    elif high is None:
        ok, must = numeric and value > low, "a positive number" if low == 0 else f"a number > {low:g}"
    else:
        ok, must = numeric and low <= value < high, f"a number in [{low:g}, {high:g})"
    if not ok:
        hint = f", such as {example}" if example is not None else ""
        raise UserError(f"{key}={value!r} must be {must}{hint}.")
    return value


def user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind ``err``, also when Hydra's instantiate wrapped it in its own exception."""
    while err is not None and not isinstance(err, UserError):
        err = err.__cause__
    return err


def exit_on_user_error(function: Callable[[], T]) -> T:
    """Run ``function``; a UserError behind what it raises ends the program with ``error: <sentence>``
    on stderr and exit status 1. Anything else is a bug and keeps its traceback."""
    try:
        return function()
    except Exception as err:
        if (cause := user_error(err)) is None:
            raise
        sys.exit(f"error: {cause}")
