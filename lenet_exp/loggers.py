"""The trackers of conf/logger/ (TensorBoard in one event file per run, a CSV row per epoch, an MLflow run
in the run folder), and what every tracker is given: images, and at the end the run's settings and final
metrics."""

from __future__ import annotations

import csv
import fcntl
import http.client
import importlib.util
import io
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from lightning_fabric.loggers.logger import rank_zero_experiment
from PIL import Image
from pytorch_lightning.core.saving import save_hparams_to_yaml
from pytorch_lightning.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from lenet_exp.errors import UserError
from lenet_exp.runtime.atomic import atomic_write
from lenet_exp.runtime.run_folder import FINAL, SUMMARY

log = logging.getLogger("lenet_exp")


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger with one event file per run: training, the final test and the
    HParams summary.

    Lightning closes the writer after fitting and after testing, and the next write starts a new
    file. TensorBoard reads a folder's files in the order of their names, which a process tells apart
    by a counter within the same second, so ``...4711.10`` sorts before ``...4711.9``. From the fourth
    run of one process on (a sweep's jobs run in one process) the final test's points were read first,
    and then dropped as out of order. Here fitting and testing end with a flush; ``close_loggers``
    closes the file once, at the end of the run (a failed run closes it at once).
    """

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if status != "success":
            super().finalize(status)
        elif self._experiment is not None:
            self.experiment.flush()
            self.save()  # hparams.yaml, as Lightning does

    @rank_zero_only
    def close(self) -> None:
        super().finalize("success")


class EpochCSVLogger(CSVLogger):
    """Lightning's CSVLogger with one row per epoch in ``<save_dir>/<name>/metrics.csv``: ``epoch``
    (counted from 0, the step the module logs with) and the epoch's metrics, such as ``train/loss``,
    ``train/acc`` and ``test/acc`` (or ``val/*``); the settings go to ``hparams.yaml`` beside it.

    Lightning logs an epoch's evaluation and then its training metrics in separate calls: both land in
    the epoch's row, which is written once it has its training metrics. The final test after the last
    epoch trains nothing and gets no row (it is in metrics.json). A resumed run keeps the earlier rows.
    """

    def __init__(self, save_dir: str, name: str = "csv") -> None:
        super().__init__(save_dir, name=name, version="")
        self.path = Path(self.log_dir) / "metrics.csv"
        self._rows: dict[int, dict[str, Any]] = {}
        if self.path.is_file():  # a resumed run: the epochs before it
            with open(self.path, newline="") as f:
                self._rows = {int(row["epoch"]): {k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)}
        self._hparams: dict[str, Any] = {}

    @property
    def experiment(self) -> EpochCSVLogger:
        """The logger itself: it writes its own files (Lightning's writer, made when a run starts,
        would delete the metrics.csv of the run being resumed)."""
        return self

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self._hparams.update(params)
        save_hparams_to_yaml(Path(self.log_dir) / "hparams.yaml", self._hparams)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        epoch = int(step)  # the module logs the epoch as the step
        row = self._rows.setdefault(epoch, {})
        row.update({key: float(value) for key, value in metrics.items()}, epoch=epoch)
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


class LocalMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger on a store of its own, or on a shared MLflow tracking server.

    Without ``tracking_uri``: no server, the run in ``<save_dir>/mlflow.db`` (SQLite), its artifacts in
    ``<save_dir>/artifacts/``; several runs, also at the same time (the parallel jobs of a sweep), may share
    one store. With ``tracking_uri`` (``http://host:port``): the server keeps the runs and, for an
    ``mlflow server --artifacts-destination``, the artifacts; nothing is written to ``save_dir``.
    The run folder is the run's tag ``run_dir``.

    Per-epoch metrics are logged with the epoch (from 0) as step; the final test after the last
    epoch is at step = the number of epochs. A resumed run (same ``run_dir``) continues its MLflow run.
    """

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
        if tracking_uri:
            self.check_reachable(tracking_uri)
            # No artifact_location: the server chooses (mlflow-artifacts:, stored under --artifacts-destination).
            super().__init__(
                experiment_name=experiment_name,
                run_name=run_name or None,
                tracking_uri=tracking_uri,
                tags={"run_dir": self.run_dir},
            )
            return
        # Creating the store's tables is MLflow's own business: its INFO lines about it are not for users.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        store = Path(save_dir).expanduser().resolve()
        store.mkdir(parents=True, exist_ok=True)
        self._lock_file = store / "mlflow.lock"
        with self._store_locked():  # MLflow's client creates a new store's tables
            super().__init__(
                experiment_name=experiment_name,
                run_name=run_name or None,  # no overrides: MLflow makes up a name
                tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
                tags={"run_dir": self.run_dir},
                artifact_location=(store / "artifacts").as_uri(),
            )

    REACH_TIMEOUT_S = 5  # MLflow's own client retries an unreachable server for minutes

    @classmethod
    def check_reachable(cls, tracking_uri: str) -> None:
        """Raise one sentence unless the MLflow server at ``tracking_uri`` (http or https) answers ``/health``
        within a few seconds. Other URIs (databricks, a database) are MLflow's to check."""
        parts = urllib.parse.urlsplit(tracking_uri)
        if parts.scheme not in ("http", "https"):
            return
        try:
            with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=cls.REACH_TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            pass  # something answered: whether it is an MLflow server is for MLflow's client to say
        except (OSError, ValueError, http.client.HTTPException) as err:  # refused, timed out, a bad address
            reason = getattr(err, "reason", err)
            reason = getattr(reason, "strerror", None) or reason  # "Connection refused", not "[Errno 111] ..."
            port = parts.netloc.rpartition(":")[2] if ":" in parts.netloc else ""
            raise UserError(
                f"logger.mlflow.tracking_uri={tracking_uri} cannot be reached ({reason}); start the server "
                f"(mlflow server{f' --port {port}' if port.isdigit() else ''} --backend-store-uri ... "
                "--artifacts-destination ...) or check the address."
            ) from None

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if not self._initialized and self._run_id is None:
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
        from mlflow.exceptions import MlflowException

        client = self._mlflow_client
        experiment = client.get_experiment_by_name(self._experiment_name)
        if experiment is None:
            try:
                self._experiment_id = client.create_experiment(
                    self._experiment_name, artifact_location=self._artifact_location
                )
                return None
            except MlflowException as err:
                # Another job of the sweep created it between our look and our write (on a server: no lock).
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(self._experiment_name)
        quote = '"' if "'" in self.run_dir else "'"
        runs = client.search_runs([experiment.experiment_id], f"tags.run_dir = {quote}{self.run_dir}{quote}")
        if not runs:
            self._experiment_id = experiment.experiment_id
            return None
        client.update_run(runs[0].info.run_id, status="RUNNING")
        return runs[0].info.run_id

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any]) -> None:
        """MLflow never changes a parameter of a run: a run continued with other settings keeps the
        first values (and says so) instead of failing at its end."""
        logged = self.experiment.get_run(self.run_id).data.params
        changed = sorted(key for key, value in params.items() if logged.get(key, str(value)[:250]) != str(value)[:250])
        if changed:
            log.warning(f"MLflow keeps the first values of {', '.join(changed)} (a run's parameters never change)")
        super().log_hyperparams({key: value for key, value in params.items() if key not in changed})


def log_image(logger: Logger, tag: str, image: Image.Image, step: int) -> None:
    """``image`` as a TensorBoard image, or as the MLflow artifact ``<tag>.png``; other loggers keep no images."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(tag, np.asarray(image), step, dataformats="HWC")
    elif isinstance(logger, MLFlowLogger):
        logger.experiment.log_image(logger.run_id, image, artifact_file=f"{tag}.png")


def close_loggers(loggers: list[Logger], settings: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Gives every logger the run's settings (and MLflow the final metrics of metrics.json), then closes it."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):  # the HParams tab: the settings beside the final metrics
            summary = {f"hparams/{key}": metrics[key] for key in SUMMARY if key in metrics}
            logger.log_hyperparams(settings, summary)
        else:
            logger.log_hyperparams(settings)
        if isinstance(logger, MLFlowLogger):
            final = {key: metrics[key] for key in FINAL if key in metrics}
            logger.log_metrics(final, step=metrics["epochs"])
        logger.finalize("success")
        if isinstance(logger, RunTensorBoardLogger):
            logger.close()
