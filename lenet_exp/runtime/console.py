"""Console logging that coexists with Lightning's tqdm progress bar (used by conf/config.yaml)."""

import logging
import re
import sys
import warnings
from pathlib import Path

from tqdm import tqdm


def to_log_file(message: str, folder: Path | None = None) -> None:
    """``message``, an error, into the run's log file alone (the root logger's file handlers; with ``folder``, the
    one in that folder), not on the console, which has it from elsewhere (Hydra's report, the caller's exception)."""
    record = logging.LogRecord("lenet_exp", logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and (
            folder is None or Path(handler.baseFilename).resolve().parent == Path(folder).resolve()
        ):
            handler.handle(record)


def traceback_to_log_file(folder: Path | None = None) -> None:
    """The traceback of the exception being handled (a fault of code: a network or callback of one's own, say) into
    the run's log file alone: the terminal gets it from Hydra or Python, and the log ended at the line before it."""
    import traceback

    to_log_file(f"the run failed:\n{traceback.format_exc()}", folder)


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
    """Drops Lightning's advertising tips ("💡 Tip: ...") from the console and the log file, and its
    "`Trainer.fit` stopped: `max_epochs=5` reached.": a run's epochs end there by design, and it came before the
    last epoch's line (which is written when training ends); another reason to stop (max_steps, max_time) stays.
    Also torch's internal INFO lines, which torch's own logging set-up keeps quiet once torch is imported: a command
    interrupted while torch loads printed its "FakeTensor cache stats" (at exit) above the interruption's sentence."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("torch.") and record.levelno < logging.WARNING:
            return False
        message = str(record.msg)
        return not message.startswith("💡") and not re.match(
            r"`Trainer.fit` stopped: `max_epochs=\d+` reached", message
        )


# Lightning's warnings about what lenet_exp does on purpose, hidden from every command: Lightning 2.6 calls a
# torch.utils._pytree API and (in LightningModule.all_gather, under DDP) torch.distributed.nn.functional.all_gather,
# which torch 2.14 deprecates (nothing for users to act on); resume writes into the run's
# own checkpoints/ folder and ckpt_path= continues into a new one; a machine with SLURM's client need not run under
# srun; each epoch's metrics are logged once, at its end, so Lightning's step logging interval does not apply.
ON_PURPOSE = (
    r".*isinstance\(treespec, LeafSpec\)",
    r"torch.distributed.nn.functional.all_gather is deprecated",
    r"Checkpoint directory .* exists and is not empty",
    r"The dirpath has changed",
    r"The `srun` command",
    r"The number of training batches .* is smaller than the logging interval",
)


def quiet_lightning_hints() -> None:
    for message in ON_PURPOSE:
        warnings.filterwarnings("ignore", message=message)


def log_to_console() -> None:
    """Plain ``message`` lines on stdout for the tools that run without Hydra (eval, predict, ...).

    Call it before importing Lightning, which otherwise installs a handler of its own.
    """
    quiet_lightning_hints()
    handler = TqdmLoggingHandler(sys.stdout)
    handler.addFilter(NoTips())
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler])
