"""Hydra callbacks around runs: torchrun's ranks in one run folder, an output folder that cannot be written, a
run folder in use or holding an earlier run, a sweep setting that would fail every job, and failed sweep jobs."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, read_write

from lenet_exp.errors import UserError, fail, resolving, user_error
from lenet_exp.runtime.run_folder import (
    as_written,
    error_file,
    has_run,
    hydra_settings_file,
    job_folders,
    last_checkpoint,
    metrics_file,
    overrides_file,
    resume_command,
    value_at,
)
from lenet_exp.runtime.writes import atomic_write

log = logging.getLogger("lenet_exp")


def check_folder_name(folder: str, key: str) -> None:
    """An output folder named as no one means it: empty (a variable that was), or beginning with ``~``."""
    if not str(folder).strip():  # Hydra would take the current folder, and write beside whatever is in it
        raise UserError(
            f"{key} is empty, which would make the current folder the output folder; give a folder of its own, "
            f"such as {key}=outputs/mine."
        )
    if str(folder).startswith("~"):  # Hydra does not expand it: a folder named ~ in the current folder
        whole = os.path.expanduser(folder)  # (an unknown user's ~name stays as it is)
        example = f", such as {key}={whole}" if whole != str(folder) else ""
        raise UserError(
            f"{key}={folder} would make a folder named {Path(folder).parts[0]} in the current folder (the shell "
            f"expands ~ only outside quotes, and Hydra not at all); give the whole path{example}."
        )


def check_output_folder(folder: str, key: str) -> None:
    """Create ``folder`` (a run's or a sweep's) and make sure it can be written, else one sentence saying so."""
    check_folder_name(folder, key)
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise UserError(
            f"the output folder {folder} cannot be written ({err.strerror}); choose another with {key}=<folder>."
        ) from err


# Set while lenet_exp.run and lenet_exp.sweep run Hydra's callbacks, having checked the folder and the sweep's
# settings themselves first (a refusal there is their caller's UserError, not the end of the program).
_checked_by_caller: ContextVar[bool] = ContextVar("checked_by_caller", default=False)


@contextmanager
def checked_by_caller() -> Iterator[None]:
    """Hydra's callbacks run within, by lenet_exp.run or lenet_exp.sweep, leave out the checks the caller made
    already (the earlier run or sweep in the folder, and the sweep's settings): each is made once."""
    token = _checked_by_caller.set(True)
    try:
        yield
    finally:
        _checked_by_caller.reset(token)


@contextmanager
def refused_here(config: DictConfig, after: str = "") -> Iterator[None]:
    """A callback's refusal, a UserError (an interpolation of ``config`` that cannot be resolved too), ends the
    command in one sentence (``after`` appended): Hydra would turn an exception raised in a callback into a
    warning, then fail on its own with a traceback."""
    try:
        with resolving(config):
            yield
    except UserError as err:
        fail(f"{err} {after}" if after else err)


class TorchrunFolder(Callback):
    """Under torchrun, every rank's run folder is rank 0's (runtime/distributed.torchrun_run_dir), whenever
    each rank started. Runs first: the other callbacks and Hydra itself then use that folder."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "TORCHELASTIC_RUN_ID" not in os.environ:
            return
        from lenet_exp.runtime.distributed import torchrun_run_dir

        with refused_here(config):  # the first to read the folder under torchrun
            folder = torchrun_run_dir(config.hydra.run.dir)
        with read_write(config.hydra.run):
            config.hydra.run.dir = folder


class OutputFolder(Callback):
    """Stops before anything runs when the run (or sweep) folder cannot be created and written."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        with refused_here(config):  # hydra.run.dir=${oc.env:NAME}/... of a variable not set: one sentence too
            check_output_folder(OmegaConf.select(config, key), key)


class RunLock(Callback):
    """Takes the run folder's lock (runtime/lock.py) before Hydra writes its .hydra/ files there, and
    holds it until the run ends; a folder another process writes is refused before anything. (lenet_exp.run
    takes the lock itself first, so that a busy folder is a UserError there, not the end of the program.)"""

    def __init__(self) -> None:
        self.taken: str | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with refused_here(config):
            self.taken = lock_folder(config, "run")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        from lenet_exp.runtime.lock import release

        if self.taken is not None:
            release(self.taken)
            self.taken = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with refused_here(config, NOTHING_RUN):
            self.taken = lock_folder(config, "sweep")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.on_run_end(config)


def lock_folder(config: DictConfig, mode: str) -> str | None:
    """The run's (``mode="run"``) or grid sweep's (``"sweep"``) folder, locked (``runtime/lock.py``) until released
    or the end of this process; None if this process held it already, or for another sweeper's sweep. Two grid
    sweeps started into one folder at once each found it empty, then wrote each other's job folders: one's results
    under the other's settings. (The workers of one study share their folder on purpose, each trial with a number
    of its own, and take none.)"""
    from lenet_exp.runtime.lock import FolderInUse, acquire

    if mode == "sweep" and not grid_sweep(config):
        return None
    folder = config.hydra[mode].dir
    try:
        return folder if acquire(folder) else None
    except FolderInUse as busy:
        given = any(override.startswith(f"hydra.{mode}.dir=") for override in config.hydra.overrides.hydra)
        if given and mode == "run":
            raise  # the lock's own sentence: wait for the other writer
        if given:
            why = "whose jobs this sweep's would replace; give this sweep another hydra.sweep.dir=<folder>, or wait"
            why += " for that one to end"
        else:  # the user chose no folder: Hydra's default, named by the second the run or sweep started
            why = f"that started in the same second, as Hydra names a {mode}'s folder by the second; give each "
            why += f"{mode} its own hydra.{mode}.dir=<folder>, or "
            why += "start them as one sweep (-m seed=1,2)" if mode == "run" else "make them one sweep"
        kind = "process" if mode == "run" else "sweep"
        raise UserError(f"{busy.run} is in use by another lenet_exp {kind} (PID {busy.holder}) {why}.") from None


def grid_sweep(config: DictConfig) -> bool:
    """Whether the sweep is Hydra's basic sweeper's (a grid of jobs numbered 0, 1, ...)."""
    return str(OmegaConf.select(config, "hydra.sweeper._target_")).endswith(".BasicSweeper")


class EarlierRun(Callback):
    """Refuses a run (or a grid sweep) whose folder holds an earlier one, before Hydra writes into it: a fixed
    ``hydra.run.dir`` given again would have its .hydra/ files, checkpoints and metrics.json replaced. Ranks
    1.. of a DDP run, and a run that SLURM or torchrun starts again, use their run's folder on purpose."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from lenet_exp.runtime.lock import launched_rank

        again = (
            os.environ.get(name, "0") not in ("", "0") for name in ("SLURM_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT")
        )
        if launched_rank() or any(again) or _checked_by_caller.get():
            return
        with refused_here(config):
            check_no_earlier_run(config.hydra.run.dir, config.get("ckpt_path"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _checked_by_caller.get():
            return
        with refused_here(config, NOTHING_RUN):
            check_no_earlier_sweep(config)


def check_no_earlier_run(folder: str | Path, ckpt_path: str | None = None) -> None:
    """Refuse ``folder`` as a new run's folder if a run left its metrics.json or last.ckpt there (``ckpt_path``:
    the checkpoint the new run continues from, which may be that run's own)."""
    run = Path(folder)
    if not (metrics_file(run).is_file() or last_checkpoint(run).is_file()):
        return
    if ckpt_path and Path(run).resolve() in Path(str(ckpt_path)).resolve().parents:
        raise UserError(
            f"{run} holds the run that ckpt_path={ckpt_path} belongs to, and ckpt_path= continues into a new run "
            "folder: leave out hydra.run.dir (or give another folder), and that run stays as it is."
        )
    if metrics_file(run).is_file():
        raise UserError(
            f"{run} holds a finished run, whose metrics.json, checkpoints and settings this run would replace; give "
            "this run another folder with hydra.run.dir=<folder>, or delete that one first."
        )
    if last_checkpoint(run).is_file():
        raise UserError(
            f"{run} holds an unfinished run, whose checkpoints and settings this run would replace; continue it with "
            f"{resume_command(run)}, or give this run another folder with hydra.run.dir=<folder>."
        )


def check_no_earlier_sweep(config: DictConfig) -> None:
    """Refuse a sweep into a folder whose job folders hold runs it could replace, finished, unfinished or failed
    (a failed job's error.txt would stay beside the new job's results, and the report would list both): a grid
    sweep's (Hydra's basic sweeper) jobs 0, 1, ... (or the folders ``hydra.sweep.subdir`` names), or the trials of
    a study other than the one whose runs they are (its trials are numbered from 0 again). The workers of one
    study share its folder on purpose: each trial has a number of its own."""
    sweep = Path(config.hydra.sweep.dir)
    jobs = job_folders(sweep) if sweep.is_dir() else []
    mine = OmegaConf.to_container(config.hydra.sweeper, resolve=False)
    grid = grid_sweep(config)
    # Where this sweep's class says a study is stored (study_of, which lenet_exp's Optuna sweeper offers: two
    # studies of one name in two storages are two); the class is this sweep's own, never one a job folder names.
    where = getattr(_sweeper_class(config), "study_of", lambda settings, sweep_dir, started_in: None)

    def of_an_earlier_sweep(job: Path) -> bool:
        """A job that has run, or has started, of another sweep. Started: it holds Hydra's files of its settings,
        also while it runs or once it was interrupted before its first checkpoint, and a new sweep would rewrite
        them (and the running job's result say another's). A job killed while Hydra wrote them holds a file that
        cannot be read, and nothing a new sweep could replace."""
        ran = has_run(job)
        if grid and ran:
            return True
        stored = job_sweeper(job)  # read once per job
        if not ran and stored == (None, None):
            return False
        return grid or not same_study(stored, mine, sweep, config.hydra.runtime.cwd, where)

    earlier = [j for j in jobs if of_an_earlier_sweep(j)]
    if earlier:
        # an interrupted sweep's jobs go on in their folders: the same sweep again would start them from nothing
        unfinished = [j for j in earlier if last_checkpoint(j).is_file() and not metrics_file(j).is_file()]
        go_on = (
            f" ({len(unfinished)} of them unfinished: finish each with python -m lenet_exp.resume <its folder>, such "
            f"as {unfinished[0]}; the jobs without a folder can run as a sweep into another folder)"
            if unfinished
            else ""
        )
        raise UserError(
            f"{sweep} holds the runs of an earlier sweep ({len(earlier)} job folder{'s' * (len(earlier) != 1)}), "
            f"which this sweep's jobs could replace{go_on}; give this sweep another folder with "
            "hydra.sweep.dir=<folder>, or delete that one first."
        )


def _sweep_of(sweeper: Any) -> tuple[Any, Any]:
    """Which sweep made a job, as its sweeper settings say: the sweeper's class and its study's name (as written)."""
    return value_at(sweeper, "_target_"), value_at(sweeper, "study_name")


def same_study(
    job: tuple[Any, Any], settings: Any, sweep_dir: Path, started_in: Any, study_of: Callable[[Any, str, str], Any]
) -> bool:
    """Whether a job of the sweep folder ``sweep_dir``, whose sweeper settings and start folder are ``job``
    (``job_sweeper``'s answer), is a trial of the study that the sweeper settings ``settings`` (as written, of a
    command started in ``started_in``) describe: the same sweeper class and study name, stored where
    ``study_of`` (the sweeper class's answer to where settings store their study) says for both."""
    theirs, their_start = job
    if _sweep_of(theirs) != _sweep_of(settings):
        return False
    return study_of(theirs, str(sweep_dir), str(their_start)) == study_of(settings, str(sweep_dir), str(started_in))


def job_sweeper(job: Path) -> tuple[Any, Any]:
    """The job folder's sweeper settings and the folder its command started in, from its .hydra/hydra.yaml read
    as written (data: nothing named there is imported); (None, None) for a file that cannot be read."""
    try:
        stored = as_written(hydra_settings_file(job))
    except Exception:  # damaged or missing: not a job of this study
        return None, None
    return value_at(stored, "hydra", "sweeper"), value_at(stored, "hydra", "runtime", "cwd")


NOTHING_RUN = "Nothing was run."  # ends the sentence of a sweep refused before its first job


class SweepChecks(Callback):
    """Settings of a sweep that would fail every one of its jobs are refused before the first job starts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global running_sweep
        with refused_here(config, NOTHING_RUN):  # the first to read the sweep's settings
            if not _checked_by_caller.get():
                check_sweep(config)
            running_sweep = (str(config.hydra.sweep.dir), str(OmegaConf.select(config, "hydra.launcher._target_")))


# The folder and the launcher of the sweep this process runs, for the sentence of its interruption.
running_sweep: tuple[str, str] | None = None


def check_sweep(config: DictConfig) -> None:
    """What SweepChecks refuses, as a UserError (lenet_exp.sweep calls it before Hydra's callbacks): the metric
    the sweep optimizes, then what the chosen sweeper checks itself before its sweep folder exists. A sweeper
    class may offer ``check_before_sweep(config)`` for that (lenet_exp's Optuna sweeper checks its settings and
    opens its study there, once for the sweep); none is named here."""
    from lenet_exp.runtime.checks import check_optimized_metric

    check_optimized_metric(config.get("optimized_metric"), config.data.get("val_size", 0))
    if config.hydra.get("output_subdir") is None:  # the jobs ran, and lenet_exp.sweep returned none of them
        raise UserError(
            "hydra.output_subdir=null leaves a sweep's jobs without their .hydra/ settings, by which lenet_exp.sweep, "
            "the report and resume find and read each job; leave it at .hydra (its default)."
        )
    check_grid(config)
    check_launcher(config)
    sweeper = _sweeper_class(config)
    if sweeper is None:  # Hydra's traceback, and an empty sweep folder left
        raise UserError(
            f"hydra.sweeper._target_={config.hydra.sweeper.get('_target_')} cannot be imported; lenet_exp's "
            "sweepers are its Optuna sweeper (hparams_search=lenet_optuna, or hydra/sweeper=optuna, with the "
            "settings of docs/search.md) and Hydra's basic one (-m with key=a,b), chosen without a _target_."
        )
    check = getattr(sweeper, "check_before_sweep", None)
    if check is not None:
        check(config)


def check_grid(config: DictConfig) -> None:
    """Hydra's basic sweeper (a grid: every combination of the lists and ranges given, on the command line or in
    ``hydra.sweeper.params``) cannot draw from an ``interval()``, and would end in its own traceback: say where it
    belongs instead. A list of no value (``seed='range(3,1)'``) would run no job and end as if it had succeeded."""
    if not grid_sweep(config):
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    typed = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)  # interpolations unresolved
    params = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if params else {}
    typed += [f"{key}={value}" for key, value in params.items()]  # a grid written in a config file
    overrides = OverridesParser.create().parse_overrides(typed)
    for override in overrides:
        key, value = override.key_or_group, override.input_line.split("=", 1)[1]  # as the user typed it
        if override.value_type == ValueType.INTERVAL_SWEEP:
            interval = override.value()
            low, high = interval.start, interval.end
            raise UserError(
                f"{key}={value} draws values from an interval, which a grid sweep cannot: list the values to run "
                f"({key}={low:g},{high:g}) or give a range(), or search the interval in a study: "
                f"hparams_search=lenet_optuna '{key}={value}' (docs/search.md)."
            )
        if override.value_type == ValueType.RANGE_SWEEP and not list(override.sweep_string_iterator()):
            raise UserError(
                f"{key}={value} holds no value (a range runs from its start up to, not including, its stop), so the "
                f"sweep would run no job; give a range with values, such as {key}=range(1,4) for 1, 2 and 3."
            )
    check_job_folders(config, overrides)


def check_job_folders(config: DictConfig, overrides: list[Any]) -> None:
    """Two jobs of a grid sweep whose ``hydra.sweep.subdir`` names one folder: the second replaced the first's
    results without a word (``${hydra:job.override_dirname}`` leaves out the keys of
    ``hydra.job.config.override_dirname.exclude_keys``, so ``threads=1,2`` or ``data.data_dir=a,b`` named both jobs
    alike; a subdir without the job's number or a swept key names every job alike). Each job's folder is named
    here from its overrides, as Hydra's basic sweeper makes them (``overrides``: the sweep's, parsed); a name that
    needs more than a key's value (a config group's files) is not checked."""
    # Hydra's own functions (private to it) that name a job and make a grid's jobs: the names come out as Hydra's
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    if any(override.value_type == ValueType.GLOB_CHOICE_SWEEP for override in overrides):
        return  # glob(): the options of a config group, which only Hydra's config loader lists
    subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir"))
    jobs = BasicSweeper.split_arguments(overrides, None)[0]
    if len(jobs) < 2 or subdir in ("${hydra.job.num}", "${hydra:job.num}"):  # the default: a folder each
        return

    def leaf(key: str) -> bool:  # a key of the config that holds a value (not a config group's node)
        found = OmegaConf.select(config, key, default=config, throw_on_resolution_failure=False)
        return not OmegaConf.is_config(found)

    swept = [override for override in overrides if override.is_sweep_override()]  # the others: in config already
    if any(  # a config group's choice, a key added or removed: their effect needs Hydra's composing
        override.is_add() or override.is_force_add() or override.is_delete() or not leaf(override.key_or_group)
        for override in swept
    ):
        return
    keys = {override.key_or_group for override in swept}
    naming = config.hydra.job.config.override_dirname
    exclude, item_sep, kv_sep = list(naming.exclude_keys), naming.item_sep, naming.kv_sep
    whole = OmegaConf.to_container(config, resolve=False)
    named: dict[str, int] = {}
    for number, job in enumerate(jobs):
        parsed = OverridesParser.create().parse_overrides(job)
        try:
            mine = OmegaConf.create(whole)
            for override in (each for each in parsed if each.key_or_group in keys):  # its own values
                OmegaConf.update(mine, override.key_or_group, override.value(), merge=False)
            mine.hydra.job.num = number
            mine.hydra.job.override_dirname = get_overrides_dirname(parsed, exclude, item_sep, kv_sep)
            mine.hydra.sweep.subdir = subdir.replace("${hydra:", "${hydra.")  # Hydra's resolver reads its own
            name = str(OmegaConf.select(mine, "hydra.sweep.subdir", throw_on_resolution_failure=True))
        except Exception:  # noqa: BLE001  (what this cannot work out without Hydra composing the job)
            return
        if name in named:
            raise UserError(
                f"jobs {named[name]} and {number} of this sweep would both write the folder {name} "
                f"(hydra.sweep.subdir={subdir}), the second replacing the first's results; give hydra.sweep.subdir "
                "a name that tells them apart, such as ${hydra.job.num} (the default) or one naming the key they "
                "differ in."
            )
        named[name] = number


def check_launcher(config: DictConfig) -> None:
    """``hydra.launcher.n_jobs=0`` of the joblib launcher: joblib's traceback after the sweep folder was made."""
    launcher = config.hydra.get("launcher") or {}
    if "joblib" in str(launcher.get("_target_", "")) and launcher.get("n_jobs") == 0:
        raise UserError(
            "hydra.launcher.n_jobs=0 runs no job; give how many jobs run at once, such as hydra.launcher.n_jobs=2 "
            "(-1: as many as the machine has cores)."
        )


def _sweeper_class(config: DictConfig) -> type | None:
    """The class ``hydra.sweeper._target_`` names (this command's config, which Hydra imports as well); None when
    it cannot be imported."""
    from lenet_exp.runtime.versions import located

    found = located(config.hydra.sweeper.get("_target_"))
    return found if isinstance(found, type) else None


class SweepRefused(UserError, CompactHydraException):
    """What a sweeper raises when its sweep cannot start, before any job (what SweepChecks could not see, such as
    a storage that went away since), or cannot go on (``nothing_run=False``: its storage failed between trials):
    Hydra prints a CompactHydraException's text alone, without a traceback, then its own line about
    HYDRA_FULL_ERROR; ``fail`` cannot be used there, as lenet_exp.sweep must raise."""

    def __init__(self, sentence: str, nothing_run: bool = True) -> None:
        super().__init__(sentence)
        self.sentence, self.nothing_run = sentence, nothing_run

    def __str__(self) -> str:
        return f"error: {self.sentence}" + (f" {NOTHING_RUN}" if self.nothing_run else "")


class FailedJob(UserError, CompactHydraException):
    """What a failed job of a sweep raises: Hydra records the job as failed and runs the others, then ends
    the sweep by printing this exception's text alone (no traceback, as for any CompactHydraException):
    the list of the sweep's failed jobs, read from their error.txt files once every job has run."""

    def __init__(self, sentence: str, sweep_dir: str) -> None:
        super().__init__(sentence, sweep_dir)
        self.sentence, self.sweep_dir = sentence, sweep_dir

    def __str__(self) -> str:
        failed = failures(Path(self.sweep_dir))
        if not failed:  # read before the sweep ended (FailedJobs, a log line): the job's own sentence
            return self.sentence
        jobs = len(job_folders(Path(self.sweep_dir)))
        listed = "; ".join(each.rstrip(".") for each in failed)  # each reason a sentence of its own
        return f"error: {len(failed)} of {jobs} jobs of the sweep failed (each folder keeps its error.txt): {listed}."


def failures(sweep: Path) -> list[str]:
    """``job N (overrides): reason`` for each job folder of ``sweep`` that holds an error.txt."""
    found = []
    for job in (j for j in job_folders(sweep) if error_file(j).is_file()):
        try:
            overrides = " ".join(str(o) for o in as_written(overrides_file(job)))
        except Exception:  # a folder being written, or damaged: its number and reason still say enough
            overrides = "?"
        found.append(f"job {job.name} ({overrides}): {error_file(job).read_text().strip()}")
    return found


def failure_reason(job_return: JobReturn) -> str:
    """Why a job failed, as its error.txt and its trial in a study record it: a UserError's sentence (also when
    Hydra's instantiate wrapped it), else the exception's type and message."""
    # JobReturn's public return_value raises the job's exception again; Hydra keeps the exception itself only in
    # this private field.
    error = job_return._return_value
    cause = user_error(error) if isinstance(error, BaseException) else None
    return getattr(cause, "sentence", str(cause)) if cause is not None else f"{type(error).__name__}: {error}"


class FailedJobs(Callback):
    """Writes ``error.txt`` into a failed job's folder and logs which job failed and why.

    The other jobs of the sweep run on; Hydra exits non-zero at the end, naming the first failure.
    """

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED or config.hydra.mode != RunMode.MULTIRUN:
            return  # a single run (lenet_exp.run) raises its error to the caller
        reason = failure_reason(job_return)
        atomic_write(error_file(config.hydra.runtime.output_dir), (reason + "\n").encode())
        shown = " ".join(o for o in job_return.overrides if not o.startswith("++hydra.")) or "no overrides"
        job = f"job {Path(config.hydra.runtime.output_dir).name} ({shown})"  # named as its folder (a study's: trial)
        log.error(f"{job} failed: {reason}")
