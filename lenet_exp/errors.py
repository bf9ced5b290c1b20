"""The one exception type whose message is meant for the user, not for a debugger."""


class UserError(Exception):
    """Bad input (config, files, environment). The message is one sentence saying what to do.

    The entry points print it alone, without a traceback, and exit non-zero.
    """


def user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind ``err``, also when Hydra's instantiate wrapped it in its own exception."""
    while err is not None and not isinstance(err, UserError):
        err = err.__cause__
    return err
