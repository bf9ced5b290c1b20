"""The trackers of conf/logger/ (TensorBoard in one event file per run, a CSV row per epoch, an MLflow run
in the run folder or on a server), and what every tracker is given: images, and at the end the run's settings and
final metrics.

Sending what a run kept while its MLflow server was not answering (``<run>/mlflow_unsent.jsonl``):

    python -m lenet_exp.loggers <run folder> <tracking uri>
"""

from __future__ import annotations

import base64
import contextlib
import csv
import fcntl
import hashlib
import http.client
import importlib.util
import io
import json
import logging
import os
import re
import shlex
import sqlite3
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
from PIL import Image
from pytorch_lightning.core.saving import save_hparams_to_yaml as _lightnings_hparams_yaml
from pytorch_lightning.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from lenet_exp.errors import UserError, chain, exit_on_user_error, fail, first_line, root_cause
from lenet_exp.runtime.cli import answer_help
from lenet_exp.runtime.run_folder import (
    CSV,
    CSV_HPARAMS,
    CSV_METRICS,
    EVENT_FILES,
    FINAL,
    MLFLOW_ARTIFACTS,
    MLFLOW_SENT,
    MLFLOW_STORE_DB,
    MLFLOW_STORE_LOCK,
    MLFLOW_UNSENT,
    SUMMARY,
    TENSORBOARD,
    sqlite_url,
)
from lenet_exp.runtime.writes import atomic_write

log = logging.getLogger("lenet_exp")

UNSENT = MLFLOW_UNSENT  # in the run folder: the MLflow calls a server that stopped answering was not sent

# MLflow's client retries a failed call 7 times with backoff factor 2 and waits up to 120 s for each answer, so a
# server that stopped answering held an epoch for minutes. lenet_exp's own calls get 2 retries (a few seconds where
# connections are refused) and 10 s per answer; a variable the user set wins.
SERVER_CALL_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


@contextmanager
def bounded_retries() -> Iterator[None]:
    """MLflow's client reads its retry settings from the environment at each call: set ``SERVER_CALL_LIMITS`` (those
    the user did not set) for the calls inside, and take them away after, so the user's other MLflow calls keep
    MLflow's defaults; urllib3's warnings of each retry are left out meanwhile."""
    ours = {key: value for key, value in SERVER_CALL_LIMITS.items() if key not in os.environ}
    os.environ.update(ours)
    retries = logging.getLogger("urllib3.connectionpool")  # its "Retrying (Retry(total=1...))" lines: a failure
    level = retries.level  # that lenet_exp says itself, once
    retries.setLevel(logging.ERROR)
    try:
        yield
    finally:
        retries.setLevel(level)
        for key in ours:
            os.environ.pop(key, None)


def readable_name(run_dir: str | Path) -> str:
    """A run's name for a tracker when no override names it: its folder's date and time as Hydra names run folders
    (``outputs/2026-11-29/12-00-00`` -> ``2026-11-29_12-00-00``, a sweep's job ``.../2026-11-29/12-00-00/3`` ->
    ``2026-11-29_12-00-00_3``), else the folder's own name."""
    parts = Path(run_dir).parts
    for i in range(len(parts) - 2, -1, -1):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", parts[i]) and re.fullmatch(r"\d{2}-\d{2}-\d{2}", parts[i + 1]):
            return "_".join(parts[i:])
    return Path(run_dir).name or "run"


NAME_BYTES = 200  # a folder's name may hold 255 bytes; a study's job can be named by more (its overrides)


def folder_name(name: str) -> str:
    """``name`` as a folder name: as it is, or, when longer than ``NAME_BYTES``, its beginning and a hash of the
    whole, so that the jobs of a sweep named by long overrides keep folders of their own."""
    whole = name.encode()
    if len(whole) <= NAME_BYTES:
        return name
    digest = hashlib.sha1(whole).hexdigest()[:10]
    return whole[: NAME_BYTES - len(digest) - 1].decode(errors="ignore") + "_" + digest


def at_epoch(metrics: dict[str, Any], step: int | None) -> tuple[dict[str, Any], int | None]:
    """``metrics`` and the step to log them at: the epoch (from 0) for what the module logs once per epoch (its
    ``train/``, ``val/`` and ``test/`` values, and what other callbacks log with them at an epoch's end), so that
    runs of any batch size line up. Lightning hands loggers such values with the ``epoch`` they belong to and the
    optimizer steps so far as ``step``. A callback's values logged at every step (the module logs none) keep
    Lightning's step, as do values logged with a step of their own (``LearningRateMonitor``'s, lenet_exp's final
    test), which come without ``epoch``."""
    if "epoch" not in metrics:
        return metrics, step
    values = {key: value for key, value in metrics.items() if key != "epoch"}
    return values, int(metrics["epoch"]) if an_epochs(metrics) else step


def an_epochs(metrics: dict[str, Any]) -> bool:
    """Whether Lightning hands ``metrics`` as an epoch's: with its ``epoch``, and the module's values among them."""
    return "epoch" in metrics and any(key.partition("/")[0] in ("train", "val", "test") for key in metrics)


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger with one event file per run: training, the final test and the
    HParams summary.

    ``version`` names the run's folder ``<save_dir>/<name>/<version>/`` (conf/logger/tensorboard.yaml: the run's
    overrides); empty: the run folder's date and time (``readable_name``), or no folder of its own for a run
    that began with its events in ``<save_dir>/<name>/`` (an older run resumed).

    Lightning closes the writer after fitting and after testing, and the next write starts a new
    file. TensorBoard reads a folder's files in the order of their names, which a process tells apart
    by a counter within the same second, so ``...4711.10`` sorts before ``...4711.9``. From the fourth
    run of one process on (a sweep's jobs run in one process) the final test's points were read first,
    and then dropped as out of order. Here fitting and testing end with a flush; ``close_loggers``
    closes the file once, at the end of the run (a failed run closes it at once).
    """

    def __init__(self, save_dir: str, name: str = TENSORBOARD, version: str | None = None, **kwargs: Any) -> None:
        self.by_folder = not version and not any((Path(save_dir) / name).glob(EVENT_FILES))  # named by its path
        if self.by_folder:
            version = readable_name(save_dir)
        super().__init__(save_dir, name=name, version=folder_name(version or ""), **kwargs)

    @property
    def log_dir(self) -> str:
        """Lightning's ``save_dir/name/version[/sub_dir]`` (``~`` expanded, as Lightning does), without its expansion
        of environment variables: a run folder whose path holds ``$HOME`` (or a stored ``version`` that does) had its
        events written elsewhere, outside the folder."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        parts = [self.root_dir, version, *([self.sub_dir] if isinstance(self.sub_dir, str) else [])]
        return os.path.expanduser(os.path.join(*parts))

    def resumes(self) -> None:
        """A resumed run goes on in the TensorBoard folder it began: one named by the run folder's path (no override
        names the run) is the one its ``tensorboard/`` holds, once the run folder was moved, renamed or copied since
        (named by the new path, TensorBoard showed the epochs before and after the resume as two runs)."""
        root = Path(self.root_dir)
        if not self.by_folder or (root / str(self.version)).is_dir() or not root.is_dir():
            return
        began = [folder for folder in root.iterdir() if folder.is_dir() and any(folder.glob(EVENT_FILES))]
        if len(began) == 1:
            self._version = began[0].name  # Lightning's own field for the version given to its constructor

    @rank_zero_only
    def starts_at(self, epoch: int) -> None:
        """Mark, before the fit, the first epoch this run's process logs (0, or the epochs its checkpoint holds) with
        TensorBoard's restart mark (what SummaryWriter's ``purge_step`` writes): a resumed run's earlier process,
        killed after logging an epoch but before saving its checkpoint, left that epoch's points, which TensorBoard
        then drops instead of showing them twice. (The mark of a run's first process only opens its session.) Once,
        here: the processes ddp_spawn starts open writers of their own, whose marks would drop this run's epochs."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        writer = self.experiment._get_file_writer()  # private in torch's SummaryWriter, as Lightning uses it
        writer.add_event(Event(step=epoch, session_log=SessionLog(status=SessionLog.START)))
        writer.flush()

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics(*at_epoch(metrics, step))  # by epoch, with no "epoch" curve of its own

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None) -> None:
        """Lightning's, but the HParams experiment written with the run's settings names every summary metric of
        a lenet_exp run (``hparams/<SUMMARY>``), also one this run lacks (``val_acc`` without a validation
        split): TensorBoard takes one run's experiment for all the runs in its logdir, so a run of the book's
        protocol read first hid the other runs' val_acc. ``params``: flat ``key: scalar`` settings."""
        if not metrics:
            return super().log_hyperparams(params, metrics, step)
        from torch.utils.tensorboard.summary import hparams

        self.hparams.update(params)
        # hparams.yaml: Lightning's save() writes it only where it is not yet, and its first, at the end of fitting,
        # held no settings yet
        save_hparams_to_yaml(Path(self.log_dir) / self.NAME_HPARAMS_FILE, self.hparams)
        self.log_metrics(metrics, step)
        # A setting left empty is the text None: torch leaves out a None, and TensorBoard takes the columns from one
        # run's experiment, so a sweep's job read first with model.ema_decay=null hid that column for every job.
        shown = {key: "None" if value is None else value for key, value in params.items()}
        experiment, _, _ = hparams(shown, {f"hparams/{key}": 0.0 for key in SUMMARY} | metrics)
        _, start, end = hparams(shown, metrics)
        writer = self.experiment._get_file_writer()  # private in torch's SummaryWriter, as Lightning uses it
        for summary in (experiment, start, end):
            writer.add_summary(summary, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if status != "success":
            super().finalize(status)
        elif self._experiment is not None:  # the writer, if made: the public experiment would make one now
            self.experiment.flush()
            self.save()  # hparams.yaml, as Lightning does

    @rank_zero_only
    def save(self) -> None:
        """Lightning's, which writes ``hparams.yaml`` where no file is: here through ``save_hparams_to_yaml``, so
        that a link planted at its path (a dangling one is no file) is replaced, not written through."""
        self.experiment.flush()
        hparams_file = Path(self.log_dir) / self.NAME_HPARAMS_FILE
        if Path(self.log_dir).is_dir() and not (hparams_file.is_file() and not hparams_file.is_symlink()):
            save_hparams_to_yaml(hparams_file, self.hparams)

    @rank_zero_only
    def close(self) -> None:
        super().finalize("success")


def save_hparams_to_yaml(path: Path, hparams: dict[str, Any]) -> None:
    """Lightning's ``hparams.yaml`` as Lightning writes it, but as every file of a run is written (``atomic_write``):
    Lightning's opens the path, so a link planted there by whoever made a received run folder that is resumed
    would have had the settings written over the file it points to, outside the folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:  # a folder of its own: nothing planted in it
        _lightnings_hparams_yaml(Path(scratch) / path.name, hparams)
        data = (Path(scratch) / path.name).read_bytes()
    atomic_write(path, data)


class EpochCSVLogger(CSVLogger):
    """Lightning's CSVLogger with one row per epoch in ``<save_dir>/<name>/metrics.csv``: ``epoch``
    (counted from 0, the step the module logs with) and the epoch's metrics, such as ``train/loss``,
    ``train/acc`` and ``test/acc`` (or ``val/*``); the settings go to ``hparams.yaml`` beside it.

    Lightning logs an epoch's evaluation and then its training metrics in separate calls: both land in
    the epoch's row, which is written once it has its training metrics. Another callback's values (such as
    LearningRateMonitor's ``lr-Adam``, logged by optimizer steps) land in the row of the epoch they were logged
    in (the last of them where there are several). The final test after the last
    epoch trains nothing and gets no row (it is in metrics.json). A resumed run keeps the earlier rows.
    """

    def __init__(self, save_dir: str, name: str = CSV) -> None:
        super().__init__(save_dir, name=name, version="")
        self.path = Path(self.log_dir) / CSV_METRICS
        self._rows: dict[int, dict[str, Any]] = {}
        if self.path.is_file():  # a resumed run: the epochs before it
            try:
                with open(self.path, newline="") as f:
                    rows = csv.DictReader(f)
                    self._rows = {int(row["epoch"]): {k: v for k, v in row.items() if v} for row in rows}
            except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as err:
                raise UserError(
                    f"{self.path} cannot be read as the run's CSV log ({type(err).__name__}: {err}); it is damaged: "
                    "move it out of the folder and resume again (a new one is written from the epochs to come)."
                ) from None
        self._hparams: dict[str, Any] = {}
        self._pending: dict[str, float] = {}  # other callbacks' values of the epoch in progress

    @property
    def experiment(self) -> EpochCSVLogger:
        """The logger itself: it writes its own files (Lightning's writer, made when a run starts,
        would delete the metrics.csv of the run being resumed)."""
        return self

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self._hparams.update(params)
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)  # a run that trained no step has no metrics.csv yet
        save_hparams_to_yaml(Path(self.log_dir) / CSV_HPARAMS, self._hparams)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        metrics, step = at_epoch(metrics, step)
        values = {key: float(value) for key, value in metrics.items()}
        if not all(key.partition("/")[0] in ("train", "val", "test") for key in metrics):
            # another callback's, by optimizer steps (LearningRateMonitor's lr-Adam): kept for the row of the epoch
            # the module logs next, the epoch they were logged in (a later value of one key replaces an earlier)
            self._pending.update(values)
            return
        epoch = int(step)  # the module's values: their epoch
        row = self._rows.setdefault(epoch, {})
        row.update({**self._pending, **values}, epoch=epoch)
        self._pending = {}
        self.save()

    @rank_zero_only
    def save(self) -> None:
        # The module's training metrics (train/*) are the last an epoch logs: a row with them is an epoch.
        rows = [row for _, row in sorted(self._rows.items()) if any(key.startswith("train/") for key in row)]
        if not rows:
            return
        columns = ["epoch", *sorted({key for row in rows for key in row} - {"epoch", "step"})]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, text.getvalue().encode())

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


class RunMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger, one MLflow run per run folder: on a store of its own, or on a shared MLflow
    tracking server that may stop answering while the run goes on.

    Without ``tracking_uri``: no server, the run in ``<save_dir>/mlflow.db`` (SQLite), its artifacts in
    ``<save_dir>/artifacts/``; several runs, also at the same time (the parallel jobs of a sweep), may share
    one store. With ``tracking_uri`` (``http://host:port``): the server keeps the runs and, for an
    ``mlflow server --artifacts-destination``, the artifacts; nothing is written to ``save_dir``. A server that
    stops answering during the run is told once in the log and the run goes on: what was not sent is kept in
    ``<run_dir>/mlflow_unsent.jsonl``, for ``send_unsent``.

    The run folder is the run's tag ``run_dir``; the run is named ``run_name`` (the run's overrides), else after
    its folder (``readable_name``). The experiment carries ``EXPERIMENT_TAGS``.
    Per-epoch metrics are logged with the epoch (from 0) as step; the final test after the last
    epoch is at step = the number of epochs. A resumed run (``continues``, set by ``train.build``) continues its
    folder's MLflow run; a new run gets a run of its own, also where the store holds one of a folder of the same
    path (removed since, or emptied and used again).
    """

    # MLflow 3's UI opens an experiment in the view its kind names; without the tag, in the GenAI one.
    EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}

    def __init__(
        self,
        save_dir: str,
        experiment_name: str,
        run_dir: str,
        run_name: str | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise UserError(
                "logger=mlflow needs MLflow, which is not installed: pip install 'lenet_exp[mlflow]' "
                "(or choose another logger, such as logger=csv)."
            )
        self.run_dir, self._lock_file = str(run_dir), None
        self._server = tracking_uri or None  # where calls can fail while the run goes on
        self._gone: str | None = None  # why the server stopped being called (then calls go to mlflow_unsent.jsonl)
        self._epoch, self._fitted = 0, False  # the epoch (from 1) being logged; whether fitting has ended
        self.continues = False  # whether this process continues its folder's run (resume, a requeued job)
        run_name = run_name or readable_name(self.run_dir)
        self.experiment_name, self.run_name = experiment_name, run_name
        self.artifact_location: str | None = None  # a server chooses where the artifacts go
        # Creating a store's tables is MLflow's own business: its INFO lines about it are not for users.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        if tracking_uri:
            self.check_reachable(tracking_uri)
            if self._scheme(tracking_uri) in self.DATABASES:  # which keep no files: a new experiment's artifacts
                # go to save_dir, not to MLflow's ./mlruns of whatever folder the command runs in
                artifacts = Path(os.path.expanduser(save_dir)).resolve() / MLFLOW_ARTIFACTS
                artifacts.mkdir(parents=True, exist_ok=True)
                self.artifact_location = artifacts.as_uri()
            # Else no artifact_location: the server chooses (mlflow-artifacts:, stored under --artifacts-destination).
            super().__init__(
                experiment_name=experiment_name,
                run_name=run_name,
                tracking_uri=tracking_uri,
                tags={"run_dir": self.run_dir},
            )
            return
        if Path(os.path.abspath(os.path.expanduser(save_dir))).is_relative_to(Path(os.path.abspath(run_dir)).parent):
            check_no_links(Path(os.path.expanduser(save_dir)))  # a store in the run's (or sweep's) folder: data
        store = Path(os.path.expanduser(save_dir)).resolve()
        if odd := sorted(set("?#%") & set(str(store))):
            # MLflow makes the store's folder from its URL without decoding it, and SQLite's file from it decoded:
            # either way one of them would land outside the run folder
            raise UserError(
                f"logger=mlflow keeps its store in {store}, whose path holds {' and '.join(odd)}, which MLflow reads "
                "as part of a URL; give the run (or sweep) a folder without them, or send the runs to a server "
                "with logger.mlflow.tracking_uri=http://HOST:PORT."
            )
        store.mkdir(parents=True, exist_ok=True)
        self._lock_file = store / MLFLOW_STORE_LOCK
        self.artifact_location = (store / MLFLOW_ARTIFACTS).as_uri()
        try:
            with self._store_locked():  # MLflow's client creates a new store's tables
                follow_moved_store(store, self.artifact_location)
                super().__init__(
                    experiment_name=experiment_name,
                    run_name=run_name,
                    tracking_uri=sqlite_url(store / MLFLOW_STORE_DB),
                    tags={"run_dir": self.run_dir},
                    artifact_location=self.artifact_location,
                )
        except Exception as err:
            self._check_store(err)
            raise

    def _check_store(self, err: BaseException) -> None:
        """A run's own store that SQLite cannot read (damaged, or no database at all) is one sentence."""
        cause = root_cause(err)
        damaged = ("file is not a database", "malformed")  # (not a busy, read-only or full store: as they were)
        if (
            self._lock_file is None
            or not isinstance(cause, sqlite3.DatabaseError)
            or not any(text in str(cause) for text in damaged)
        ):
            return
        store = self._lock_file.parent
        raise UserError(
            f"{store / MLFLOW_STORE_DB} cannot be opened as an MLflow store ({first_line(cause)}); it is damaged: "
            f"move the folder {store} out of the way and run the command again (a new store is made for the epochs "
            "to come; the other files of the run are kept)."
        ) from None

    REACH_TIMEOUT_S = 5  # MLflow's own client retries an unreachable server for minutes

    # what MLflow's client takes besides a server's address: a database as its store, and Databricks
    DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
    OTHER_STORES = (*DATABASES, "databricks")

    @staticmethod
    def _scheme(tracking_uri: str) -> str:
        """``postgresql`` of ``postgresql+psycopg://...``, ``databricks`` of ``databricks`` or ``databricks://p``."""
        return tracking_uri.split(":", 1)[0].split("+")[0].lower()

    @classmethod
    def check_reachable(cls, tracking_uri: str) -> None:
        """Raise one sentence unless the MLflow server at ``tracking_uri`` (http or https) answers ``/health`` and
        its API within a few seconds. Databricks and database URIs are MLflow's to check; anything else (no
        scheme, a typo of one, ``file:``, which MLflow 3 no longer writes) is refused."""
        parts = urllib.parse.urlsplit(tracking_uri)
        if cls._scheme(tracking_uri) in cls.OTHER_STORES:
            return
        if parts.scheme not in ("http", "https") or not parts.netloc:
            plain = "://" not in tracking_uri and not tracking_uri.startswith("file:")
            hint = f", such as http://{tracking_uri}" if plain else ""
            raise UserError(
                f"logger.mlflow.tracking_uri={tracking_uri} is not an MLflow server's address; give one as "
                f"http://HOST:PORT (or https://){hint}, or leave it null for a store in the run folder."
            )
        base = tracking_uri.rstrip("/")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=cls.REACH_TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            pass  # something answered: whether it is an MLflow server, its API says below
        except (OSError, ValueError, http.client.HTTPException) as err:  # refused, timed out, a bad address
            reason = getattr(err, "reason", err)
            reason = getattr(reason, "strerror", None) or reason  # "Connection refused", not "[Errno 111] ..."
            port = parts.netloc.rpartition(":")[2] if ":" in parts.netloc else ""
            raise UserError(
                f"logger.mlflow.tracking_uri={tracking_uri} cannot be reached ({reason}); start the server "
                f"(mlflow server{f' --port {port}' if port.isdigit() else ''} --backend-store-uri ... "
                "--artifacts-destination ...) or check the address."
            ) from None
        try:  # an MLflow server answers its REST API here (a wrong path after HOST:PORT answers 404)
            with urllib.request.urlopen(
                f"{base}/api/2.0/mlflow/experiments/search?max_results=1", timeout=cls.REACH_TIMEOUT_S
            ):
                pass
        except urllib.error.HTTPError as err:
            if err.code == 404:
                raise UserError(
                    f"logger.mlflow.tracking_uri={tracking_uri} answers, but not as an MLflow server (its API "
                    f"{base}/api/2.0/mlflow/ is not found); check the address: an MLflow server's is "
                    "http://HOST:PORT, with a path only where a proxy serves MLflow under one."
                ) from None
            # 401, 403, 5xx: the server is there, and MLflow's client says what it wants
        except (OSError, http.client.HTTPException):
            pass  # it answered /health a moment ago: a failure now is the run's to meet

    # Lightning's MLFlowLogger has no public way to reach its client, or to know whether its run exists, without
    # creating the run (``experiment`` and ``run_id`` do on first use), which a server that stopped answering must
    # not be asked to do: these two read its private fields, named once here.
    @property
    def _client(self) -> Any:
        return self._mlflow_client  # private field of MLFlowLogger: its MlflowClient, made in its constructor

    @property
    def _started(self) -> bool:
        return self._initialized  # private field of MLFlowLogger: whether its run was created or found

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """MLflow's client, the run created (or found) on first use; while the server is not answering, the
        client alone (lenet_exp's calls then go to mlflow_unsent.jsonl)."""
        if self._started or self._gone is not None:
            return self._client
        if self._server is None:  # a store of the run's own: its errors are faults of the run
            try:
                return self._open()
            except Exception as err:
                self._check_store(err)
                raise
        try:
            with bounded_retries():
                return self._open()
        except self._server_errors() as err:
            self._went_away(err)
            return self._client

    @property
    def run_id(self) -> str | None:
        _ = self.experiment
        return self._run_id  # private field of MLFlowLogger (its own run_id property returns it the same way)

    def _open(self) -> Any:
        """The experiment and run on first use (raising what the store or server raised)."""
        if not self._started and self._run_id is None:
            # Private field of MLFlowLogger: its constructor takes run_id, but which run this folder has is found
            # only now, under the store's lock; Lightning's ``experiment`` then continues that run.
            self._run_id = self._earlier_run()
        return super().experiment

    def _earlier_run(self) -> str | None:
        """The MLflow run of this run folder if there is one (a resume), creating the experiment if needed
        (which Lightning's logger would do too, with a warning).

        Under the local store's lock: MLflow creates an experiment by first looking and then writing.
        """
        with self._store_locked():
            return self._find_or_create()

    @contextmanager
    def _store_locked(self) -> Iterator[None]:
        """Holds the local store's lock, so that runs starting together (the parallel jobs of a sweep) do not
        both create its tables or the experiment. A server has no lock file: see ``_find_or_create``."""
        if self._lock_file is None:
            yield
            return
        with open(self._lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            yield

    def _find_or_create(self) -> str | None:
        experiment_id, run_id = find_or_create_run(
            self._client, self.experiment_name, self.run_dir, self.artifact_location, continues=self.continues
        )
        self._experiment_id = experiment_id  # private field of MLFlowLogger: else it looks the experiment up again
        return run_id

    # --- calls to the server, and what is kept when it stops answering --------------------------------------

    @staticmethod
    def _server_errors() -> tuple[type[BaseException], ...]:
        from mlflow.exceptions import MlflowException
        from requests import RequestException

        return MlflowException, RequestException, OSError

    def _call(self, send: Callable[[], Any], record: Callable[[], dict[str, Any]]) -> None:
        """``send()`` through MLflow's client; on a server, once a call failed, ``record()`` goes to the run's
        mlflow_unsent.jsonl instead, for the rest of the run."""
        if self._server is None:
            send()
            return
        if self._gone is None:
            try:
                with bounded_retries():
                    self._open()
                    send()
                return
            except self._server_errors() as err:
                self._went_away(err)
        self._keep(record())

    def _went_away(self, err: BaseException) -> None:
        """Say once which server stopped answering, and when; start the file of unsent calls."""
        if self._gone is not None:
            return
        self._gone = server_error_reason(err)
        if self._fitted:
            when = f"after epoch {self._epoch}" if self._epoch else "after training"
        else:
            when = f"at epoch {self._epoch}" if self._epoch else "before the first epoch"
        path = Path(self.run_dir) / UNSENT
        what = "failed" if self._gone.startswith("it answered HTTP") else "stopped answering"
        going = "the run goes on" if self._fitted else "training goes on"
        log.warning(
            f"MLflow server {self._server} {what} {when} ({self._gone}); {going}, and what it "
            f"was not sent is kept in {path} (to send it later: python -m lenet_exp.loggers "
            f"{shlex.quote(str(self.run_dir))} {shlex.quote(self._server)})"
        )
        self._keep(
            {
                "call": "run",
                "run_id": self._run_id,  # MLFlowLogger's private field, as in run_id; None: the run was not created yet
                "experiment_name": self.experiment_name,
                "run_name": self.run_name,
                "tags": self.tags or {},
            }
        )

    def _keep(self, call: dict[str, Any]) -> None:
        with open(Path(self.run_dir) / UNSENT, "a") as f:
            f.write(json.dumps(call) + "\n")

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any]) -> None:
        """MLflow never changes a parameter of a run: a run continued with other settings keeps the
        first values (and says so) instead of failing at its end."""
        # Lightning's private helpers, with which its own loggers flatten hyperparameters (there is no public
        # equivalent): MLflow gets the parameter names Lightning's MLFlowLogger would give it.
        params = _flatten_dict(_convert_params(params))
        self._call(partial(self._log_new_params, params), lambda: {"call": "log_params", "params": as_params(params)})

    def _log_new_params(self, params: dict[str, Any]) -> None:
        logged = self.experiment.get_run(self.run_id).data.params
        changed = sorted(key for key, value in params.items() if logged.get(key, str(value)[:250]) != str(value)[:250])
        if changed:
            log.warning(f"MLflow keeps the first values of {', '.join(changed)} (a run's parameters never change)")
        super().log_hyperparams({key: value for key, value in params.items() if key not in changed})

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        by_epoch = an_epochs(metrics)
        metrics, step = at_epoch(metrics, step)
        if by_epoch and not self._fitted:
            self._epoch = max(self._epoch, int(step) + 1)  # the epochs (from 0) the module has logged
        values = {key: float(value) for key, value in metrics.items() if not isinstance(value, str)}
        timestamp = int(time.time() * 1000)
        self._call(
            partial(super().log_metrics, metrics, step),
            lambda: {"call": "log_metrics", "step": step or 0, "timestamp": timestamp, "metrics": values},
        )

    @rank_zero_only
    def log_png(self, tag: str, image: Image.Image) -> None:
        """``image`` as the run's artifact ``<tag>.png``."""
        self._call(
            lambda: self.experiment.log_image(self.run_id, image, artifact_file=f"{tag}.png"),
            lambda: {"call": "log_image", "artifact_file": f"{tag}.png", "png": png_base64(image)},
        )

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self._fitted = True  # Lightning finalizes after fitting and after testing; lenet_exp once more at the end
        status = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED"}.get(status, status)
        if self._gone is None and not self._started:
            return  # nothing was logged: no run to end
        self._call(partial(super().finalize, status), lambda: {"call": "set_terminated", "status": status})

    def page(self) -> str | None:
        """The run's page on its server, in the UI's model-training view: MLflow 3.17's UI picks its view by its own
        GenAI / Model training switch (the ``workflowType`` of the address, else the browser's last choice, else
        GenAI), whatever the experiment's kind; None without a server, or when it stopped answering."""
        if self._server is None or self._gone is not None or not self._started:
            return None
        if urllib.parse.urlsplit(self._server).scheme not in ("http", "https"):
            return None  # a database or Databricks: no page at that address
        experiment = f"{self._server.rstrip('/')}/#/experiments/{self.experiment_id}"
        return f"{experiment}/runs/{self.run_id}?{WORKFLOW}"


# The name stored configs of earlier runs give in logger.mlflow._target_ (it ran on servers too; renamed for that).
LocalMLFlowLogger = RunMLFlowLogger

# MLflow's UI, in the view for training runs (its "Model training" switch) rather than the GenAI one.
WORKFLOW = "workflowType=machine_learning"


def check_no_links(store: Path) -> None:
    """A run's own MLflow store (its folder, ``mlflow.db``, ``artifacts/`` and what is in it) holds no symbolic
    link: SQLite and MLflow write through one, so a link planted in a received run folder that is resumed would have
    had the database or the pictures written outside the folder."""
    found = [store] if store.is_symlink() else []
    if not found and store.is_dir():
        found = [Path(top) / name for top, dirs, files in os.walk(store) for name in (*dirs, *files)]
        found = [path for path in found if path.is_symlink()]
    if found:
        raise UserError(
            f"{found[0]} is a symbolic link; a run's MLflow store is plain files in its folder, which MLflow would "
            "write through the link, outside the folder: remove the link (or copy what it names in its place)."
        )


def follow_moved_store(store: Path, artifacts: str) -> None:
    """A run's (or sweep's) own MLflow store in ``store`` that was moved or copied with its folder still names the
    folder it was made in: its experiment's artifact location, its runs' artifact URIs and ``run_dir`` tags. A
    resumed run then wrote its pictures there, outside its folder (making that folder again), and, found by no
    tag, began a second MLflow run. Those names are rewritten to the folder the store is in now (``artifacts``:
    its artifacts folder as a URI), in lenet_exp's own SQLite file, before MLflow opens it."""
    import sqlite3

    database = store / MLFLOW_STORE_DB
    if not database.is_file():
        return
    with contextlib.closing(sqlite3.connect(database, timeout=60)) as db, db:
        try:
            rows = db.execute("SELECT artifact_location FROM experiments").fetchall()
        except sqlite3.Error:  # not a store MLflow made (its own check says so once it opens it)
            return
        suffix = "/" + MLFLOW_ARTIFACTS
        moved = {
            old for (old,) in rows if old and old.startswith("file://") and old.endswith(suffix) and old != artifacts
        }
        for old in moved:
            was = Path(urllib.parse.unquote(urllib.parse.urlparse(old).path)).parent.parent  # the folder holding it
            now = str(store.parent)
            db.execute("UPDATE experiments SET artifact_location = ? WHERE artifact_location = ?", (artifacts, old))
            db.execute(
                "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) WHERE substr(artifact_uri, 1, ?) = ?",
                (artifacts, len(old) + 1, len(old), old),
            )
            db.execute(
                "UPDATE tags SET value = ? || substr(value, ?) WHERE key = 'run_dir' AND (value = ? OR "
                "substr(value, 1, ?) = ?)",
                (now, len(str(was)) + 1, str(was), len(str(was)) + 1, f"{was}/"),
            )


def find_or_create_run(
    client: Any, experiment_name: str, run_dir: str, artifact_location: str | None = None, continues: bool = True
) -> tuple[str, str | None]:
    """The id of the experiment ``experiment_name`` (created, with ``EXPERIMENT_TAGS``, if there is none; an
    existing one without a kind gets the tag too) and of its run of the folder ``run_dir`` (None: no run yet, or
    one that a new run, not ``continues``, must not continue)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(
                experiment_name, artifact_location=artifact_location, tags=RunMLFlowLogger.EXPERIMENT_TAGS
            )
            return experiment_id, None
        except MlflowException as err:
            # Another job of the sweep created it between our look and our write (on a server: no lock).
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(experiment_name)
    for key, value in RunMLFlowLogger.EXPERIMENT_TAGS.items():
        if key not in experiment.tags:  # made by an older lenet_exp, or by hand: a kind it did not say
            client.set_experiment_tag(experiment.experiment_id, key, value)
    quote = '"' if "'" in run_dir else "'"
    runs = client.search_runs([experiment.experiment_id], f"tags.run_dir = {quote}{run_dir}{quote}")
    if not runs:
        return experiment.experiment_id, None
    if not continues:  # the folder was removed (or emptied) and this is a new run in it: never the old one's
        log.info(
            f"MLflow holds a run of an earlier {run_dir} ({runs[0].info.run_id}), removed or emptied since; this new "
            "run gets an MLflow run of its own"
        )
        return experiment.experiment_id, None
    client.update_run(runs[0].info.run_id, status="RUNNING")
    return experiment.experiment_id, runs[0].info.run_id


def png_base64(image: Image.Image) -> str:
    png = io.BytesIO()
    image.save(png, format="PNG")
    return base64.b64encode(png.getvalue()).decode()


def as_params(params: dict[str, Any]) -> dict[str, str]:
    """Parameters as MLflow stores them: strings of at most 250 characters."""
    return {key: str(value)[:250] for key, value in params.items()}


def server_error_reason(err: BaseException) -> str:
    """Why a call to an MLflow server failed, in a few words (``Connection refused``, ``timed out``), from the
    exception chain that MLflow's client and requests build."""
    text = " ".join(str(e) for e in chain(err))
    if found := re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text):
        return found.group(1).strip()
    # requests' retries of a server's errors, or MLflow's own check of the status it got
    if found := re.search(r"too many (\d{3}) error responses|failed with error code (\d{3}) != \d{3}", text):
        return f"it answered HTTP {found.group(1) or found.group(2)}"
    if re.search(r"timed? ?out", text, re.IGNORECASE):
        return "timed out"
    return first_line(root_cause(err))[:300]


def send_unsent(run_dir: str | Path, tracking_uri: str) -> int:
    """Send the calls kept in ``<run_dir>/mlflow_unsent.jsonl`` to the MLflow server at ``tracking_uri`` (the run
    they belong to, found by its id or its ``run_dir`` tag, else created), then rename the file
    ``mlflow_unsent.sent.jsonl``; returns how many calls were sent. The file is data: it names no server, and its
    calls only log metrics, parameters, PNG images and a run's end."""
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    path = Path(run_dir) / UNSENT
    if not path.is_file():
        raise UserError(f"{path} does not exist: the run kept nothing unsent (give the run folder its warning named).")
    try:
        calls = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not calls or calls[0].get("call") != "run":
            raise ValueError("it does not start with its run")
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a file of unsent MLflow calls ({err}); nothing was sent.") from None
    RunMLFlowLogger.check_reachable(tracking_uri)
    client, run_id, sent = MlflowClient(tracking_uri), None, 0
    try:
        with bounded_retries():
            for call in calls:
                kind = call.get("call")
                if kind == "run":
                    run_id = call.get("run_id")
                    if run_id is None:
                        tags = {str(k): str(v) for k, v in (call.get("tags") or {}).items()}
                        experiment_id, run_id = find_or_create_run(
                            client, call["experiment_name"], tags.get("run_dir", str(run_dir))
                        )
                        if run_id is None:
                            if call.get("run_name"):
                                tags["mlflow.runName"] = str(call["run_name"])
                            run_id = client.create_run(experiment_id, tags=tags).info.run_id
                    continue
                if kind == "log_metrics":
                    metrics = [
                        Metric(str(k), float(v), int(call["timestamp"]), int(call["step"]))
                        for k, v in call["metrics"].items()
                    ]
                    client.log_batch(run_id, metrics=metrics)
                elif kind == "log_params":
                    client.log_batch(run_id, params=[Param(str(k), str(v)) for k, v in call["params"].items()])
                elif kind == "log_image":
                    artifact = str(call["artifact_file"])
                    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*\.png", artifact) or ".." in artifact.split("/"):
                        raise ValueError(f"artifact {artifact!r} is not a PNG path of a run")
                    client.log_image(
                        run_id, Image.open(io.BytesIO(base64.b64decode(call["png"]))), artifact_file=artifact
                    )
                elif kind == "set_terminated":
                    client.set_terminated(run_id, str(call["status"]))
                else:
                    raise ValueError(f"unknown call {kind!r}")
                sent += 1
    except (MlflowException, KeyError, ValueError, TypeError, OSError) as err:
        raise UserError(
            f"sending {path} to {tracking_uri} stopped after {sent} calls ({server_error_reason(err)}); "
            "fix that and send it again (what was sent is sent twice: metrics then have two points)."
        ) from None
    path.rename(path.with_name(MLFLOW_SENT))
    return sent


def log_image(logger: Logger, tag: str, image: Image.Image, step: int) -> None:
    """``image`` as a TensorBoard image, or as the MLflow artifact ``<tag>.png``; other loggers keep no images."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(tag, np.asarray(image), step, dataformats="HWC")
    elif isinstance(logger, RunMLFlowLogger):
        logger.log_png(tag, image)
    elif isinstance(logger, MLFlowLogger):
        logger.experiment.log_image(logger.run_id, image, artifact_file=f"{tag}.png")


def close_loggers(loggers: list[Logger], settings: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Gives every logger the run's settings (and MLflow the final metrics of metrics.json), then closes it."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):  # the HParams tab: the settings beside the final metrics
            summary = {f"hparams/{key}": metrics[key] for key in SUMMARY if key in metrics}
            logger.log_hyperparams(settings, summary, step=metrics["epochs"])  # the final test's step
        else:
            logger.log_hyperparams(settings)
        if isinstance(logger, MLFlowLogger):
            final = {key: metrics[key] for key in FINAL if key in metrics}
            logger.log_metrics(final, step=metrics["epochs"])
        logger.finalize("success")
        if isinstance(logger, RunTensorBoardLogger):
            logger.close()
        if isinstance(logger, RunMLFlowLogger) and (page := logger.page()):
            log.info(f"MLflow run: {page}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    answer_help(argv, __doc__, __file__)
    if len(argv) != 2 or any(arg.startswith("-") for arg in argv):
        fail("give a run folder and the server; usage: python -m lenet_exp.loggers <run folder> <tracking uri>")
    sent = exit_on_user_error(lambda: send_unsent(argv[0], argv[1]))
    print(f"sent {sent} calls to {argv[1]}; {Path(argv[0]) / UNSENT} is now {MLFLOW_SENT}")


if __name__ == "__main__":
    main()
