"""The training side of a study's trial (docs/search.md): when lenet_exp's Optuna sweeper handed this job a
trial, the callback with which the job reports each epoch to it and stops once the study's pruner says so.
The study itself (storage, queue, checks, search space) is the sweeper plugin's (hydra_plugins/lenet_exp_optuna);
this module asks the plugin's hand-off (_job, which loads nothing else of the study) whether the job trains a
trial, opens the study only then, and the plugin never imports this one."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl

from lenet_exp.errors import first_line, root_cause
from lenet_exp.runtime.checks import UNBOUNDED, objectives
from lenet_exp.runtime.results import flat_metrics

if TYPE_CHECKING:
    import optuna

    from hydra_plugins.lenet_exp_optuna._job import TrialHandoff

log = logging.getLogger("lenet_exp")


def trial_callbacks(optimized_metric: Any) -> list[pl.Callback]:
    """The pruning callback when this process trains a trial of a study (else nothing)."""
    from hydra_plugins.lenet_exp_optuna._job import TrialHandoff

    handoff = TrialHandoff.from_env()
    if handoff is None:
        return []
    from hydra.core.hydra_config import HydraConfig

    return [PruneTrial(handoff, reported(optimized_metric), str(HydraConfig.get().sweeper.get("study_name")))]


def reported(optimized_metric: Any) -> str | None:
    """The metric a trial reports after every epoch: the one objective, also written as a list of one
    (``optimized_metric=[val_acc]``); None for several, which Optuna prunes none of."""
    metrics = objectives(optimized_metric)
    return metrics[0] if len(metrics) == 1 else None


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
                from hydra_plugins.lenet_exp_optuna._job import open_job_trial

                self._trial = open_job_trial(self.handoff)
            except Exception as err:  # a node that cannot reach the database: train on, unpruned
                log.warning(
                    f"trial {self.handoff.number} cannot reach its study ({first_line(root_cause(err))}); no pruning"
                )

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
        from hydra_plugins.lenet_exp_optuna._job import finished_elsewhere

        try:
            self._trial.report(value, step=epoch)
            return self._trial.should_prune()
        except Exception as err:
            if finished_elsewhere(err):  # marked failed by a worker that took us for dead
                log.warning(f"trial {self.handoff.number} is no longer running in the study; training goes on alone")
            else:  # the database went away, a lock held too long
                why = first_line(root_cause(err))  # SQLite's words, not Optuna's "an exception ... during the commit"
                log.warning(f"trial {self.handoff.number} cannot report epoch {epoch} ({why}); no pruning")
        self._trial = None
        return False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Ctrl-C or SIGTERM: the worker marks the trial failed, and lenet_exp.resume of the job's folder finishes
        the run's files but not the trial (its metrics.json has no trial), which the resume line does not say."""
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        if trainer.is_global_zero and isinstance(exception, KeyboardInterrupt | SIGTERMException):
            log.warning(  # a SLURM requeue runs the job again in its folder, and the trial goes on: "unless"
                f"trial {self.handoff.number} of study {self.study} is marked failed when its worker stops, unless "
                "SLURM requeues its job: resuming this folder then finishes its run outside the study; give the "
                "study's command again to go on with new trials"
            )

    def record(self) -> dict[str, Any]:
        """metrics.json's ``trial``: the study, the trial's number, and whether (after which epoch) it was pruned."""
        return {"study": self.study, "number": self.handoff.number, "pruned_after": self.pruned_after}
