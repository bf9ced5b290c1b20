"""A run folder and a sweep folder, written down once: where every command finds and puts each file, the
names of the metrics a run records, and the sentence that says how to finish an interrupted run.

    <run>/.hydra/config.yaml    the run's composed config (resume replays it); hydra.yaml, overrides.yaml
    <run>/checkpoints/last.ckpt after every epoch; best.ckpt: the best epoch by val/acc
    <run>/metrics.json          the finished run's metrics (see METRICS)
    <run>/evaluations.jsonl     one line per lenet_exp.eval of the run's checkpoints
    <run>/error.txt             why a sweep job failed
    <run>/<job name>.log        the run's log, as Hydra names it (lenet_exp.log; resume appends to it)
    <run>/.lock                 held (flock) by the one process writing the run; holds its PID (runtime/lock.py)
    <run>/tensorboard/<version>/ the TensorBoard event files (logger=tensorboard); projector_config.pbtxt and
                                projector/: the embedding projector's files (lenet_exp/network_view.py)
    <run>/csv/metrics.csv       one row per epoch (logger=csv), hparams.yaml beside it
    <run>/mlflow/               logger=mlflow's own store: mlflow.db, mlflow.lock, artifacts/ (a sweep's: in <sweep>)
    <run>/mlflow_unsent.jsonl   what an MLflow server that stopped answering was not sent (lenet_exp/loggers.py);
                                renamed mlflow_unsent.sent.jsonl once sent

    <sweep>/<job>/              a run folder per job: 0, 1, ... (a study's: the trial's number)
    <sweep>/multirun.yaml       the sweep's config, as Hydra writes it
    <sweep>/optuna.db           a study's storage when hydra.sweeper.storage is null
    <sweep>/optimization_results.yaml  a study's best trial or Pareto front
    <sweep>/summary.csv, summary_groups.csv, summary.md, summary.png: python -m lenet_exp.report
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
HYDRA = ".hydra"
TENSORBOARD = "tensorboard"  # the TensorBoard logger's folder (its ``name``)
EVENT_FILES = "events.out.tfevents.*"  # a TensorBoard run's event files (one per process that wrote into it)
CSV = "csv"  # the CSV logger's folder (its ``name``)
CSV_METRICS = "metrics.csv"  # in it
CSV_HPARAMS = "hparams.yaml"  # beside it: the run's settings
# An MLflow store of the runs' own (logger=mlflow without a server): <run>/mlflow/ or, for a sweep, <sweep>/mlflow/.
MLFLOW_STORE_DB, MLFLOW_STORE_LOCK, MLFLOW_ARTIFACTS = "mlflow.db", "mlflow.lock", "artifacts"
MLFLOW_UNSENT = "mlflow_unsent.jsonl"
MLFLOW_SENT = "mlflow_unsent.sent.jsonl"
# A sweep folder's own files (beside its job folders).
MULTIRUN = "multirun.yaml"
STUDY_STORAGE = "optuna.db"
STUDY_RESULTS = "optimization_results.yaml"
REPORT_JOBS, REPORT_GROUPS = "summary.csv", "summary_groups.csv"
REPORT_TABLES, REPORT_PLOT = "summary.md", "summary.png"
# The embedding projector's files, in a TensorBoard run folder (beside its event files). The config's name is the one
# TensorBoard's projector looks for; the paths in it are relative to that folder.
PROJECTOR_CONFIG = "projector_config.pbtxt"
PROJECTOR = "projector"  # the folder of the three files below
PROJECTOR_FEATURES = "features.tsv"  # one row of penultimate-layer features per image
PROJECTOR_LABELS = "labels.tsv"  # a header, then one class name and test-set index per image
PROJECTOR_SPRITE = "sprite.png"  # the images, 28x28 each, in a square grid

# Every epoch's metrics as metrics.json names them (Lightning logs them as train/loss, ...). The test set's are
# only ever reported, never optimized: a sweeper or a checkpoint callback may choose by the others.
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
SELECTABLE = tuple(name for name in EPOCH_METRICS if not name.startswith("test_"))
OBJECTIVES = (*SELECTABLE, "seconds_per_epoch")  # what a study may optimize (seconds_per_epoch: in a Pareto front)
# The sweeper of a study (a job's .hydra/hydra.yaml names it as hydra.sweeper._target_).
OPTUNA_SWEEPER = "hydra_plugins.lenet_exp_optuna.sweeper.OptunaSweeper"
# What a run is compared by: the report's columns, TensorBoard's HParams metrics.
SUMMARY = ("test_acc", "val_acc", "train_loss", "seconds_per_epoch")
# The final values a tracker receives (MLflow), beside its per-epoch curves.
FINAL = (*EPOCH_METRICS, "seconds_per_epoch")


def sqlite_url(path: Path) -> str:
    """SQLAlchemy's URL of the SQLite file at ``path`` (absolute): ``%``, ``?`` and ``#`` escaped, as SQLAlchemy reads
    its database part (``my study?/optuna.db`` would otherwise be ``my study`` with the query ``/optuna.db``)."""
    escaped = str(path).replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    return f"sqlite:///{escaped}"


def sqlite_path(url: str, started_in: str | Path = ".") -> Path:
    """The file of an ``sqlite:///`` URL, absolute (a relative one from ``started_in``, by default the current
    folder): sqlite_url's inverse."""
    from urllib.parse import unquote

    return (Path(started_in) / unquote(url.removeprefix("sqlite:///"))).resolve()


def last_checkpoint(run: Path) -> Path:
    return Path(run) / CHECKPOINTS / "last.ckpt"


def best_checkpoint(run: Path) -> Path:
    return Path(run) / CHECKPOINTS / "best.ckpt"


def metrics_file(run: Path) -> Path:
    return Path(run) / "metrics.json"


def log_file(run: Path, job_name: str) -> Path:
    """The run's log, named by Hydra's job logging for the job (``hydra.job.name``: lenet_exp, or a DDP rank's)."""
    return Path(run) / f"{job_name}.log"


def lock_file(run: Path) -> Path:
    return Path(run) / ".lock"


def evaluations_file(run: Path) -> Path:
    return Path(run) / "evaluations.jsonl"


def error_file(run: Path) -> Path:
    return Path(run) / "error.txt"


def config_file(run: Path) -> Path:
    """The run's config as Hydra composed it, its interpolations unresolved (resume replays it)."""
    return Path(run) / HYDRA / "config.yaml"


def hydra_settings_file(run: Path) -> Path:
    """Hydra's own settings of the run: its job name, its folder, the sweeper and launcher."""
    return Path(run) / HYDRA / "hydra.yaml"


def overrides_file(run: Path) -> Path:
    """The run's command-line overrides, as typed."""
    return Path(run) / HYDRA / "overrides.yaml"


def as_written(path: Path) -> Any:
    """A YAML file of a run or job (its .hydra files) as plain data, its interpolations left as written: a folder
    may come from someone else, and ``${oc.env:...}`` in it must not bring this machine's environment in."""
    from omegaconf import OmegaConf

    if Path(path).is_symlink() or (Path(path).exists() and not Path(path).is_file()):  # a pipe would wait for ever
        raise ValueError(f"{path} is a symbolic link or not a plain file, which no run writes")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def value_at(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...`` of plain YAML data, or None where a key or a mapping is missing."""
    for k in keys:
        data = data.get(k) if isinstance(data, dict) else None
    return data


def csv_metrics_file(run: Path) -> Path:
    return Path(run) / CSV / CSV_METRICS


def job_folders(sweep: Path) -> list[Path]:
    """The sweep's job folders (those with a .hydra/ folder), in job-number order (then other names): its
    sub-folders, and those deeper down that a ``hydra.sweep.subdir`` with a ``/`` makes (``seed_${seed}/${lr}``,
    or ``${hydra.job.override_dirname}`` with a value such as ``val/acc``). Symbolic links are not followed,
    nothing under a job folder is searched, and a sweep folder that cannot be listed raises the OSError (a
    folder below it that cannot be listed holds no job anyone could read)."""
    with os.scandir(sweep):  # the sweep folder itself: FileNotFoundError, NotADirectoryError, PermissionError
        pass
    jobs = []
    for folder, subfolders, _ in os.walk(sweep):
        if folder != str(sweep) and HYDRA in subfolders:
            jobs.append(Path(folder))
            subfolders.clear()
        subfolders.sort()
    numbers = {job: job_number(job) for job in jobs}
    return sorted(jobs, key=lambda d: (numbers[d] is None, numbers[d] or 0, str(d)))


def job_number(job: Path) -> int | None:
    """A job's number in its sweep: its hydra.job.num as written (a study's trial: its folder's name, the trial's
    number, unique among the study's workers); its folder's name for a job whose settings cannot be read (Hydra's
    default names it so); None if neither says. A folder named otherwise (``hydra.sweep.subdir=${seed}``, or
    ``${hydra.job.override_dirname}``) is not the job's number."""
    try:
        hydra = value_at(as_written(hydra_settings_file(job)), "hydra")
    except Exception:  # noqa: BLE001  (a damaged file: its folder's name, else after the numbered ones)
        hydra = None
    number = value_at(hydra, "job", "num")
    if value_at(hydra, "sweeper", "_target_") != OPTUNA_SWEEPER and type(number) is int:
        return number
    return int(job.name) if job.name.isdigit() else None


def has_run(job: Path) -> bool:
    """Whether a run or job has trained, finished or failed: it holds a checkpoint, metrics.json or error.txt."""
    return any(file(job).is_file() for file in (metrics_file, last_checkpoint, error_file))


def run_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), else the folder it lies in."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else checkpoint.parent


_RESUME_ARGUMENTS: dict[Path, tuple[str, ...]] = {}  # run folder -> what its resume must be given again


def resume_needs(run: Path, pairs: Sequence[str]) -> None:
    """Remember the ``key=value`` pairs (a server, a folder outside ``run``) that resuming ``run`` must be given
    again, so that every resume line this process writes for it works as printed."""
    _RESUME_ARGUMENTS[Path(run).resolve()] = tuple(pairs)


def resume_hint(run: Path) -> str:
    pairs = " ".join(shlex.quote(pair) for pair in _RESUME_ARGUMENTS.get(Path(run).resolve(), ()))
    return f"resume with: {resume_command(run)}" + (f" {pairs}" if pairs else "")


def resume_command(run: Path) -> str:
    """``python -m lenet_exp.resume <run>``, the folder quoted for the shell where it needs it (a space, ...)."""
    return f"python -m lenet_exp.resume {shlex.quote(str(run))}"


# What Hydra's override grammar takes as a value without quotes: ASCII letters and digits, these signs, and spaces
# between them (not a letter such as é, nor ' ~ # ! & ...).
_PLAIN_VALUE = re.compile(r"[\w/\\+.$%*@?|:-]+( +[\w/\\+.$%*@?|:-]+)*", re.ASCII)


def override(key: str, value: Any) -> str:
    """``key=value`` as ``python -m lenet_exp`` takes it from a shell: the value in quotes for Hydra where its
    grammar needs them (a path with a letter such as é, or a quote), then the whole quoted for the shell where it
    needs that (a space), so that a command printed for the user runs as printed."""
    text = str(value)
    if _PLAIN_VALUE.fullmatch(text):
        return shlex.quote(f"{key}={text}")
    pair = f"{key}='" + text.replace("'", "\\'") + "'"
    # in double quotes for the shell where they keep it as it is: "ckpt_path='/data/été/last.ckpt'"
    return f'"{pair}"' if not set(pair) & set('"$`\\!') else shlex.quote(pair)


def kept(run: Path, epoch: int | None = None) -> str:
    """What an interrupted or failed run left to go on from, as part of a sentence."""
    last = last_checkpoint(run)
    try:  # as resume reads it: a run without checkpoints is one it refuses, also before its first epoch ended
        unkept = value_at(as_written(config_file(run)), "trainer", "enable_checkpointing") is False
    except Exception:  # noqa: BLE001  (no settings to read: the sentence below, as before)
        unkept = False
    if not last.is_file() and (epoch or unkept):  # epochs were completed (or will be), and no checkpoint kept them
        return (
            f"{run} keeps no checkpoint (the run wrote none: trainer.enable_checkpointing=false, or no checkpoint "
            "callback), so it cannot be resumed; run it again with checkpoints to be able to"
        )
    if not last.is_file() or epoch == 0:
        return f"no epoch was completed, so resuming starts it over: {resume_command(run)}"
    holds = f"epoch {epoch}" if epoch is not None else "the last completed epoch"
    return f"{last} holds {holds}; {resume_hint(run)}"
