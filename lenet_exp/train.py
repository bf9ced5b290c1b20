"""Build data, module and trainer from the config; fit; test; write metrics.json."""

from __future__ import annotations

import json
import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lenet_exp.callbacks import ConfigInCheckpoint, EpochLine
from lenet_exp.errors import UserError

log = logging.getLogger("lenet_exp")
# Lightning 2.6 calls a torch.utils._pytree API that torch 2.14 deprecates; nothing for users to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def git_revision() -> str:
    """The commit of the code that ran, with ``-dirty`` when it had uncommitted changes."""
    here = Path(__file__).parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.strip() else "")


def check_accelerator(accelerator: str) -> None:
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={accelerator} but PyTorch finds no CUDA GPU on this machine; "
            "use trainer.accelerator=cpu or trainer.accelerator=auto."
        )


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment described by ``cfg``; return what it wrote to ``metrics.json``."""
    run_dir = Path(cfg.run_dir)
    check_accelerator(cfg.trainer.accelerator)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.model)
    epoch_line = EpochLine()
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    callbacks += [epoch_line, ConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=True))]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)

    trainer.fit(module, datamodule=datamodule)
    final = dict(trainer.callback_metrics)  # the last epoch's train/* and val/* (or test/*)
    trainer.test(module, datamodule=datamodule, verbose=False)
    final.update(trainer.callback_metrics)  # test/* on the final weights

    metrics = {
        **{key.replace("/", "_"): float(value) for key, value in sorted(final.items())},
        "epochs": trainer.current_epoch,
        "seconds_per_epoch": sum(epoch_line.seconds) / max(len(epoch_line.seconds), 1),
        "seed": cfg.seed,
        "git_rev": git_revision(),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info(f"test acc {metrics['test_acc']:.3f}; run folder {run_dir}")
    return metrics
