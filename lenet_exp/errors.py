"""The one exception type whose message is meant for the user, not for a debugger."""

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Bad input (config, files, environment). The message is one sentence saying what to do.

    The entry points print it alone, without a traceback, and exit non-zero.
    """


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
