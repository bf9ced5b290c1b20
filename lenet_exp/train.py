"""Build data, module and trainer from the config; fit; test; write metrics.json."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lenet_exp.callbacks import ConfigInCheckpoint, EpochLine
from lenet_exp.checkpoint import atomic_write, check_architecture, load_checkpoint
from lenet_exp.distributed import ddp_scope, point_ddp_ranks_at_this_job
from lenet_exp.errors import UserError

log = logging.getLogger("lenet_exp")
# Lightning 2.6 calls a torch.utils._pytree API that torch 2.14 deprecates; nothing for users to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
# Augmenting in the module's on_after_batch_transfer is the intent, not an accident.
warnings.filterwarnings("ignore", message=r"You have overridden `on_after_batch_transfer`")


def git_revision() -> str:
    """The commit of the code that ran, with ``-dirty`` when it had uncommitted changes."""
    here = Path(__file__).parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.strip() else "")


def check_trainer(trainer: DictConfig) -> None:
    """Refuse trainer settings that Lightning would accept but that cannot be what the user meant."""
    if trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={trainer.accelerator} but PyTorch finds no CUDA GPU on this machine; "
            "use trainer.accelerator=cpu or trainer.accelerator=auto."
        )
    devices = trainer.get("devices")
    if trainer.accelerator in ("gpu", "cuda") and isinstance(devices, int) and devices > torch.cuda.device_count():
        raise UserError(
            f"trainer.devices={devices} but this machine has {torch.cuda.device_count()} CUDA GPU(s); "
            "lower trainer.devices."
        )
    epochs = trainer.max_epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise UserError(f"trainer.max_epochs={epochs!r} must be a positive whole number, such as 5.")


def check_optimized_metric(name: str | None, val_size: int) -> None:
    """The metric a sweeper maximizes must be one the run will have, and never the test set's."""
    if not name:
        return
    if name.startswith("test"):
        raise UserError(f"optimized_metric={name} would choose hyperparameters on the test set; "
                        "use optimized_metric=val_acc with data.val_size > 0.")  # fmt: skip
    known = ["train_acc", "train_loss", "val_acc", "val_loss"]
    if name not in known:
        raise UserError(f"optimized_metric={name} is not a metric of a run; use one of {', '.join(known)}.")
    if name.startswith("val") and not val_size:
        raise UserError(f"optimized_metric={name} needs a validation split; set data.val_size, such as 5000.")


DEFAULT_THREADS = torch.get_num_threads()  # before any job of this process changed it


def torch_threads(requested: int | None) -> int:
    """CPU threads for this job: ``requested`` if given; under the joblib launcher, cores / n_jobs,
    so that parallel jobs do not oversubscribe the cores; otherwise torch's default."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise UserError(f"threads={requested!r} must be a positive whole number, or null for the default.")
        return requested
    cores = os.cpu_count() or 1
    launcher = HydraConfig.get().launcher if HydraConfig.initialized() else {}
    n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    if n_jobs:  # joblib's convention: -1 is all cores, -2 all but one, ...
        return max(1, cores // (n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)))
    return DEFAULT_THREADS


def hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """The run's data, model and trainer settings as flat ``key: scalar``, for TensorBoard's HParams."""
    skip = {"data_dir", "download", "verify_md5", "default_root_dir", "_partial_", "plugins"}
    flat: dict[str, Any] = {"seed": cfg.seed}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if key in skip:
                continue
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, bool | int | float | str):
                flat[f"{prefix}{key}"] = value

    resolved = OmegaConf.to_container(cfg, resolve=True)
    walk({key: resolved[key] for key in ("data", "model", "trainer")}, "")
    return flat


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Lightning's ``callback_metrics`` ({"test/acc": tensor}) as metrics.json keys ({"test_acc": float})."""
    return {key.replace("/", "_"): float(value) for key, value in sorted(metrics.items())}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment described by ``cfg``; return what it wrote to ``metrics.json``.

    With ``cfg.ckpt_path`` set, training continues from that checkpoint's next epoch.
    """
    check_trainer(cfg.trainer)
    check_optimized_metric(cfg.get("optimized_metric"), cfg.data.get("val_size", 0))
    torch.set_num_threads(torch_threads(cfg.get("threads")))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.model)
    if cfg.get("ckpt_path"):
        check_architecture(load_checkpoint(cfg.ckpt_path), module, cfg.ckpt_path)
    epoch_line = EpochLine()
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    callbacks += [epoch_line, ConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=True))]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)

    with ddp_scope():
        return _fit_and_test(cfg, trainer, module, datamodule, epoch_line)


def _fit_and_test(cfg: DictConfig, trainer: pl.Trainer, module: Any, datamodule: Any, epoch_line: EpochLine) -> dict:
    """Fit, test, and write the run's results (on rank 0); an interruption says how to resume."""
    run_dir = Path(cfg.run_dir)
    point_ddp_ranks_at_this_job()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except SystemExit as stop:  # Lightning's answer to Ctrl-C and SIGTERM, after its on_exception hooks
        last = run_dir / "checkpoints" / "last.ckpt"
        kept = (
            f"{last} holds epoch {trainer.current_epoch}; resume with: python -m lenet_exp.resume {run_dir}"
            if trainer.current_epoch and last.is_file()
            else "no epoch was completed, so there is nothing to resume"
        )
        log.error(f"interrupted during epoch {trainer.current_epoch + 1}; {kept}")
        raise SystemExit(143 if isinstance(stop, SIGTERMException) else 130) from stop
    final = dict(trainer.callback_metrics)  # the last epoch's train/* and val/* (or test/*)
    trainer.test(module, datamodule=datamodule, verbose=False)
    final.update(trainer.callback_metrics)  # test/* on the final weights

    metrics = {
        **flat_metrics(final),
        "epochs": trainer.current_epoch,
        "seconds_per_epoch": sum(epoch_line.seconds) / max(len(epoch_line.seconds), 1),
        "epoch_seconds": epoch_line.seconds,  # the epochs this process ran (after a resume: the rest)
        "first_step_at": epoch_line.first_step_at,
        "seed": cfg.seed,
        "threads": torch.get_num_threads(),
        "git_rev": git_revision(),
    }
    summary = {f"hparams/{key}": metrics[key] for key in ("test_acc", "val_acc", "train_loss") if key in metrics}
    for each in trainer.loggers:  # the HParams dashboard: this run's settings beside its final metrics
        each.log_hyperparams(hyperparameters(cfg), summary)
        each.finalize("success")
    if trainer.is_global_zero:  # under DDP the other ranks hold the same (reduced) metrics
        atomic_write(run_dir / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
        log.info(f"test acc {metrics['test_acc']:.3f}; run folder {run_dir}")
    return metrics
