"""Console logging that coexists with Lightning's tqdm progress bar (used by conf/config.yaml)."""

import logging
import sys

from tqdm import tqdm


class TqdmLoggingHandler(logging.StreamHandler):
    """Prints each record above a running tqdm bar instead of through it: errors on stderr, the rest on
    its own stream (stdout), so that ``python -m lenet_exp > log`` still shows what went wrong."""

    errors_to_stderr = True  # errors.fail looks for this

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.ERROR else self.stream
            tqdm.write(self.format(record), file=stream)
        except Exception:
            self.handleError(record)


class NoTips(logging.Filter):
    """Drops Lightning's advertising tips ("💡 Tip: ...") from the console and the log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


def log_to_console() -> None:
    """Plain ``message`` lines on stdout for the tools that run without Hydra (eval, predict, ...).

    Call it before importing Lightning, which otherwise installs a handler of its own.
    """
    handler = TqdmLoggingHandler(sys.stdout)
    handler.addFilter(NoTips())
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler])
