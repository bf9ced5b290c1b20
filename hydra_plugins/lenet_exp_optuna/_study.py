"""A study as its workers share it: opened once per sweep (checked before the sweep folder exists, then
created or joined), its fixed number of trials queued, claimed one by one, kept alive by heartbeats, and summed
up at the end. Optuna is imported when a study is opened, not before.

A study of ``n_trials`` holds exactly that many trials from its start: the worker that creates it queues them
(Optuna's WAITING trials, with no parameters fixed), and every worker, however many share the storage, takes
queued ones only (Optuna's atomic WAITING -> RUNNING), so the total is exact and no number repeats.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from hydra_plugins.lenet_exp_optuna._plan import SearchPlan, override_value, search_plan
from hydra_plugins.lenet_exp_optuna._storage import open_storage, shown, stored_at
from lenet_exp.errors import UserError
from lenet_exp.runtime.run_folder import has_run, job_folders, sqlite_path

if TYPE_CHECKING:
    import optuna
    from omegaconf import DictConfig

log = logging.getLogger("lenet_exp")

HEARTBEAT = "lenet_exp:heartbeat"  # a trial's system attribute: when its worker last said it is alive
TARGET = "lenet_exp:n_trials"  # the study's user attribute: how many trials it holds, once all are queued
METRICS = "lenet_exp:optimized_metric"  # the study's user attribute: the metrics its directions belong to


# --- the study, checked and opened once per sweep --------------------------------------------------------------


@dataclass
class PreparedStudy:
    """A sweep's study as settled before its sweep folder exists: the plan (every setting checked), and the
    storage and stored study where they could be opened then. A new study in the sweep folder (the default
    SQLite file) is opened only by the sweeper, once that folder exists."""

    plan: SearchPlan
    name: str
    directions: list[str]
    another: str  # how to start another study instead: another name in a storage of the user's, else another folder
    storage: optuna.storages.BaseStorage | None = None
    study: optuna.Study | None = None  # the study of that name already stored, its objectives checked


# The sweep prepared last in this process: its config (the object Hydra hands its callbacks and its sweeper),
# sweep folder and command line, and what was prepared.
_last: tuple[Any, str, list[str], PreparedStudy] | None = None


def prepare(sweeper: Any, config: DictConfig, arguments: list[str]) -> PreparedStudy:
    """The study of the sweep ``config`` describes (``sweeper``: the OptunaSweeper made from its
    ``hydra.sweeper``), checked and opened once per sweep: lenet_exp.sweep, the SweepChecks callback (both
    before the sweep folder is made) and the sweeper itself each ask, and every ask after the first for the
    same config, sweep folder and command line gets the first one's answer. A UserError for the first
    setting that cannot work, or a stored study with other objectives."""
    global _last
    sweep_dir = str(config.hydra.sweep.dir)
    if _last is not None and _last[0] is config and _last[1:3] == (sweep_dir, list(arguments)):
        return _last[3]
    plan = search_plan(sweeper, config, arguments)
    # the default storage is the sweep folder's own file, where another name would meet the folder's earlier sweep
    another = "another hydra.sweeper.study_name" if sweeper.storage else "another hydra.sweep.dir (a new study)"
    prepared = PreparedStudy(plan, sweeper.study_name, list(sweeper.directions), another)
    if not plan.url.startswith("sqlite:///") or sqlite_path(plan.url).exists():
        # Nothing is stored yet in an SQLite file that does not exist (the default one is made in the sweep folder).
        prepared.storage = open_storage(plan.url)
        prepared.study = _stored(prepared)
    if prepared.study is None:
        _no_lost_trials(prepared, config, Path(sweep_dir))
    _last = (config, sweep_dir, list(arguments), prepared)
    return prepared


def _no_lost_trials(prepared: PreparedStudy, config: DictConfig, sweep_dir: Path) -> None:
    """Refuse a new study whose sweep folder holds trials that ran (lenet_exp's check of earlier sweeps let them
    pass as this study's): its storage lost it (the file removed, emptied or replaced), and a new study's trials,
    numbered from 0 again, would replace their folders."""
    from lenet_exp.runtime.hydra_callbacks import job_sweeper, same_study

    # a trial of this study: its sweeper and name, in this storage (another study's trials are refused later)
    settings = OmegaConf.to_container(config.hydra.sweeper, resolve=False)
    jobs = job_folders(sweep_dir) if sweep_dir.is_dir() else []
    ran = [j for j in jobs if has_run(j) and same_study(job_sweeper(j), settings, sweep_dir, ".", stored_at)]
    if ran:
        raise UserError(
            f"the study {prepared.name} is not in {shown(prepared.plan.url)} any more, but {sweep_dir} holds the "
            f"folders of {len(ran)} of its trials, which a new study's trials (numbered from 0 again) would replace; "
            "restore the storage, or give another hydra.sweep.dir (a new study)."
        )


def _stored(prepared: PreparedStudy) -> optuna.Study | None:
    import optuna

    try:
        study = optuna.load_study(
            study_name=prepared.name,
            storage=prepared.storage,
            sampler=prepared.plan.sampler,
            pruner=prepared.plan.pruner,
        )
    except KeyError:  # not there yet: the sweeper creates it
        return None
    _same_objectives(study, prepared)
    _same_space(study, prepared)
    return study


def open_study(prepared: PreparedStudy) -> tuple[optuna.Study, optuna.storages.BaseStorage, bool]:
    """The prepared study, created when it is new: the study, its storage, and whether this call created it.
    The sweeper opens a prepared study once; the next sweep in this process prepares its own."""
    import optuna

    global _last
    if _last is not None and _last[3] is prepared:
        _last = None
    if prepared.study is not None:
        return prepared.study, prepared.storage, False
    storage = prepared.storage or open_storage(prepared.plan.url)
    plan = prepared.plan
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=prepared.name,
            sampler=plan.sampler,
            pruner=plan.pruner,
            directions=prepared.directions,
        )
        study.set_user_attr(METRICS, plan.metrics)
        with warnings.catch_warnings():  # experimental since Optuna 3.2; it names the dashboard's axes
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(plan.metrics)
        return study, storage, True
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it since it was prepared
        study = optuna.load_study(study_name=prepared.name, storage=storage, sampler=plan.sampler, pruner=plan.pruner)
    _same_objectives(study, prepared)
    _same_space(study, prepared)
    return study, storage, False


def _same_objectives(study: optuna.Study, prepared: PreparedStudy) -> None:
    directions, metrics = prepared.directions, prepared.plan.metrics
    stored = [d.name.lower() for d in study.directions]
    stored_metrics = study.user_attrs.get(METRICS, metrics)
    if stored != directions or stored_metrics != metrics:
        raise UserError(
            f"the study {study.study_name} in {shown(prepared.plan.url)} was created to {'/'.join(stored)} "
            f"{'/'.join(stored_metrics)}, not to {'/'.join(directions)} {'/'.join(metrics)}; give "
            f"{prepared.another}, or the study's own direction and optimized_metric."
        )


def _same_space(study: optuna.Study, prepared: PreparedStudy) -> None:
    """Each parameter the study has tried keeps, in this sweep's search space, the kind of values it had (a choice,
    a range, an interval), its scale and its choices: Optuna refuses any change at the trial's first suggestion,
    with a ValueError that would fail that trial and count it against n_trials."""
    space = prepared.plan.space
    for trial in study.get_trials(deepcopy=False):
        for key, old in trial.distributions.items():
            new = space.get(key)
            if new is None or (type(new) is type(old) and _same_values(old, new)):
                continue
            raise UserError(
                f"the search space gives {key}={_written(new)}, but the study {study.study_name} in "
                f"{shown(prepared.plan.url)} has tried {key}={_written(old)}, and a study keeps each parameter's "
                f"kind (choice, range, interval), scale and choices; search {key}={_written(old)}, or give "
                f"{prepared.another}."
            )


def _same_values(old: Any, new: Any) -> bool:
    choices = getattr(old, "choices", None)
    return list(choices) == list(new.choices) if choices is not None else old.log == new.log


def _written(dist: Any) -> str:
    """An Optuna distribution as the search space writes it (_plan.distribution's inverse)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(override_value(c) for c in dist.choices)})"
    if isinstance(dist, IntDistribution):
        written = f"range({dist.low}, {dist.high + 1}" + (f", {dist.step})" if dist.step != 1 else ")")
    else:
        written = f"interval({dist.low:g}, {dist.high:g})"
    return f"tag(log, {written})" if dist.log else written


def any_result(study: optuna.Study) -> bool:
    """Whether any trial of the study has ended with values to compare (complete, or pruned with its last ones)."""
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


# --- its trials: queued, claimed, kept alive --------------------------------------------------------------------


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


def claim(study: optuna.Study, storage: optuna.storages.BaseStorage) -> tuple[optuna.Trial, int] | None:
    """One of the study's queued trials, now this worker's (RUNNING), and its id in the storage (which Optuna's
    Trial keeps private); None when none is left. Taking a trial is Optuna's atomic WAITING -> RUNNING: two
    workers never take the same one."""
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
        return optuna.Trial(study, trial_id), trial_id
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


# --- the results ------------------------------------------------------------------------------------------------


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
