"""Optuna studies for lenet_exp's Hydra sweeper (``hydra_plugins/lenet_exp_optuna``): where a study is stored,
samplers and pruners by name, the study's fixed number of trials shared by every worker, heartbeats that tell a
dead worker's trials from live ones, the hand-off of a trial to the job that trains it, and the callback with
which that job reports each epoch and stops when the pruner says so. docs/sweeps.md shows the commands.

A study of ``n_trials`` holds exactly that many trials from its start: the worker that creates it queues them
(Optuna's WAITING trials, with no parameters fixed), and every worker, however many share the storage, takes
queued ones only (Optuna's atomic WAITING -> RUNNING), so the total is exact and no number repeats.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl

from lenet_exp.errors import UserError, first_line
from lenet_exp.runtime.checks import UNBOUNDED
from lenet_exp.runtime.results import flat_metrics

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("lenet_exp")

# hydra.sweeper.sampler / .pruner: a name -> Optuna's class of that name (``*_options`` are its arguments).
SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
    "nsga2": "NSGAIISampler",
}
PRUNERS = {
    "median": "MedianPruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "none": "NopPruner",
}
TRIAL_ENV = "LENET_EXP_TRIAL"  # a job's trial, set by the sweeper through hydra.job.env_set
HEARTBEAT = "lenet_exp:heartbeat"  # a trial's system attribute: when its worker last said it is alive
TARGET = "lenet_exp:n_trials"  # the study's user attribute: how many trials it holds, once all are queued
METRICS = "lenet_exp:optimized_metric"  # the study's user attribute: the metrics its directions belong to
STORAGE_HINT = (
    "give an SQLAlchemy URL (sqlite:///study.db, postgresql+psycopg://user@host:5432/db) or journal:PATH "
    "(a journal file, for a shared file system)"
)


# --- samplers, pruners, storages -------------------------------------------------------------------------------


def make_sampler(name: str, options: dict[str, Any] | None, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` (tpe, random, gp, cmaes, qmc, nsga2) with ``options``; seeded with ``seed``."""
    import optuna

    if not isinstance(name, str) or name not in SAMPLERS:
        raise UserError(f"hydra.sweeper.sampler={name} is not known; choose one of {', '.join(SAMPLERS)}.")
    kwargs = {"seed": seed, **(options or {})} if seed is not None else dict(options or {})
    return _build(getattr(optuna.samplers, SAMPLERS[name]), kwargs, "hydra.sweeper.sampler_options")


def make_pruner(name: str, options: dict[str, Any] | None) -> optuna.pruners.BasePruner:
    """The pruner ``name`` (median, hyperband, successive_halving, none) with ``options``."""
    import optuna

    if not isinstance(name, str) or name not in PRUNERS:
        raise UserError(f"hydra.sweeper.pruner={name} is not known; choose one of {', '.join(PRUNERS)}.")
    return _build(getattr(optuna.pruners, PRUNERS[name]), dict(options or {}), "hydra.sweeper.pruner_options")


def _build(cls: type, kwargs: dict[str, Any], key: str) -> Any:
    takes = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    if unknown := [k for k in kwargs if k not in takes]:
        takes_text = f"it takes {', '.join(takes)}" if takes else f"it takes none: set {key}=null"
        raise UserError(f"{key}: {cls.__name__} has no option {unknown[0]}; {takes_text}.")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, ImportError) as err:
        raise UserError(f"{key}: {cls.__name__} refused {kwargs} ({first_line(err)}).") from None


def storage_url(storage: str | None, sweep_dir: str) -> str:
    """``hydra.sweeper.storage`` as an absolute URL: null is an SQLite file in the sweep folder; relative
    paths (``sqlite:///study.db``, ``journal:study.log``) are taken from the current folder. A file the user
    names must be a file in a folder that exists (SQLite and Optuna's journal create the file, not folders)."""
    if not storage:
        return f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"
    if storage in ("sqlite://", "sqlite:///:memory:"):
        raise UserError(
            f"hydra.sweeper.storage={storage} is a database in memory, which each job would see empty; give a "
            "file, such as sqlite:///study.db, or leave it null (optuna.db in the sweep folder)."
        )
    if storage.startswith("journal:"):
        given = storage.removeprefix("journal:")
        path = Path(given[2:] if given.startswith("//") else given).resolve()
        url = f"journal://{path}"
    elif storage.startswith("sqlite:///"):
        path = Path(storage.removeprefix("sqlite:///")).resolve()
        url = f"sqlite:///{path}"
    else:
        return storage
    if path.is_dir():
        raise UserError(f"hydra.sweeper.storage={storage} is a folder; name a file in it (a new name starts a study).")
    if not path.parent.is_dir():
        raise UserError(
            f"hydra.sweeper.storage={storage}: the folder {path.parent} does not exist; create it, or name a file "
            "in a folder that exists."
        )
    return url


def shown(url: str) -> str:
    """``url`` as logs and files may show it: without its password (also where SQLAlchemy cannot parse it)."""
    if url.startswith("journal:"):
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def open_storage(url: str, ready: bool = False) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``url`` (from storage_url), or one sentence saying why it cannot be used.
    ``ready``: a trial's job, whose worker has made and checked the database's tables (saves ~60 ms)."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal://"))
        try:
            # Optuna reads the whole journal here; it takes a last line that is not JSON for one being written,
            # so a one-line file of another program would be opened, appended to, and then unreadable.
            _check_journal(path)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise UserError(
                f"hydra.sweeper.storage=journal:{path} cannot be opened ({err.strerror}); name a file you can write."
            ) from None
        except (ValueError, KeyError, TypeError) as err:  # bytes that are not UTF-8, lines not JSON, not entries
            raise UserError(
                f"hydra.sweeper.storage=journal:{path} is not an Optuna journal ({first_line(err)}); name another "
                "file (a new name starts a study), or a study's journal file."
            ) from None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError, ProgrammingError

    try:
        dialect = make_url(url).get_dialect()
        dialect.import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise UserError(
            f"hydra.sweeper.storage={shown(url)} is not a storage lenet_exp can open; {STORAGE_HINT}."
        ) from None
    except ImportError as err:
        raise UserError(
            f"hydra.sweeper.storage={shown(url)} needs the database driver {err.name}, which is not installed: "
            "pip install 'lenet_exp[postgres]' (psycopg) or your database's driver."
        ) from None
    # Waits that end: SQLite retries a busy file for a minute (parallel jobs report at once); a server that
    # does not answer is given ten seconds.
    connect = {"sqlite": {"timeout": 60}, "postgresql": {"connect_timeout": 10}}.get(dialect.name, {})
    engine: dict[str, Any] = {"connect_args": connect}
    if dialect.name != "sqlite":
        # A database server: a connection per operation, closed after it, instead of a pool per storage kept open
        # until the storage is collected. Every worker, every job and every heartbeat opens a storage, and a
        # shared study's server allows 100 clients by default (a loaded test run ran out of them).
        from sqlalchemy.pool import NullPool

        engine["poolclass"] = NullPool
    tries = 5
    while True:
        tries -= 1
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine, skip_compatibility_check=ready, skip_table_creation=ready
            )
            if dialect.name == "sqlite":
                serialize_sqlite(storage.engine)
            return storage
        except (IntegrityError, ProgrammingError, OperationalError) as err:
            # Workers starting at once on an empty database race to create its tables and stamp its version
            # (SQLite: "table ... already exists"; PostgreSQL: a duplicate table or row): the loser opens it again,
            # and then finds them made.
            raced = not isinstance(err, OperationalError) or "already exists" in str(err)
            if not (raced and tries):
                if isinstance(err, OperationalError):
                    raise UserError(_unreachable(url, err)) from None
                raise
            time.sleep(random.uniform(0.1, 0.5))
        except optuna.exceptions.StorageInternalError as err:
            # A commit that failed while opening (Optuna stamps its version row each time): seen once from every
            # job of a loaded machine's PostgreSQL study for some seconds; try again, then say what the server said.
            if not tries:
                raise UserError(_unreachable(url, err.__cause__ or err)) from None
            time.sleep(random.uniform(0.5, 2.0))
        except RuntimeError as err:  # Optuna's word for a schema of an older release
            raise UserError(
                f"the study's storage {shown(url)} was written by an older Optuna ({first_line(err)}); upgrade it "
                f"with: optuna storage upgrade --storage '{shown(url)}'"
            ) from None
        except Exception as err:  # SQLAlchemy's errors of the connection and their kin: the server or file is not there
            raise UserError(_unreachable(url, err)) from None


def _check_journal(path: Path) -> None:
    """A ValueError unless the journal file at ``path`` begins as Optuna's do: a JSON object with an ``op_code``,
    one a line. An empty or new file is a new journal; a first line still being written (no newline yet) need
    only begin as every entry does."""
    if not path.is_file():
        return
    with path.open("rb") as file:
        first = file.readline(1 << 20)
    if first.endswith(b"\n"):
        try:
            entry = json.loads(first)
        except ValueError:  # bytes that are not UTF-8, text that is not JSON
            entry = None
        if isinstance(entry, dict) and "op_code" in entry:
            return
    elif not first or first.startswith(b"{"):
        return
    raise ValueError("its first line is not an entry of one")


def _unreachable(url: str, err: BaseException) -> str:
    reason = re.sub(r"^[(].*?[)] ", "", first_line(err))  # without SQLAlchemy's "(module.ErrorClass)"
    if url.startswith("sqlite:"):  # a file on this machine: there is no server to start
        return (
            f"hydra.sweeper.storage={shown(url)} cannot be opened as an SQLite database ({reason}); name another "
            "file (a new name starts a study), or a study's database file."
        )
    return (
        f"the study's storage {shown(url)} cannot be reached ({reason}); start its server, or check "
        "hydra.sweeper.storage."
    )


def serialize_sqlite(engine: Any) -> None:
    """Every transaction on an SQLite file takes its write lock when it begins (BEGIN IMMEDIATE), as
    SQLAlchemy's documentation shows: Python's sqlite3 would otherwise run a transaction's reads unlocked,
    and two workers could both see a queued trial WAITING and both take it."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(connection: Any, record: Any) -> None:
        connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # the connections made before the listeners get them too


# --- the study: opened, its trials queued, claimed, kept alive -----------------------------------------------


def open_study(
    url: str,
    name: str,
    directions: list[str],
    metrics: list[str],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> tuple[optuna.Study, optuna.storages.BaseStorage, bool]:
    """The study ``name`` in ``url`` (created when new): the study, its storage, and whether this call created
    it. A stored study with other directions or metrics is refused in one sentence."""
    import optuna

    storage = open_storage(url)
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, sampler=sampler, pruner=pruner, directions=directions
        )
        study.set_user_attr(METRICS, metrics)
        with warnings.catch_warnings():  # experimental since Optuna 3.2; it names the dashboard's axes
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metrics)
        return study, storage, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    _same_objectives(study, url, directions, metrics)
    return study, storage, False


def check_stored(url: str, name: str, directions: list[str], metrics: list[str]) -> None:
    """The storage can be opened, and a study ``name`` already in it has the same directions and metrics."""
    import optuna

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return  # nothing stored yet (the default file is made in the sweep folder, which does not exist yet)
    storage = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    except KeyError:  # not there yet: the sweeper creates it
        return
    _same_objectives(study, url, directions, metrics)


def _same_objectives(study: optuna.Study, url: str, directions: list[str], metrics: list[str]) -> None:
    stored = [d.name.lower() for d in study.directions]
    stored_metrics = study.user_attrs.get(METRICS, metrics)
    if stored != directions or stored_metrics != metrics:
        raise UserError(
            f"the study {study.study_name} in {shown(url)} was created to {'/'.join(stored)} "
            f"{'/'.join(stored_metrics)}, not to {'/'.join(directions)} {'/'.join(metrics)}; give another "
            "hydra.sweeper.study_name, or the study's own direction and optimized_metric."
        )


def queue_trials(study: optuna.Study, n_trials: int, created: bool, stalled_s: float = 30.0) -> int:
    """Makes the study hold ``n_trials`` trials (queued ones included); returns how many it holds.

    The worker that created the study queues them; the others wait until it has (or, should it add none
    for ``stalled_s`` seconds, as when it was killed, queue the rest themselves). A later command with a
    larger ``n_trials`` adds the difference (start one worker with it before the others)."""
    if not created:
        held, since = -1, time.monotonic()
        while TARGET not in study.user_attrs and time.monotonic() - since < stalled_s:
            now_held = len(study.get_trials(deepcopy=False))
            if now_held != held:
                held, since = now_held, time.monotonic()
            time.sleep(0.2)
    held = len(study.get_trials(deepcopy=False))
    for _ in range(n_trials - held):
        study.enqueue_trial({})
    total = max(n_trials, held)
    if study.user_attrs.get(TARGET) != total:
        study.set_user_attr(TARGET, total)
    return total


def claim(study: optuna.Study, storage: optuna.storages.BaseStorage) -> optuna.Trial | None:
    """One of the study's queued trials, now this worker's (RUNNING), or None when none is left. Taking a
    trial is Optuna's atomic WAITING -> RUNNING: two workers never take the same one."""
    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for queued in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, queued.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue  # another worker took it first
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
        return optuna.Trial(study, trial_id)
    return None


class Heartbeat:
    """Says every ``interval`` seconds, in the study, that this worker's running trials are alive (a time in
    each trial's system attributes), from a thread of its own while the jobs run."""

    def __init__(self, storage: optuna.storages.BaseStorage, interval: float) -> None:
        self.storage, self.interval, self.trials = storage, interval, set[int]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lenet_exp-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            for trial_id in list(self.trials):
                try:
                    self.storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
                except Exception:  # finished meanwhile, or the storage is busy: the next beat tries again
                    pass


def fail_stale(study: optuna.Study, storage: optuna.storages.BaseStorage, grace_period: float) -> list[int]:
    """Marks failed the running trials whose worker has said nothing for ``grace_period`` seconds (it was
    killed, or its machine went away); returns their numbers. Any worker may do it, and each trial once."""
    import optuna
    from optuna.trial import TrialState

    study_id, now, failed = storage.get_study_id_from_name(study.study_name), time.time(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.system_attrs.get(HEARTBEAT, trial.datetime_start.timestamp() if trial.datetime_start else now)
        if now - beat <= grace_period:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        reason = f"its worker stopped (no heartbeat for {now - beat:.0f} s, more than grace_period={grace_period:g})"
        try:
            storage.set_trial_user_attr(trial_id, "error", reason)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial.number)
                log.warning(f"trial {trial.number} of the study marked failed: {reason}")
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker, or the trial's own, finished it first
    return failed


# --- a trial's job ---------------------------------------------------------------------------------------------


@dataclass
class TrialHandoff:
    """Which trial a job trains, set by the sweeper for that job alone (``hydra.job.env_set``). Where the
    study is, its name and its pruner the job reads from its own Hydra settings (``open_job_study``), so
    that no URL (nor a password in one) goes through the job's overrides and the launchers' log lines."""

    trial_id: int
    number: int

    def override(self) -> str:
        return f"++hydra.job.env_set.{TRIAL_ENV}={self.trial_id}:{self.number}"

    @classmethod
    def from_env(cls) -> TrialHandoff | None:
        found = re.fullmatch(r"(\d+):(\d+)", os.environ.get(TRIAL_ENV, ""))
        return cls(int(found[1]), int(found[2])) if found else None


def open_job_study(handoff: TrialHandoff) -> optuna.Trial:
    """The job's trial, in the study its Hydra settings name (``hydra.sweeper``; the default SQLite file is in
    the sweep folder, the parent of the job's folder), with the study's pruner."""
    import optuna
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    sweeper = hydra.sweeper
    url = storage_url(sweeper.get("storage"), str(Path(hydra.runtime.output_dir).parent))
    pruner = make_pruner(sweeper.get("pruner", "none"), sweeper.get("pruner_options"))
    # The job only reports; the sampler of the worker that asked chose its parameters.
    study = optuna.load_study(
        study_name=sweeper.study_name,
        storage=open_storage(url, ready=True),
        sampler=optuna.samplers.RandomSampler(),
        pruner=pruner,
    )
    return optuna.Trial(study, handoff.trial_id)


def trial_callbacks(optimized_metric: Any) -> list[pl.Callback]:
    """The pruning callback when this process trains a trial of a study (else nothing)."""
    handoff = TrialHandoff.from_env()
    if handoff is None:
        return []
    from hydra.core.hydra_config import HydraConfig

    metric = optimized_metric if isinstance(optimized_metric, str) else None  # several objectives: no pruning
    return [PruneTrial(handoff, metric, str(HydraConfig.get().sweeper.get("study_name")))]


class PruneTrial(pl.Callback):
    """Reports ``metric`` (a val_* metric) to the job's trial after every epoch, and stops training after an
    epoch once the study's pruner says the trial cannot catch up. Rank 0 talks to the study; every rank stops.
    A study that cannot be reached never stops the training: the job goes on unpruned and says so."""

    def __init__(self, handoff: TrialHandoff, metric: str | None, study: str) -> None:
        self.handoff, self.metric, self.study = handoff, metric, study
        self.pruned_after: int | None = None
        self._trial: optuna.Trial | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero and self.metric and self._trial is None:
            try:
                self._trial = open_job_study(self.handoff)
            except Exception as err:  # a node that cannot reach the database: train on, unpruned
                log.warning(f"trial {self.handoff.number} cannot reach its study ({first_line(err)}); no pruning")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.metric:
            return
        prune, epoch = False, trainer.current_epoch + 1
        if trainer.is_global_zero and self._trial is not None:
            value = flat_metrics(trainer.callback_metrics).get(self.metric)
            if value is not None and math.isfinite(value):
                prune = self._report(value, epoch)
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune and (epoch < trainer.max_epochs or trainer.max_epochs == UNBOUNDED):
            self.pruned_after, trainer.should_stop = epoch, True
            log.info(f"trial {self.handoff.number} pruned after epoch {epoch}: its {self.metric} cannot catch up")

    def _report(self, value: float, epoch: int) -> bool:
        """Report ``value``; whether to prune. Any failure of the study means no pruning (every rank still
        takes part in the broadcast that follows, so none waits for a rank 0 that raised)."""
        import optuna

        try:
            self._trial.report(value, step=epoch)
            return self._trial.should_prune()
        except optuna.exceptions.UpdateFinishedTrialError:  # marked failed by a worker that took us for dead
            log.warning(f"trial {self.handoff.number} is no longer running in the study; training goes on alone")
        except Exception as err:  # the database went away, a lock held too long
            log.warning(f"trial {self.handoff.number} cannot report epoch {epoch} ({first_line(err)}); no pruning")
        self._trial = None
        return False

    def record(self) -> dict[str, Any]:
        """metrics.json's ``trial``: the study, the trial's number, and whether (after which epoch) it was pruned."""
        return {"study": self.study, "number": self.handoff.number, "pruned_after": self.pruned_after}


# --- the search space, the jobs' overrides, the results --------------------------------------------------------


@dataclass
class SearchPlan:
    """What the sweeper settled before any trial: the storage's URL, sampler, pruner, metrics, the search
    space (Optuna distributions by override key) and the overrides every job shares."""

    url: str
    sampler: Any
    pruner: Any
    metrics: list[str]
    space: dict[str, Any]
    fixed: list[str]


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")


def override_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (quoted when a plain word would read as something else)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in ("null", "true", "false", "nan", "inf"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def summary(study: optuna.Study, metrics: list[str], url: str) -> dict[str, Any]:
    """optimization_results.yaml: the whole study (every worker's trials), its best trial or Pareto front."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    out: dict[str, Any] = {
        "study_name": study.study_name,
        "storage": shown(url),
        "optimized_metric": metrics[0] if len(metrics) == 1 else metrics,
        "directions": [d.name.lower() for d in study.directions],
        "n_trials": len(trials),
        "states": dict(sorted(states.items())),
        "epochs_run": sum(t.user_attrs.get("epochs", 0) for t in trials),
        "epochs_saved_by_pruning": sum(t.user_attrs.get("epochs_saved", 0) for t in trials),
    }
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if len(metrics) == 1:
        best = study.best_trial if complete else None
        out.update(
            best_trial=best.number if best else None,
            best_value=best.value if best else None,
            best_params=dict(best.params) if best else {},
        )
    else:
        out["best_trials"] = [
            {"number": t.number, "values": dict(zip(metrics, t.values, strict=True)), "params": dict(t.params)}
            for t in (study.best_trials if complete else [])
        ]
    return out
