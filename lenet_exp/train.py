"""One run, top to bottom: check the config; build data, model and trainer; fit; test; record."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, ProgressBar
from pytorch_lightning.plugins import TorchCheckpointIO

from lenet_exp import many_steps
from lenet_exp.callbacks import BestCheckpoint, EpochLine, EpochTimer, KeptStop
from lenet_exp.errors import UserError, built, check_callable, traceback_codes
from lenet_exp.loggers import RunMLFlowLogger, RunTensorBoardLogger, close_loggers
from lenet_exp.runtime.atomic import AtomicCheckpointIO
from lenet_exp.runtime.checkpoints import (
    ConfigInCheckpoint,
    check_architecture,
    check_epochs_left,
    check_no_step_limit,
)
from lenet_exp.runtime.checks import check_run, check_takes_images
from lenet_exp.runtime.console import quiet_lightning_hints
from lenet_exp.runtime.distributed import (
    RankWatch,
    RankZeroResults,
    ddp_scope,
    dead_ranks_named,
    point_ddp_ranks_at_this_job,
)
from lenet_exp.runtime.faults import machine_faults, resumable
from lenet_exp.runtime.lock import launched_rank, run_lock
from lenet_exp.runtime.requeue import requeued_checkpoint
from lenet_exp.runtime.results import environment, flat_metrics, git_revision, hyperparameters, write_json
from lenet_exp.runtime.run_folder import (
    CHECKPOINTS,
    config_file,
    last_checkpoint,
    metrics_file,
    override,
    resume_needs,
)
from lenet_exp.runtime.stored_config import Stored, open_stored, resume_arguments
from lenet_exp.runtime.threads import job_devices, skip_absent_nvml, torch_threads
from lenet_exp.runtime.writes import atomic_write
from lenet_exp.trial import PruneTrial, trial_callbacks

log = logging.getLogger("lenet_exp")
quiet_lightning_hints()  # its warnings about what lenet_exp does on purpose


def train(
    cfg: DictConfig, finishing: bool = False, tested: str | None = None, opened: Stored | None = None
) -> dict[str, Any]:
    """Run the experiment ``cfg`` describes; return what it wrote to ``metrics.json``.

    With ``cfg.ckpt_path`` set, training continues from that checkpoint's next epoch. ``finishing``: the
    checkpoint is the run's own last.ckpt (lenet_exp.resume), which may hold every epoch and still lack
    its final test; otherwise a checkpoint with nothing left to train is refused. ``tested``: what
    ``check_run(cfg)`` answered, when the caller checked ``cfg`` already (``__main__.job``); ``opened``:
    ``cfg.ckpt_path`` as the gate opened it already (resume opens it with its run folder).
    """
    tested = tested or check_run(cfg, new=not finishing)  # which weights the final test uses: "best" or "last"
    cfg = with_seed(cfg)
    threads = torch_threads(cfg.get("threads"))
    torch.set_num_threads(threads)
    skip_absent_nvml()  # Lightning's fork-safe CUDA check costs every optimizer step where NVML is absent
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.run_dir)
    if requeued := requeued_checkpoint(run_dir, cfg.get("ckpt_path")):  # SLURM runs this job again
        cfg = OmegaConf.merge(cfg, {"ckpt_path": str(requeued)})
        finishing = True  # it may hold every epoch already and lack only its final test

    with run_lock(run_dir):  # one writer per run folder (a no-op where Hydra or resume holds it)
        with machine_faults(run_dir):  # a file where TensorBoard's folder belongs: its writer is made here
            datamodule, module, trainer, timer, stored = build(cfg, run_dir, finishing, opened)
        with ddp_scope(), machine_faults(run_dir):
            if cfg.get("threads") is not None:  # Lightning's DDP sets its own count unless this is set
                os.environ["OMP_NUM_THREADS"] = str(threads)  # (ddp_scope puts it back after the run)
            point_ddp_ranks_at_this_job()
            with resumable(trainer, run_dir), dead_ranks_named(trainer, str(run_dir)), sized_by_lightning():
                # Lightning reads ckpt_path itself, for the optimizer's, loops' and callbacks' states
                trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
            # the last epoch's train/* and val/* (or test/*); a fit with no epoch left has them from last.ckpt
            final = {**module.epoch_metrics, **trainer.callback_metrics}
            with resumable(trainer, run_dir, testing=True):
                chosen = test(trainer, module, datamodule, tested)
            final.update(trainer.callback_metrics)  # test/* on the tested weights
            return record(cfg, trainer, {**flat_metrics(final), **chosen}, timer, stored.git_rev, run_dir)


SEED_ENV = "PL_GLOBAL_SEED"  # where pl.seed_everything leaves the seed; the DDP ranks Lightning starts inherit it


def with_seed(cfg: DictConfig) -> DictConfig:
    """``cfg`` with a seed: for ``seed=null`` one drawn now, and written into the run's .hydra/config.yaml (and so
    into its checkpoints and metrics.json), so that resume, and a rerun with ``seed=<it>``, reproduce the run."""
    if cfg.seed is not None:
        return cfg
    child = os.environ.get("LOCAL_RANK", "0") != "0"  # a DDP rank that Lightning started from rank 0's command
    if child and SEED_ENV in os.environ:
        return OmegaConf.merge(cfg, {"seed": int(os.environ[SEED_ENV])})
    if max(int(os.environ.get(key, "1") or 1) for key in ("WORLD_SIZE", "SLURM_NTASKS")) > 1:
        raise UserError(
            "seed=null would make every process that torchrun or srun started draw a seed of its own; "
            "give one seed, such as seed=42."
        )
    seed = secrets.randbelow(2**31)  # what every seeded generator accepts
    cfg = OmegaConf.merge(cfg, {"seed": seed})
    stored = config_file(Path(cfg.run_dir))  # Hydra wrote it before the run began
    if stored.is_file():
        saved = OmegaConf.load(stored)
        saved.seed = seed
        atomic_write(stored, OmegaConf.to_yaml(saved).encode())
    log.info(f"seed=null: drew seed {seed} (seed={seed} runs this again)")
    return cfg


def keeps_no_config() -> bool:
    """Whether Hydra keeps this run's config nowhere (``hydra.output_subdir=null``), said by rank 0 only (Lightning
    starts DDP ranks 1.. so on purpose): lenet_exp.resume reads the run's .hydra folder."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and HydraConfig.get().output_subdir is None and not launched_rank()


def build(
    cfg: DictConfig, run_dir: Path, finishing: bool = False, opened: Stored | None = None
) -> tuple[Any, pl.LightningModule, pl.Trainer, EpochTimer, ConfigInCheckpoint]:
    """The data module, the LightningModule and the Trainer with its callbacks and loggers, from ``cfg``."""
    datamodule = built(cfg.data)
    module = built(cfg.model)
    check_takes_images(module)  # a network of one's own that does not fit the images: one sentence, not torch's
    # made at the first step: a keyword they do not take is said now
    check_callable(
        "model.optimizer", getattr(module, "optimizer", None), "{_target_: torch.optim.SGD, _partial_: true}"
    )
    scheduler = "{_target_: torch.optim.lr_scheduler.CosineAnnealingLR, _partial_: true}"
    check_callable("model.scheduler", getattr(module, "scheduler", None), scheduler)
    if cfg.get("ckpt_path"):  # data from a file: through the gate, and weights that fit the model
        if opened is None or opened.checkpoint_path != Path(cfg.ckpt_path):
            # nothing is built from its config (cfg is the user's own), only its weights are read
            trusted = cfg.get("trusted_targets") or ()
            opened = open_stored(cfg.ckpt_path, trusted, builds=(), hint="trusted_targets")
        check_architecture(opened.checkpoint, module, cfg.ckpt_path)
        check_no_step_limit(cfg.trainer.get("max_steps"), cfg.ckpt_path)
        if not finishing:
            check_epochs_left(opened.checkpoint, cfg.ckpt_path, cfg.trainer.max_epochs)
    resolved = OmegaConf.to_container(cfg, resolve=True)  # as every checkpoint stores it
    resume_needs(run_dir, resume_arguments(resolved, run_dir))  # before any resume line this run may print
    timer, stored = EpochTimer(), ConfigInCheckpoint(resolved, git_revision())
    # an entry set to null (callbacks.progress_bar=null, Hydra's way to drop one in a file) is left out, as ~ does
    callbacks = [built(c) for c in cfg.get("callbacks", {}).values() if c is not None]
    for each in callbacks:  # a ModelCheckpoint of the user's own without dirpath: the run's checkpoints/ folder
        if isinstance(each, ModelCheckpoint) and each.dirpath is None:  # (Lightning's: inside the logger's folder)
            each.dirpath = str((run_dir / CHECKPOINTS).resolve())
    if cfg.trainer.get("enable_progress_bar") is False:  # Lightning refuses a progress bar callback with it
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if cfg.trainer.get("enable_checkpointing") is False:  # Lightning refuses checkpoint callbacks with it
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        log.info("trainer.enable_checkpointing=false: no checkpoints are written, so this run cannot be resumed")
    elif keeps_no_config() and not finishing:
        log.info(
            "hydra.output_subdir=null: this run keeps no .hydra folder, so lenet_exp.resume cannot continue it; "
            f"python -m lenet_exp {override('ckpt_path', last_checkpoint(run_dir))} with its settings can"
        )
    own = bool(cfg.get("ckpt_path")) and Path(cfg.ckpt_path).resolve().parent == (run_dir / CHECKPOINTS).resolve()
    callbacks += [timer, EpochLine(timer), stored, RankWatch(str(run_dir)), KeptStop(resuming=own)]
    if cfg.get("ckpt_path"):  # the schedule comes back with the weights: it must reach to this run's end
        callbacks.append(RestoredSchedule(cfg.ckpt_path))
    callbacks += trial_callbacks(cfg.get("optimized_metric"))  # a trial of a study: report epochs, maybe prune
    chosen = {} if cfg.trainer.get("logger") is False else cfg.get("logger") or {}  # false: Lightning's logger=none
    loggers = [built(each) for each in chosen.values()]  # logger=[tensorboard,csv]
    devices = job_devices(cfg.trainer.accelerator, cfg.trainer.get("devices"))  # a GPU per parallel sweep job
    trainer = trainer_from(cfg.trainer, devices=devices, callbacks=callbacks, logger=loggers or False)
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # trainer.plugins replaced, without a writer
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()  # of its own: checkpoints are still written whole
    if cfg.get("ckpt_path") and isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
        trainer.strategy.checkpoint_io.hand_over(cfg.ckpt_path, opened.checkpoint)  # fit reads no file again
    RankZeroResults.install(trainer)  # ddp_spawn, ddp_fork: what record() reads comes back from rank 0
    first_epoch = opened.checkpoint.get("epoch", -1) + 1 if cfg.get("ckpt_path") else 0
    for each in loggers:  # once the Trainer is made: a setting it refuses leaves no event file
        if isinstance(each, RunTensorBoardLogger):
            if own:
                each.resumes()
            each.starts_at(first_epoch)
        if isinstance(each, RunMLFlowLogger):  # a resume continues its folder's MLflow run; a new run never another's
            each.continues = finishing or own
    return datamodule, module, trainer, timer, stored


class RestoredSchedule(Callback):
    """``ckpt_path=``'s schedule, once Lightning has restored it, must reach to this run's end (a class, not a
    lambda: ddp_spawn pickles the callbacks into its processes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        many_steps.check_restored_schedule(trainer, self.path)


def trainer_from(settings: DictConfig, **given: Any) -> pl.Trainer:
    """Lightning's Trainer from the ``trainer.*`` settings. The combinations it refuses (``trainer.strategy=fsdp``
    on the CPU, a precision the accelerator lacks, ...) are one sentence, Lightning's own reason, not Hydra's
    wrapped traceback: they are settings to change, found before any data is read."""
    from hydra.errors import InstantiationException
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        # plain dicts and lists, as Lightning takes them: max_time={minutes: 20} is a timedelta's keys
        return instantiate(settings, _convert_="partial", **given)
    except InstantiationException as err:
        # ModuleNotFoundError: a setting whose package is not installed (trainer.precision=transformer-engine)
        if not isinstance(err.__cause__, ValueError | TypeError | MisconfigurationException | ModuleNotFoundError):
            raise
        if isinstance(err.__cause__, ModuleNotFoundError):
            reason = " ".join(str(err.__cause__).split())
            raise UserError(
                f"Lightning's Trainer needs a package that is not installed here for these trainer.* settings: "
                f"{reason} Install it, or change the trainer.* setting that needs it."
            ) from None
        raise refused(err.__cause__) from None


@contextmanager
def sized_by_lightning() -> Iterator[None]:
    """What Lightning refuses once it knows an epoch's batches, at the start of fit (``trainer.val_check_interval``
    beyond them, ``trainer.limit_train_batches=0.01`` of fewer than 100): one sentence, as ``trainer_from``'s, not
    a traceback. Only errors raised by Lightning's own code under its fit loop's ``setup_data``: a bug elsewhere
    (a data module's loader, torch) keeps its traceback."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        yield
    except (ValueError, MisconfigurationException) as err:
        codes, lightning = traceback_codes(err), lambda code: "pytorch_lightning" in code.co_filename
        if not codes or not lightning(codes[-1]) or not any(c.co_name == "setup_data" and lightning(c) for c in codes):
            raise
        raise refused(err) from None


def refused(err: BaseException) -> UserError:
    reason = " ".join(str(err).split())  # Lightning's message, on one line
    reason += "" if reason.endswith((".", "!", "?")) else "."
    return UserError(
        f"Lightning's Trainer refuses these trainer.* settings: {reason} Change the trainer.* setting it names."
    )


def test(trainer: pl.Trainer, module: pl.LightningModule, datamodule: Any, tested: str) -> dict[str, Any]:
    """The final test, on the best epoch's weights (``tested="best"``) or the last's; returns which epoch was best."""
    best = next((c for c in trainer.checkpoint_callbacks if isinstance(c, BestCheckpoint) and c.active), None)
    if tested == "best" and best is not None and not best.best_model_path:
        if trainer.fast_dev_run:  # Lightning's checkpoint callbacks do nothing in it
            why = "trainer.fast_dev_run saves no checkpoint"
        elif trainer.global_step == 0:
            why = "no step was trained (trainer.max_steps=0 or trainer.limit_train_batches=0)"
        else:
            why = "no epoch was validated (trainer.limit_val_batches=0, or validation due after the last epoch)"
        log.info(f"{why}, so the final test uses the last weights")
        tested = "last"
    chosen = {"best_epoch": best.best_epoch if best else None, "tested": tested}  # test reloads callback states
    test_ckpt = best.best_model_path if best and tested == "best" else None  # "last": the weights in memory
    trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False, weights_only=True)
    return chosen


def record(
    cfg: DictConfig, trainer: pl.Trainer, final: dict[str, Any], timer: EpochTimer, git_rev: str, run_dir: Path
) -> dict[str, Any]:
    """metrics.json (on rank 0; the other ranks hold the same, reduced, metrics) and the trackers' last words."""
    metrics = {
        **final,
        # the epochs that ended (a run trainer.max_time stopped mid-epoch, resumed, is restored at epoch 0)
        "epochs": max(trainer.current_epoch, len(timer.seconds)),
        "seconds_per_epoch": sum(timer.seconds) / max(len(timer.seconds), 1),
        "epoch_seconds": timer.seconds,  # every epoch's, those before a resume too (kept in last.ckpt)
        "first_step_at": timer.first_step_at,
        "seed": cfg.seed,
        "threads": getattr(trainer.strategy.launcher, "threads", None) or torch.get_num_threads(),  # rank 0's
        "git_rev": git_rev,
        "environment": environment(trainer.strategy.root_device),
    }
    if trial := next((c for c in trainer.callbacks if isinstance(c, PruneTrial)), None):
        metrics["trial"] = trial.record()  # its study, number, and the epoch after which it was pruned (or null)
    close_loggers(trainer.loggers, hyperparameters(cfg), metrics)
    if trainer.is_global_zero:
        write_json(metrics_file(run_dir), metrics)
        log.info(f"test acc {metrics['test_acc']:.3f}; run folder {run_dir}")
    return metrics
