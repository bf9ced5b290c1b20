"""lenet_exp's Optuna sweeper for Hydra (``hydra/sweeper=optuna``, chosen by ``hparams_search=lenet_optuna``).

Ask and tell on Optuna 4 or 5: this worker takes up to ``n_jobs`` of the study's queued trials, samples their
parameters, runs them as one batch of jobs through the chosen launcher (basic, joblib, submitit), and tells the
study each job's result: its ``optimized_metric``, PRUNED when the job's pruning callback stopped it, FAIL
with the reason otherwise. Any number of workers may share one study (``storage`` and ``study_name``); each
writes its jobs into its own sweep folder, named by trial number.

The study is this package's: its settings and search space (``_plan.py``), its storage (``_storage.py``), its
queue of trials and heartbeats (``_study.py``), and what a trial's job reads (``_job.py``, for the job's pruning
callback in lenet_exp/trial.py). Hydra imports this module whenever it starts (it scans hydra_plugins, skipping
modules whose names begin with ``_``), so it imports little at the top.
"""

from __future__ import annotations

import inspect
import logging
import math
import zlib
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger("lenet_exp")


class OptunaSweeper(Sweeper):
    """An Optuna study as a Hydra sweep; each argument is one key of ``hydra.sweeper`` (docs/sweeps.md)."""

    def __init__(
        self,
        params: dict[str, str] | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        sampler: str = "tpe",
        sampler_options: dict[str, Any] | None = None,
        seed: int | None = None,
        pruner: str = "median",
        pruner_options: dict[str, Any] | None = None,
        direction: str | list[str] = "maximize",
        storage: str | None = None,
        study_name: str = "lenet",
        heartbeat_interval: float = 30.0,
        grace_period: float = 120.0,
    ) -> None:
        # as given: the plan (_plan.search_plan) checks them, in one sentence for the first wrong one
        self.params, self.n_trials, self.n_jobs = params, n_trials, n_jobs
        self.sampler, self.sampler_options, self.seed = sampler, sampler_options, seed
        self.pruner, self.pruner_options = pruner, pruner_options
        self.directions = list(direction) if isinstance(direction, list | tuple | ListConfig) else [direction]
        self.storage, self.study_name = storage, study_name
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.config: DictConfig | None = None

    @classmethod
    def check_before_sweep(cls, config: DictConfig) -> None:
        """Every setting of the study ``config`` describes, checked before the sweep folder is made (lenet_exp's
        SweepChecks callback and lenet_exp.sweep call it), and the study stored under its name opened: a
        UserError for the first wrong one. The sweeper then takes the study prepared here, without checking or
        opening it again."""
        from hydra_plugins.lenet_exp_optuna import _plan, _study

        sweeper = cls(**_plan.settings_of(config, list(inspect.signature(cls).parameters)))
        # the command line as typed, as Hydra hands it to sweep(): an interpolation in an override stays unresolved
        _study.prepare(sweeper, config, OmegaConf.to_container(config.hydra.overrides.task, resolve=False))

    @staticmethod
    def study_of(settings: dict[str, Any], sweep_dir: str, started_in: str) -> str | None:
        """Where the sweeper settings ``settings`` (as written) store their study (``_storage.stored_at``), for
        lenet_exp's check that a sweep folder holds no other study's trials."""
        from hydra_plugins.lenet_exp_optuna._storage import stored_at

        return stored_at(settings, sweep_dir, started_in)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        from hydra_plugins.lenet_exp_optuna import _study
        from hydra_plugins.lenet_exp_optuna._plan import make_sampler
        from hydra_plugins.lenet_exp_optuna._storage import shown, storage_failure
        from lenet_exp.errors import UserError
        from lenet_exp.runtime.hydra_callbacks import SweepRefused
        from lenet_exp.runtime.run_folder import MULTIRUN

        assert self.config is not None
        try:  # prepared by SweepChecks already; else (without it) refused here, or a storage that went away since
            prepared = _study.prepare(self, self.config, arguments)
            plan = prepared.plan
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self.config, sweep_dir / MULTIRUN)
            study, storage, created = _study.open_study(prepared)
        except UserError as err:
            raise SweepRefused(str(err)) from None
        if not created and self.seed is not None:  # workers that join a study sample their own sequences
            own_seed = (self.seed + zlib.crc32(_study.worker_name().encode())) % 2**31
            study.sampler = make_sampler(self.sampler, self.sampler_options, own_seed)
        try:  # the storage may fail once opened (its file removed, damaged, locked, read-only): one sentence
            returns = self._run(study, storage, created, plan, sweep_dir)
        except Exception as err:
            if (cause := storage_failure(err)) is None:
                raise
            raise SweepRefused(
                f"the study's storage {shown(plan.url)} failed ({cause}); what finished trials wrote stays in "
                f"{sweep_dir} and, as far as the storage kept it, in the study: repair or restore the storage, then "
                "run the same command again to go on.",
                nothing_run=False,
            ) from None
        if returns and not _study.any_result(study):  # every trial failed: nothing was learnt, and the exit says so
            from lenet_exp.runtime.hydra_callbacks import FailedJob

            raise FailedJob("every trial of the study failed", str(sweep_dir))
        return returns

    def _run(self, study: Any, storage: Any, created: bool, plan: Any, sweep_dir: Path) -> list[JobReturn]:
        """The study's trials that this worker takes, launched n_jobs at a time, and the results file."""
        from hydra_plugins.lenet_exp_optuna import _study
        from hydra_plugins.lenet_exp_optuna._storage import shown

        _study.fail_stale(study, storage, self.grace_period)
        total = _study.queue_trials(study, self.n_trials, created)
        aims = ", ".join(f"{d.removesuffix('e')}ing {m}" for d, m in zip(self.directions, plan.metrics, strict=True))
        log.info(
            f"Study {self.study_name} in {shown(plan.url)}: {total} trials, {aims}, {self.sampler} sampler, "
            f"{self.pruner} pruner; this worker ({_study.worker_name()}) runs up to {self.n_jobs} at a time"
        )
        waiting = [t for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]
        if not waiting:  # a study continued with an n_trials it holds already (hydra-optuna-sweeper's adds them)
            log.info(
                f"the study's {total} trials have all been taken, so this worker runs none; hydra.sweeper.n_trials "
                f"is the study's total: give hydra.sweeper.n_trials={total + self.n_trials} for {self.n_trials} more"
            )
        returns: list[JobReturn] = []
        with _study.Heartbeat(storage, self.heartbeat_interval) as heartbeat:
            while True:
                _study.fail_stale(study, storage, self.grace_period)
                claimed = []  # (trial, its id in the storage)
                while len(claimed) < self.n_jobs and (taken := _study.claim(study, storage)) is not None:
                    heartbeat.trials.add(taken[1])
                    claimed.append(taken)
                if not claimed:
                    break
                try:
                    batch = [self._overrides(trial, trial_id, plan) for trial, trial_id in claimed]
                    self.validate_batch_is_legal(batch)
                    results = self.launcher.launch(batch, initial_job_idx=len(returns))
                    for (trial, trial_id), result in zip(claimed, results, strict=True):
                        self._tell(study, trial, result, plan)
                        heartbeat.trials.discard(trial_id)
                    returns.extend(results)
                except BaseException as err:  # Ctrl-C, a launcher that failed: no trial of this worker stays RUNNING
                    for trial, trial_id in claimed:
                        if trial_id in heartbeat.trials:
                            self._fail(study, trial, f"its worker stopped ({_why(err)})")
                    raise
        self._write_results(study, plan, sweep_dir)
        return returns

    def _overrides(self, trial: Any, trial_id: int, plan: Any) -> list[str]:
        """The job of ``trial``: the fixed overrides, the sampled parameters, the trial hand-off, and its
        folder named by the trial's number (unique across workers)."""
        from hydra_plugins.lenet_exp_optuna._job import TrialHandoff
        from hydra_plugins.lenet_exp_optuna._plan import override_value, suggest
        from hydra_plugins.lenet_exp_optuna._study import worker_name

        sampled = [f"{key}={override_value(suggest(trial, key, d))}" for key, d in plan.space.items()]
        handoff = TrialHandoff(trial_id, trial.number)
        trial.set_user_attr("worker", worker_name())
        trial.set_user_attr("overrides", " ".join(plan.fixed + sampled))
        return [*plan.fixed, *sampled, handoff.override(), f"hydra.sweep.subdir={trial.number}"]

    def _tell(self, study: Any, trial: Any, result: JobReturn, plan: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        from lenet_exp.errors import first_line, root_cause
        from lenet_exp.runtime.hydra_callbacks import failure_reason

        folder = Path(str(result.hydra_cfg.hydra.runtime.output_dir)) if result.hydra_cfg else None
        try:
            if folder is not None:
                trial.set_user_attr("job_folder", str(folder))
            if result.status == JobStatus.COMPLETED and isinstance(result.return_value, dict):
                metrics = result.return_value
                record = metrics.get("trial") or {}
                epochs = int(metrics.get("epochs", 0))
                trial.set_user_attr("epochs", epochs)
                if record.get("pruned_after"):
                    max_epochs = int(result.cfg.trainer.max_epochs) if result.cfg else epochs
                    trial.set_user_attr("epochs_saved", max(max_epochs - epochs, 0))
                    study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
                    return
                values = [metrics.get(name) for name in plan.metrics]
                if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                    study.tell(trial, values if len(values) > 1 else values[0], skip_if_finished=True)
                    return
                reason = f"the job's metrics.json has no finite {' and '.join(plan.metrics)}: {values}"
            else:
                reason = failure_reason(result)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning(f"trial {trial.number} was marked finished by another worker before this one told it")
            return
        except Exception as err:  # the storage failed (a lock held too long, a restarted server)
            cause = root_cause(err)
            reason = f"its result could not be told to the study ({type(cause).__name__}: {first_line(cause)})"
        self._fail(study, trial, reason)

    @staticmethod
    def _fail(study: Any, trial: Any, reason: str) -> None:
        """Records ``trial`` FAIL with ``reason``; one log line if even that cannot be stored."""
        from optuna.trial import TrialState

        from lenet_exp.errors import first_line, root_cause

        try:
            trial.set_user_attr("error", reason)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except Exception as err:
            cause = root_cause(err)  # Optuna's own words for a failed commit say less than SQLite's (its first line:
            # SQLAlchemy's message goes on with the statement and its parameters)
            why = f"{type(cause).__name__}: {first_line(cause)}"
            log.warning(f"trial {trial.number} could not be marked failed ({reason}): {why}")

    def _write_results(self, study: Any, plan: Any, sweep_dir: Path) -> None:
        import yaml

        from hydra_plugins.lenet_exp_optuna._study import summary
        from lenet_exp.runtime.run_folder import STUDY_RESULTS
        from lenet_exp.runtime.writes import atomic_write

        results = summary(study, plan.metrics, plan.url)
        atomic_write(sweep_dir / STUDY_RESULTS, yaml.safe_dump(results, sort_keys=False).encode())
        states = ", ".join(f"{n} {s.lower()}" for s, n in results["states"].items())
        log.info(f"Study {study.study_name}: {results['n_trials']} trials ({states})")
        if "best_params" in results:
            log.info(f"Best parameters: {results['best_params']}")
            log.info(f"Best value: {results['best_value']} (trial {results['best_trial']})")
        else:
            log.info(f"Pareto front: trials {[t['number'] for t in results['best_trials']]}")


def _why(err: BaseException) -> str:
    """Why a worker stopped, for its trials' FAIL reason: an interrupt in words, else the exception."""
    from lenet_exp.errors import INTERRUPTED, TERMINATED, interruption

    if isinstance(err, KeyboardInterrupt):  # Ctrl-C, or lenet_exp's SIGTERM while a command starts
        return f"interrupted: {interruption(err)[0]}"
    code = err.code if isinstance(err, SystemExit) else None  # as Lightning and lenet_exp end a run on them
    if code in (INTERRUPTED, TERMINATED):
        return f"interrupted: {'Ctrl-C' if code == INTERRUPTED else 'SIGTERM'}"
    return f"{type(err).__name__}: {err}"
