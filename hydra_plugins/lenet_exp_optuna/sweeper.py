"""lenet_exp's Optuna sweeper for Hydra (``hydra/sweeper=optuna``, chosen by ``hparams_search=lenet_optuna``).

Ask and tell on Optuna 4 or 5: this worker takes up to ``n_jobs`` of the study's queued trials, samples their
parameters, runs them as one batch of jobs through the chosen launcher (basic, joblib, submitit), and tells the
study each job's result: its ``optimized_metric``, PRUNED when the job's pruning callback stopped it, FAIL
with the reason otherwise. Any number of workers may share one study (``storage`` and ``study_name``); each
writes its jobs into its own sweep folder, named by trial number. The study plumbing is lenet_exp.search.
This module is imported whenever Hydra starts (it scans hydra_plugins), so it imports little at the top.
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
# What a search space may be, for the sentences that refuse one.
SPACES = "write choice(a, b), range(start, stop, step), interval(low, high) or tag(log, interval(low, high))"


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
        self.params = dict(params or {})
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler, self.sampler_options, self.seed = sampler, dict(sampler_options or {}), seed
        self.pruner, self.pruner_options = pruner, dict(pruner_options or {})
        self.directions = [direction] if isinstance(direction, str) else list(direction)
        self.storage, self.study_name = storage, study_name
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        from lenet_exp import search
        from lenet_exp.errors import UserError
        from lenet_exp.runtime.hydra_callbacks import SweepRefused

        assert self.config is not None
        try:  # SweepChecks refused what it could see; a storage that went away since is one sentence too
            plan = search_plan(self, arguments)
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
            study, storage, created = search.open_study(
                plan.url, self.study_name, self.directions, plan.metrics, plan.sampler, plan.pruner
            )
        except UserError as err:
            raise SweepRefused(str(err)) from None
        if not created and self.seed is not None:  # workers that join a study sample their own sequences
            own_seed = (self.seed + zlib.crc32(search.worker_name().encode())) % 2**31
            study.sampler = search.make_sampler(self.sampler, self.sampler_options, own_seed)
        search.fail_stale(study, storage, self.grace_period)
        total = search.queue_trials(study, self.n_trials, created)
        log.info(
            f"Study {self.study_name} in {search.shown(plan.url)}: {total} trials, {self.sampler} sampler, "
            f"{self.pruner} pruner; this worker ({search.worker_name()}) runs up to {self.n_jobs} at a time"
        )
        returns: list[JobReturn] = []
        with search.Heartbeat(storage, self.heartbeat_interval) as heartbeat:
            while True:
                search.fail_stale(study, storage, self.grace_period)
                trials = []
                while len(trials) < self.n_jobs and (trial := search.claim(study, storage)) is not None:
                    heartbeat.trials.add(trial._trial_id)
                    trials.append(trial)
                if not trials:
                    break
                try:
                    batch = [self._overrides(trial, plan) for trial in trials]
                    self.validate_batch_is_legal(batch)
                    results = self.launcher.launch(batch, initial_job_idx=len(returns))
                    for trial, result in zip(trials, results, strict=True):
                        self._tell(study, trial, result, plan)
                        heartbeat.trials.discard(trial._trial_id)
                    returns.extend(results)
                except BaseException as err:  # Ctrl-C, a launcher that failed: no trial of this worker stays RUNNING
                    for trial in trials:
                        if trial._trial_id in heartbeat.trials:
                            self._fail(study, trial, f"its worker stopped ({type(err).__name__}: {err})")
                    raise
        self._write_results(study, plan, sweep_dir)
        return returns

    def _overrides(self, trial: Any, plan: Any) -> list[str]:
        """The job of ``trial``: the fixed overrides, the sampled parameters, the trial hand-off, and its
        folder named by the trial's number (unique across workers)."""
        from lenet_exp import search

        sampled = [f"{key}={search.override_value(suggest(trial, key, d))}" for key, d in plan.space.items()]
        handoff = search.TrialHandoff(trial._trial_id, trial.number)
        trial.set_user_attr("worker", search.worker_name())
        trial.set_user_attr("overrides", " ".join(plan.fixed + sampled))
        return [*plan.fixed, *sampled, handoff.override(), f"hydra.sweep.subdir={trial.number}"]

    def _tell(self, study: Any, trial: Any, result: JobReturn, plan: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        from lenet_exp.errors import user_error

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
                error = result._return_value
                cause = user_error(error) if isinstance(error, BaseException) else None
                reason = getattr(cause, "sentence", str(cause)) if cause else f"{type(error).__name__}: {error}"
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning(f"trial {trial.number} was marked finished by another worker before this one told it")
            return
        except Exception as err:  # the storage failed (a lock held too long, a restarted server)
            reason = f"its result could not be told to the study ({type(err).__name__}: {err})"
        self._fail(study, trial, reason)

    @staticmethod
    def _fail(study: Any, trial: Any, reason: str) -> None:
        """Records ``trial`` FAIL with ``reason``; one log line if even that cannot be stored."""
        from optuna.trial import TrialState

        try:
            trial.set_user_attr("error", reason)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except Exception as err:
            log.warning(f"trial {trial.number} could not be marked failed ({reason}): {type(err).__name__}: {err}")

    def _write_results(self, study: Any, plan: Any, sweep_dir: Path) -> None:
        import yaml

        from lenet_exp import search
        from lenet_exp.runtime.atomic import atomic_write

        results = search.summary(study, plan.metrics, plan.url)
        atomic_write(sweep_dir / "optimization_results.yaml", yaml.safe_dump(results, sort_keys=False).encode())
        states = ", ".join(f"{n} {s.lower()}" for s, n in results["states"].items())
        log.info(f"Study {study.study_name}: {results['n_trials']} trials ({states})")
        if "best_params" in results:
            log.info(f"Best parameters: {results['best_params']}")
            log.info(f"Best value: {results['best_value']} (trial {results['best_trial']})")
        else:
            log.info(f"Pareto front: trials {[t['number'] for t in results['best_trials']]}")


def check_study(config: DictConfig) -> None:
    """Every setting of the study ``config`` describes, checked before any trial (lenet_exp's SweepChecks
    callback calls it, so that a wrong one is one sentence): a UserError for the first wrong one."""
    from lenet_exp import search
    from lenet_exp.errors import UserError

    settings = {k: v for k, v in OmegaConf.to_container(config.hydra.sweeper, resolve=True).items() if k != "_target_"}
    takes = list(inspect.signature(OptunaSweeper).parameters)
    if unknown := [key for key in settings if key not in takes]:
        raise UserError(
            f"hydra.sweeper.{unknown[0]} is not a setting of lenet_exp's Optuna sweeper; it takes {', '.join(takes)} "
            "(docs/search.md)."
        )
    sweeper = OptunaSweeper(**settings)
    sweeper.config = config
    plan = search_plan(sweeper, list(config.hydra.overrides.task))
    search.check_stored(plan.url, sweeper.study_name, sweeper.directions, plan.metrics)


def search_plan(sweeper: OptunaSweeper, arguments: list[str]) -> Any:
    """Checks every setting of the study (one sentence for the first wrong one) and settles the plan."""
    from lenet_exp import search
    from lenet_exp.errors import UserError, check_value

    config = sweeper.config
    assert config is not None
    metric = config.get("optimized_metric")
    metrics = list(metric) if isinstance(metric, ListConfig) else [metric] if metric else []
    if not metrics:
        raise UserError("a study needs optimized_metric, such as optimized_metric=val_acc (with data.val_size > 0).")
    if len(metrics) != len(sweeper.directions):
        raise UserError(
            f"optimized_metric names {'/'.join(metrics)} and hydra.sweeper.direction "
            f"{'/'.join(sweeper.directions)}; give one direction (maximize or minimize) per metric."
        )
    if bad := [d for d in sweeper.directions if d not in ("maximize", "minimize")]:
        raise UserError(f"hydra.sweeper.direction={bad[0]} is not a direction; use maximize or minimize.")
    if sweeper.pruner != "none" and (len(metrics) > 1 or not metrics[0].startswith("val_")):
        raise UserError(
            f"pruning compares one validation metric after every epoch, not {'/'.join(metrics)}; use "
            "hydra.sweeper.pruner=none here, or optimize one val_* metric."
        )
    if not isinstance(sweeper.n_trials, int) or sweeper.n_trials < 1:
        raise UserError(f"hydra.sweeper.n_trials={sweeper.n_trials} must be a positive whole number, such as 24.")
    if not isinstance(sweeper.n_jobs, int) or sweeper.n_jobs < 1:
        raise UserError(f"hydra.sweeper.n_jobs={sweeper.n_jobs} must be a positive whole number, such as 2.")
    check_value("hydra.sweeper.heartbeat_interval", sweeper.heartbeat_interval, "number", 30)
    check_value("hydra.sweeper.grace_period", sweeper.grace_period, "number", 120)
    if not sweeper.heartbeat_interval < sweeper.grace_period:
        raise UserError(
            f"hydra.sweeper.heartbeat_interval={sweeper.heartbeat_interval} must be below "
            f"hydra.sweeper.grace_period={sweeper.grace_period}."
        )
    sampler = search.make_sampler(sweeper.sampler, sweeper.sampler_options, sweeper.seed)
    pruner = search.make_pruner(sweeper.pruner, sweeper.pruner_options)
    space, fixed = search_space(config, sweeper.params, arguments)
    if sweeper.storage is not None and not isinstance(sweeper.storage, str):
        raise UserError(f"hydra.sweeper.storage={sweeper.storage} is not a storage; {search.STORAGE_HINT}.")
    url = search.storage_url(sweeper.storage, str(config.hydra.sweep.dir))
    return search.SearchPlan(url, sampler, pruner, metrics, space, fixed)


def search_space(config: DictConfig, params: dict[str, str], arguments: list[str]) -> tuple[dict, list[str]]:
    """``hydra.sweeper.params`` and the command line's sweep overrides (``key=choice(a,b)``, ``a,b``, ``range``,
    ``interval``, ``tag(log, interval(...))``) as Optuna distributions; the other overrides stay fixed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from lenet_exp.errors import UserError

    parser = OverridesParser.create()
    space: dict[str, Any] = {}
    for key, value in params.items():
        # The command line's overrides passed Hydra's parser already; these come from a config file.
        try:
            (override,) = parser.parse_overrides([f"{key}={value}"])
        except OverrideParseException as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            raise UserError(
                f"hydra.sweeper.params: {key}={value} cannot be read ({lines[1] if len(lines) > 1 else lines[0]}); "
                f"{SPACES}."
            ) from None
        space[override.get_key_element()] = distribution(override, "hydra.sweeper.params: ")
    fixed = []
    for override in parser.parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            space.pop(key, None)  # the command line fixes a key the search space had
            fixed.append(override.input_line)
    choices = config.hydra.runtime.choices
    for key in space:
        bare = key.lstrip("+~")
        if key.startswith("+") or bare in choices or OmegaConf.select(config, bare, default=_MISSING) is not _MISSING:
            continue
        raise UserError(
            f"the search space names {bare}, which is not a key of the config; check its spelling (python -m "
            f"lenet_exp --cfg job shows every key), or add it with +{bare}."
        )
    return space, fixed


_MISSING = object()


def distribution(override: Any, where: str = "") -> Any:
    """The Optuna distribution of one sweep override (``where``: where it was given, for the sentence). What
    Optuna would refuse is refused here in one sentence, before any trial, rather than as Optuna's ValueError."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from lenet_exp.errors import UserError

    value, given = override.value(), where + override.input_line
    log = "log" in getattr(value, "tags", ())
    if isinstance(value, ChoiceSweep):  # Hydra's grammar refuses an empty choice() itself
        if log:
            raise UserError(f"{given}: a choice has no scale; drop log, or use tag(log, interval(low, high)).")
        if any(isinstance(c, (dict, list)) for c in value.list):
            raise UserError(f"{given}: a choice's values must be plain values (numbers, words).")
        return CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        whole = all(isinstance(x, int) for x in (start, stop, step))
        if log and not (whole and step == 1 and 1 <= start < stop):
            raise UserError(
                f"{given}: a log scale over a range needs whole numbers from 1 up in steps of 1, such as "
                "tag(log, range(16, 513)); or use tag(log, interval(low, high))."
            )
        if whole and step > 0 and stop > start:
            return IntDistribution(start, stop - 1 - (stop - 1 - start) % step, step=step, log=log)
        values = list(override.sweep_iterator()) if step != 0 else []  # Hydra's range(..., 0) raises ValueError
        if not values:
            raise UserError(
                f"{given} holds no value: a range counts from start by step up to stop (not included), as "
                "Python's range does; give start below stop and a step above 0, such as range(1, 10)."
            )
        return CategoricalDistribution(values)
    if isinstance(value, IntervalSweep):  # always numbers with decimals (Hydra's interval); range() for whole ones
        low, high = float(value.start), float(value.end)
        if not (math.isfinite(low) and math.isfinite(high)):  # Optuna takes them, and its samplers then fail
            raise UserError(f"{given}: an interval needs finite bounds, such as interval(0.0, 0.2).")
        if low > high:
            raise UserError(f"{given}: its low bound {low:g} is above its high bound {high:g}; give the low one first.")
        if log and low <= 0:
            raise UserError(
                f"{given}: a log scale needs bounds above 0, not {low:g}; give a low bound such as 1e-05, or drop log."
            )
        return FloatDistribution(low, high, log=log)
    raise UserError(f"{given} is not a search space; {SPACES}.")


def suggest(trial: Any, key: str, dist: Any) -> Any:
    """The trial's value for ``key`` from its distribution (Optuna's public suggest_* calls)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
