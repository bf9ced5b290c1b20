"""A trial as its job sees it: which trial the sweeper handed the job, and that trial, opened in the study
that the job's own Hydra settings name. lenet_exp/trial.py (the job's pruning callback) imports this module in
every run, to learn whether it trains a trial: importing it loads nothing else of the study (a job that trains
no trial opens none). Nothing here imports the training side."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

TRIAL_ENV = "LENET_EXP_TRIAL"  # a job's trial, set by the sweeper through hydra.job.env_set


@dataclass
class TrialHandoff:
    """Which trial a job trains, set by the sweeper for that job alone (``hydra.job.env_set``). Where the
    study is, its name and its pruner the job reads from its own Hydra settings (``open_job_trial``), so
    that no URL (nor a password in one) goes through the job's overrides and the launchers' log lines."""

    trial_id: int
    number: int

    def override(self) -> str:
        return f"++hydra.job.env_set.{TRIAL_ENV}={self.trial_id}:{self.number}"

    @classmethod
    def from_env(cls) -> TrialHandoff | None:
        found = re.fullmatch(r"(\d+):(\d+)", os.environ.get(TRIAL_ENV, ""))
        return cls(int(found[1]), int(found[2])) if found else None


def open_job_trial(handoff: TrialHandoff) -> optuna.Trial:
    """The job's trial, in the study its Hydra settings name (``hydra.sweeper``; the default SQLite file is in
    the sweep folder, the parent of the job's folder), with the study's pruner."""
    import optuna
    from hydra.core.hydra_config import HydraConfig

    from hydra_plugins.lenet_exp_optuna._plan import make_pruner
    from hydra_plugins.lenet_exp_optuna._storage import open_storage, storage_url

    hydra = HydraConfig.get()
    sweeper = hydra.sweeper
    url = storage_url(sweeper.get("storage"), str(Path(hydra.runtime.output_dir).parent), hydra.runtime.cwd)
    pruner = make_pruner(sweeper.get("pruner", "none"), sweeper.get("pruner_options"))
    # The job only reports; the sampler of the worker that asked chose its parameters.
    study = optuna.load_study(
        study_name=sweeper.study_name,
        storage=open_storage(url, ready=True),
        sampler=optuna.samplers.RandomSampler(),
        pruner=pruner,
    )
    return optuna.Trial(study, handoff.trial_id)


def finished_elsewhere(err: BaseException) -> bool:
    """Whether ``err`` (raised by a report to the job's trial) says the trial is no longer running: another
    worker marked it failed, having taken its job for dead."""
    import optuna

    return isinstance(err, optuna.exceptions.UpdateFinishedTrialError)
