"""The one exception type whose message is meant for the user, not for a debugger."""


class UserError(Exception):
    """Bad input (config, files, environment). The message is one sentence saying what to do.

    The entry points print it alone, without a traceback, and exit non-zero.
    """
