"""Console logging that coexists with Lightning's tqdm progress bar (used by conf/config.yaml)."""

import logging

from tqdm import tqdm


class TqdmLoggingHandler(logging.StreamHandler):
    """Prints each record above a running tqdm bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


class NoTips(logging.Filter):
    """Drops Lightning's advertising tips ("💡 Tip: ...") from the console and the log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")
