"""What the sweeper settles before any trial, from ``hydra.sweeper`` and the command line: every setting
checked (one sentence for the first wrong one), the sampler and pruner by name, and the search space as Optuna
distributions; then each trial's values as the overrides of its job. Optuna is imported when a plan is made."""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from hydra_plugins.lenet_exp_optuna._storage import STORAGE_HINT, storage_url
from lenet_exp.errors import UserError, check_value, first_line, typed
from lenet_exp.runtime.checks import objectives
from lenet_exp.runtime.run_folder import OBJECTIVES

if TYPE_CHECKING:
    import optuna

# hydra.sweeper.sampler / .pruner: a name -> Optuna's class of that name (``*_options`` are its arguments).
SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
    "nsga2": "NSGAIISampler",
}
# Optuna's samplers that compute with SciPy, an extra of lenet_exp's (pyproject.toml: samplers).
NEED_SCIPY = ("gp", "qmc")
PRUNERS = {
    "median": "MedianPruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "none": "NopPruner",
}
# What a search space may be, for the sentences that refuse one.
SPACES = (
    "write choice(a, b), range(start, stop, step), interval(low, high), tag(log, interval(low, high)) or "
    "tag(int, interval(low, high))"
)


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


def make_sampler(name: str, options: dict[str, Any] | None, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` (tpe, random, gp, cmaes, qmc, nsga2) with ``options``; seeded with ``seed``."""
    import optuna

    if isinstance(name, Mapping):  # hydra-optuna-sweeper's form: {_target_: optuna.samplers.TPESampler, seed: 7}
        raise UserError(
            f"hydra.sweeper.sampler is a sampler's name here ({', '.join(SAMPLERS)}), not hydra-optuna-sweeper's "
            "mapping of a class and its arguments: give its seed as hydra.sweeper.seed and its other arguments as "
            "hydra.sweeper.sampler_options."
        )
    if not isinstance(name, str) or name not in SAMPLERS:
        raise UserError(f"hydra.sweeper.sampler={name} is not known; choose one of {', '.join(SAMPLERS)}.")
    if name in NEED_SCIPY and importlib.util.find_spec("scipy") is None:
        others = ", ".join(n for n in SAMPLERS if n not in NEED_SCIPY)
        raise UserError(
            f"hydra.sweeper.sampler={name} needs SciPy, which is not installed here: pip install "
            f"'lenet_exp[samplers]' (or scipy), or choose one of {others}."
        )
    options = _options(options, "hydra.sweeper.sampler_options", "{n_startup_trials: 5}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UserError(f"hydra.sweeper.seed={override_value(seed)} must be a whole number, such as 42, or null.")
    kwargs = {"seed": seed, **options} if seed is not None else options
    return _build(getattr(optuna.samplers, SAMPLERS[name]), kwargs, "hydra.sweeper.sampler_options")


def make_pruner(name: str, options: dict[str, Any] | None) -> optuna.pruners.BasePruner:
    """The pruner ``name`` (median, hyperband, successive_halving, none) with ``options``."""
    import optuna

    if not isinstance(name, str) or name not in PRUNERS:
        raise UserError(f"hydra.sweeper.pruner={name} is not known; choose one of {', '.join(PRUNERS)}.")
    key = "hydra.sweeper.pruner_options"
    options = _options(options, key, "{n_warmup_steps: 2}")
    pruner = _build(getattr(optuna.pruners, PRUNERS[name]), options, key)
    # Values Optuna takes and then divides by zero with at a trial's first report: no trial would be pruned
    for option, low, example in (("min_resource", 1, 1), ("max_resource", 1, 5), ("reduction_factor", 2, 3)):
        if (value := options.get(option, "auto")) != "auto":  # Hyperband's and successive halving's
            check_value(f"{key}.{option}", value, "whole", example, low)
    return pruner


def _options(options: Any, key: str, example: str) -> dict[str, Any]:
    """A sampler's or pruner's options: a mapping of its arguments, or null for none."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise UserError(
            f"{key}={override_value(options)} must be the options by name, such as '{key}={example}', or null."
        )
    return dict(options)


def _build(cls: type, kwargs: dict[str, Any], key: str) -> Any:
    takes = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    if unknown := [k for k in kwargs if k not in takes]:
        takes_text = f"it takes {', '.join(takes)}" if takes else f"it takes none: set {key}=null"
        raise UserError(f"{key}: {cls.__name__} has no option {unknown[0]}; {takes_text}.")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, ImportError) as err:
        raise UserError(f"{key}: {cls.__name__} refused {kwargs} ({first_line(err)}).") from None


def settings_of(config: DictConfig, takes: list[str]) -> dict[str, Any]:
    """``hydra.sweeper``'s settings (without ``_target_``); a key the sweeper does not take (``takes``: its
    constructor's arguments) is refused in one sentence."""
    settings = {k: v for k, v in OmegaConf.to_container(config.hydra.sweeper, resolve=True).items() if k != "_target_"}
    if unknown := [key for key in settings if key not in takes]:
        raise UserError(
            f"hydra.sweeper.{unknown[0]} is not a setting of lenet_exp's Optuna sweeper; it takes {', '.join(takes)} "
            "(docs/search.md)."
        )
    return settings


def search_plan(sweeper: Any, config: DictConfig, arguments: list[str]) -> SearchPlan:
    """Checks every setting of the study (``sweeper``: the OptunaSweeper made from ``config.hydra.sweeper``;
    ``arguments``: the command line's overrides), one sentence for the first wrong one, and settles the plan."""
    metrics = objectives(config.get("optimized_metric"))
    if not metrics:
        raise UserError("a study needs optimized_metric, such as optimized_metric=val_acc (with data.val_size > 0).")
    if len(metrics) != len(sweeper.directions):
        raise UserError(
            f"optimized_metric names {'/'.join(metrics)} and hydra.sweeper.direction "
            f"{'/'.join(sweeper.directions)}; give one direction (maximize or minimize) per metric."
        )
    if bad := [d for d in sweeper.directions if d not in ("maximize", "minimize")]:
        raise UserError(f"hydra.sweeper.direction={typed(bad[0])} is not a direction; use maximize or minimize.")
    for each, direction in zip(metrics, sweeper.directions, strict=True):  # hydra-optuna-sweeper's default: minimize
        natural = "maximize" if str(each).endswith("_acc") else "minimize"  # losses and seconds_per_epoch
        if str(each) in OBJECTIVES and direction != natural:
            raise UserError(
                f"hydra.sweeper.direction={direction} with optimized_metric={each} would choose the trial of the "
                f"{'lowest' if natural == 'maximize' else 'highest'} {each}; use {natural} for it."
            )
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
    sampler = make_sampler(sweeper.sampler, sweeper.sampler_options, sweeper.seed)
    pruner = make_pruner(sweeper.pruner, sweeper.pruner_options)
    space, fixed = search_space(config, sweeper.params, arguments)
    if not space and config.get("seed") is not None:  # every trial would train the same run (seed=null: its own)
        raise UserError(
            "the search space is empty, so every trial would train the same run; give one with "
            "hparams_search=lenet_optuna, hydra.sweeper.params, or key=choice(a, b) on the command line."
        )
    if sweeper.storage is not None and not isinstance(sweeper.storage, str):
        raise UserError(f"hydra.sweeper.storage={sweeper.storage} is not a storage; {STORAGE_HINT}.")
    url = storage_url(sweeper.storage, str(config.hydra.sweep.dir))
    return SearchPlan(url, sampler, pruner, metrics, space, fixed)


def search_space(config: DictConfig, params: Mapping[str, str] | None, arguments: list[str]) -> tuple[dict, list[str]]:
    """``hydra.sweeper.params`` and the command line's sweep overrides (``key=choice(a,b)``, ``a,b``, ``range``,
    ``interval``, ``tag(log, interval(...))``) as Optuna distributions; the other overrides stay fixed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    space: dict[str, Any] = {}
    if params is not None and not isinstance(params, Mapping):
        raise UserError(
            f"hydra.sweeper.params={override_value(params)} must be the search space by key, such as "
            "'hydra.sweeper.params={model.optimizer.lr: tag(log, interval(0.0001, 0.03))}', or null."
        )
    for key, value in (params or {}).items():
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

    value, given = override.value(), where + override.input_line
    tags = set(getattr(value, "tags", ()))
    if unknown := sorted(tags - {"log", "int"}):
        raise UserError(
            f"{given}: the tag {unknown[0]} means nothing here; the tags are log (a log scale) and int (whole "
            "numbers), as in tag(log, interval(0.0001, 0.1)) or tag(int, interval(16, 512))."
        )
    log, whole_numbers = "log" in tags, "int" in tags
    if isinstance(value, ChoiceSweep):  # Hydra's grammar refuses an empty choice() itself
        if log or whole_numbers:
            raise UserError(
                f"{given}: a choice has no scale and takes its values as written; drop the tag, or use "
                "tag(log, interval(low, high))."
            )
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
        if whole_numbers:  # hydra-optuna-sweeper's tag(int, interval(low, high)): whole numbers, both bounds in
            if not (low.is_integer() and high.is_integer()) or (log and low < 1):
                raise UserError(
                    f"{given}: whole numbers need whole bounds{', from 1 up on a log scale' * log}, such as "
                    "tag(int, interval(16, 512))."
                )
            return IntDistribution(int(low), int(high), log=log)
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
