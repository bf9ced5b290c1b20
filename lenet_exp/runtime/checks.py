"""Checks of a run's settings that Lightning would accept but that cannot be what the user meant.

torch and Lightning are imported only by the checks that need them, and ``check_run`` runs those last, so that
the entry points refuse a wrong value or path before spending seconds loading them.
"""

from __future__ import annotations

import difflib
import inspect
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from lenet_exp import arguments
from lenet_exp.errors import UserError, check_value, first_line, leaves, typed
from lenet_exp.processes import nodes, processes
from lenet_exp.runtime.run_folder import CHECKPOINTS, OBJECTIVES
from lenet_exp.steps_per_call import check_config


def _available(accelerator: type) -> bool:
    try:
        return bool(accelerator.is_available())
    except Exception:  # e.g. TPU support that is not installed
        return False


def check_accelerator(accelerator: str, devices: object = 1, key: str = "trainer.accelerator") -> None:
    """Refuse an accelerator this machine cannot use, more GPUs than it has, or more CPU processes
    than it has cores (each would be a whole training process competing for them)."""
    if not isinstance(accelerator, str):
        return  # an Accelerator object from the user's own config: Lightning checks it
    name = "cuda" if accelerator == "gpu" else accelerator
    if name not in ("auto", "cpu", "cuda"):  # mps, tpu, ...: Lightning's registry knows them
        from pytorch_lightning.accelerators import AcceleratorRegistry

        if name not in AcceleratorRegistry:
            raise UserError(f"{key}={accelerator} is not an accelerator Lightning knows; use cpu, gpu or auto.")
        if not _available(AcceleratorRegistry[name]["accelerator"]):
            raise UserError(f"{key}={accelerator} is not available on this machine; use {key}=cpu or {key}=auto.")
    if name == "cpu":
        check_cpu_processes(devices)
        return
    if name == "auto" and devices == 1:
        return  # one process on whatever this machine has: nothing to refuse, and no torch to load for it
    import torch

    if name == "auto" and not torch.cuda.is_available():
        check_cpu_processes(devices)
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"{key}={accelerator} but PyTorch finds no CUDA GPU on this machine; use {key}=cpu or {key}=auto."
        )
    if accelerator in ("gpu", "cuda") and isinstance(devices, int) and devices > torch.cuda.device_count():
        raise UserError(
            f"trainer.devices={devices} but this machine has {torch.cuda.device_count()} CUDA GPU(s); "
            "lower trainer.devices."
        )


def check_cpu_processes(devices: object) -> None:
    """Refuse more training processes on the CPU than the machine has cores, and none or "all of them"
    (Lightning reads ``devices=-1`` as every GPU, and refuses it on the CPU)."""
    cores = os.cpu_count() or 1
    if str(devices).strip() in ("-1", "0"):
        raise UserError(
            f"trainer.devices={devices} asks Lightning for every GPU (-1) or none (0), and on the CPU it needs a "
            f"number of training processes; give one from 1 to {cores}, such as trainer.devices=1."
        )
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > cores:
        raise UserError(
            f"trainer.devices={devices} would start {devices} training processes on this machine's {cores} CPU "
            f"cores; ask for {cores} or fewer (trainer.devices={min(cores, 2)})."
        )


def checkpoint_file(path: str | Path, key: str = "ckpt_path") -> Path:
    """``path`` as a Path, if it is a file; else one sentence saying what to give instead."""
    path = Path(os.path.expanduser(path))
    if path.is_dir():  # a run folder, or its checkpoints/ folder
        if found := sorted({*path.glob("*.ckpt"), *path.glob(f"{CHECKPOINTS}/*.ckpt")}):
            raise UserError(f"{key}={path} is a folder; give one of its .ckpt files: {', '.join(map(str, found))}.")
        raise UserError(
            f"{key}={path} is a folder without .ckpt files; give the path of a .ckpt file, such as "
            "outputs/<date>/<time>/checkpoints/last.ckpt."
        )
    if str(path) in ("last", "best", "hpc") and not path.exists():  # Trainer.fit's names for its own checkpoints
        raise UserError(
            f"{key}={path} is Lightning's name for a checkpoint of the same Trainer's folder, and each lenet_exp "
            "command starts in a new one; give the path of a .ckpt file, such as "
            "outputs/<date>/<time>/checkpoints/last.ckpt (python -m lenet_exp.resume <run folder> continues a run "
            "in its own folder)."
        )
    if not path.is_file():
        raise UserError(
            f"{key}={path} does not exist; give the path of a .ckpt file, such as "
            "outputs/<date>/<time>/checkpoints/last.ckpt."
        )
    return path


UNBOUNDED = -1  # trainer.max_epochs=-1: Lightning trains until something else ends the run


# What a launcher of several nodes leaves in each process's environment: torchrun (RANK, GROUP_RANK), SLURM,
# LSF, MPI, Kubeflow (WORLD_SIZE, RANK), or a hand-made launch as Lightning's docs describe (MASTER_ADDR, NODE_RANK).
LAUNCHED = (
    "WORLD_SIZE",
    "RANK",
    "GROUP_RANK",
    "NODE_RANK",
    "MASTER_ADDR",
    "SLURM_NTASKS",
    "LSB_JOBID",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
)


def check_nodes(trainer: DictConfig) -> None:
    """Refuse more than one node where nothing started the others: rank 0 would wait for them forever."""
    num_nodes = nodes(trainer)
    if num_nodes is None or num_nodes <= 1:
        return  # 1, or a value Lightning's Trainer refuses itself
    if any(os.environ.get(name) for name in LAUNCHED):
        return
    raise UserError(
        f"trainer.num_nodes={num_nodes} asks for {num_nodes} machines, and no launcher started the others, so this "
        f"process would wait for them forever; start every node with torchrun --nnodes={num_nodes} or through "
        "SLURM (hydra/launcher=slurm), or train on this machine with trainer.num_nodes=1 (and trainer.devices=N "
        "for N processes)."
    )


def check_built_by_groups(trainer: DictConfig) -> None:
    """The Trainer's loggers and callbacks come from the logger and callbacks groups; of Lightning's own ways,
    ``trainer.logger=false`` (no logger) is kept, and ``barebones``, which turns off the logging a run is made of,
    is refused."""
    if trainer.get("logger") not in (None, True, False):
        raise UserError(
            f"trainer.logger={trainer.logger} is not built here: lenet_exp builds the Trainer's loggers from the "
            "logger group; choose logger=tensorboard, logger=csv, logger=mlflow, logger=[tensorboard,csv] or "
            "logger=none (trainer.logger=false is the same as logger=none)."
        )
    if trainer.get("callbacks") is not None:
        raise UserError(
            f"trainer.callbacks={trainer.callbacks} is not built here: lenet_exp builds the Trainer's callbacks "
            "from the callbacks group; add one with +callbacks.<name>={_target_: <class>, ...} or choose "
            "callbacks=with_early_stopping."
        )
    if trainer.get("barebones"):
        raise UserError(
            "trainer.barebones=true turns off Lightning's logging, and a lenet_exp run is made of it (the epoch "
            "lines, metrics.json, the checkpoint of the best validated epoch); for speed keep it false and see "
            "steps_per_call and logger=none."
        )


# Trainer arguments Lightning takes as whole numbers, with the lowest value it gives a meaning to and an example;
# null is Lightning's default for each. A wrong type or value otherwise fails later, inside the loops: a
# ZeroDivisionError in the first epoch for check_val_every_n_epoch=0, "'<' not supported" for max_steps=abc.
WHOLE = {
    "max_steps": (-1, 1000),  # -1: no limit
    "min_steps": (0, 100),
    "min_epochs": (0, 2),
    "check_val_every_n_epoch": (1, 2),
    "num_sanity_val_steps": (-1, 2),  # -1: all of the validation batches
    "log_every_n_steps": (0, 50),  # 0: no logging within an epoch
    "reload_dataloaders_every_n_epochs": (0, 1),
}
# Trainer arguments that are true or false (or null, Lightning's default where it has one).
SWITCHES = (
    "enable_checkpointing",
    "enable_progress_bar",
    "enable_model_summary",
    "benchmark",
    "inference_mode",
    "use_distributed_sampler",
    "detect_anomaly",
    "sync_batchnorm",
    "enable_autolog_hparams",
)
# Batches of a loop: a whole number of them, or a fraction of the loop's batches.
BATCH_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def check_trainer_values(trainer: DictConfig) -> None:
    """The type and range of each Trainer argument Lightning checks late or not at all, as Lightning's
    documentation gives them; the combinations and the rest are Lightning's to refuse, when the Trainer is made."""
    for key, (low, example) in WHOLE.items():
        if trainer.get(key) is not None:
            check_value(f"trainer.{key}", trainer[key], "whole", f"{example}, or null for Lightning's default", low=low)
    for key in SWITCHES:
        if trainer.get(key) not in (None, True, False):
            raise UserError(f"trainer.{key}={trainer.get(key)!r} must be true or false.")
    if trainer.get("deterministic") not in (None, True, False, "warn"):
        raise UserError(f"trainer.deterministic={trainer.deterministic!r} must be true, false or warn.")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, int | float) or clip < 0):
        raise UserError(
            f"trainer.gradient_clip_val={typed(clip)} must be a number >= 0 or null (no clipping), such as 0.5."
        )
    for key in (*BATCH_LIMITS, "overfit_batches"):
        value = trainer.get(key)
        whole = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if value is not None and not whole and not (isinstance(value, float) and 0 <= value <= 1):
            raise UserError(
                f"trainer.{key}={typed(value)} must be a whole number of batches or a fraction of them from 0.0 to "
                "1.0, such as 10 or 0.25."
            )
    if trainer.get("limit_test_batches") == 0:  # 0 or 0.0
        raise UserError(
            f"trainer.limit_test_batches={typed(trainer.limit_test_batches)} would skip the final test, whose "
            "accuracy is the run's result (test_acc in metrics.json); give a number of batches or a fraction above "
            "0, such as 10 or 0.25."
        )
    interval = trainer.get("val_check_interval")
    if isinstance(interval, int) and not isinstance(interval, bool) and interval <= 0:
        raise UserError(
            f"trainer.val_check_interval={interval} must be a positive whole number of training batches, or a "
            "fraction of an epoch from 0.0 to 1.0, such as 100 or 0.5."
        )
    max_time = trainer.get("max_time")
    if max_time is not None and not isinstance(max_time, str | DictConfig):
        raise UserError(
            f"trainer.max_time={typed(max_time)} is not a duration; give days:hours:minutes:seconds, such as "
            "trainer.max_time=00:00:20:00 for 20 minutes, or the keys of a timedelta: 'trainer.max_time={minutes: 20}'."
        )
    if max_time is not None and (seconds := duration_seconds(max_time)) is not None and seconds <= 0:
        raise UserError(
            f"trainer.max_time={max_time if isinstance(max_time, str) else dict(max_time)} leaves no time to "
            "train; give a positive duration, such as trainer.max_time=00:00:20:00 for 20 minutes."
        )


def duration_seconds(max_time: str | DictConfig) -> float | None:
    """``trainer.max_time`` in seconds, where it reads as Lightning reads it (``DD:HH:MM:SS``, or a timedelta's
    keys); None where it does not: Lightning's own refusal then says why."""
    from datetime import timedelta

    try:
        if isinstance(max_time, str):
            days, hours, minutes, seconds = (int(part) for part in max_time.split(":"))
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
        return timedelta(**dict(max_time)).total_seconds()
    except (TypeError, ValueError):
        return None


def check_trainer(trainer: DictConfig, callbacks: DictConfig | None = None) -> None:
    """The nodes, a gradient accumulation that divides, the types of the Trainer's numbers and switches, and an
    epoch count that ends: a positive one, or -1 with early stopping, max_time or max_steps to end the run
    (Lightning's meaning of -1). The accelerator is ``check_accelerator``'s, which may load torch."""
    check_nodes(trainer)
    check_built_by_groups(trainer)
    # Lightning takes 0 and fails with a ZeroDivisionError in the first batch
    check_value("trainer.accumulate_grad_batches", trainer.get("accumulate_grad_batches", 1), "whole", 4, low=1)
    check_trainer_values(trainer)
    if trainer.max_epochs != UNBOUNDED:
        check_value(
            "trainer.max_epochs", trainer.max_epochs, "whole", "5 (or -1: until something else ends the run)", low=1
        )
        return
    stops = any(str(c.get("_target_", "")).endswith("EarlyStopping") for c in (callbacks or {}).values() if c)
    if not stops and trainer.get("max_time") is None and trainer.get("max_steps", -1) in (-1, None):
        raise UserError(
            "trainer.max_epochs=-1 trains until something ends the run, and nothing here does; add "
            "callbacks=with_early_stopping (with data.val_size=5000), trainer.max_time=00:01:00:00 or "
            "trainer.max_steps=10000, or give a number of epochs."
        )


def check_takes_images(module: Any) -> None:
    """``model.net`` must take a batch of Fashion-MNIST images, (N, 1, 28, 28): one that cannot (a first layer of 3
    channels, a Linear of another width) ended in torch's error inside Lightning's model summary. One batch of two
    blank images, in eval mode, without gradients, drawing nothing from the run's generators."""
    import torch

    net = getattr(module, "net", None)
    if not isinstance(net, torch.nn.Module):
        return
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
    training = net.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            net.eval()
            net(torch.zeros(2, 1, 28, 28, dtype=dtype))
    except Exception as err:  # whatever the network of one's own raises on the images it will be given
        raise UserError(
            f"model.net cannot take a batch of Fashion-MNIST images, shape (2, 1, 28, 28) ({type(err).__name__}: "
            f"{first_line(err)}); its first layer must take 1 channel of 28 x 28 pixels."
        ) from err
    finally:
        net.train(training)


def check_many_steps(cfg: DictConfig) -> None:
    """``steps_per_call``, and what the trainer's settings rule out with it: lenet_exp.steps_per_call's rules,
    applied before anything is built."""
    check_config(cfg.get("steps_per_call", 1), cfg.trainer)


def objectives(value: Any) -> list[str]:
    """``optimized_metric`` as the metrics it names: none, one (``val_acc``, also written ``[val_acc]``) or several
    (a Pareto front); one sentence for a value that names no metric (a number, a mapping)."""
    if value is None or value == "" or value is False:  # none (false too, as a switch written off)
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple | ListConfig) and all(isinstance(each, str) for each in value):
        return list(value)
    raise UserError(
        f"optimized_metric={typed(value)} names no metric; give one of {', '.join(OBJECTIVES)}, or a list of them for "
        "a Pareto front, such as '[val_acc,seconds_per_epoch]'."
    )


def check_optimized_metric(name: Any, val_size: int) -> None:
    """The metric (or metrics, for a Pareto front) a sweeper optimizes must be one the run will have, and
    never the test set's."""
    for each in objectives(name):
        if each.startswith("test"):
            raise UserError(
                f"optimized_metric={each} would choose hyperparameters on the test set; "
                "use optimized_metric=val_acc with data.val_size > 0."
            )
        if each not in OBJECTIVES:
            raise UserError(f"optimized_metric={each} is not a metric of a run; use one of {', '.join(OBJECTIVES)}.")
        if each.startswith("val") and not val_size:
            raise UserError(f"optimized_metric={each} needs a validation split; set data.val_size, such as 5000.")


def check_selection(cfg: DictConfig) -> str:
    """Which weights the final test uses, ``best`` or ``last`` (``test_on``; null: best when there is a
    validation split, else last); refuses choosing or stopping by the test set."""
    val_size, has_best = cfg.data.get("val_size", 0), False
    for name, callback in (cfg.get("callbacks") or {}).items():
        monitor = callback.get("monitor") if isinstance(callback, DictConfig) else None
        if not isinstance(monitor, str):
            continue
        if monitor.startswith("test/"):
            raise UserError(
                f"callbacks.{name}.monitor={monitor} would choose by the test set; monitor val/acc or val/loss "
                "with data.val_size > 0."
            )
        checkpoint = str(callback.get("_target_", "")).endswith("BestCheckpoint")  # idle without a split
        has_best = has_best or checkpoint
        if monitor.startswith("val/") and not val_size and not checkpoint:
            raise UserError(f"callbacks.{name} monitors {monitor}, which needs a validation split: data.val_size=5000.")
    checkpointing = cfg.trainer.get("enable_checkpointing") is not False  # false: train.build drops them all
    test_on = cfg.get("test_on") or ("best" if val_size and has_best and checkpointing else "last")
    if test_on not in ("best", "last"):
        raise UserError(f"test_on={test_on} is not known; use test_on=best or test_on=last.")
    if test_on == "best" and not val_size:
        raise UserError("test_on=best needs a validation split to choose the best epoch by; set data.val_size=5000.")
    if test_on == "best" and not checkpointing:
        raise UserError(
            "test_on=best needs checkpoints/best.ckpt, which trainer.enable_checkpointing=false does not write; "
            "use test_on=last, or leave checkpointing on."
        )
    if test_on == "best" and not has_best:
        raise UserError("test_on=best needs the best-epoch checkpoint of callbacks=default; add it, or test_on=last.")
    return test_on


def check_callbacks(cfg: DictConfig) -> None:
    """Callback settings a new run would regret, refused before it trains (a stored run's config is taken as it
    ran: resume checks none of these): a metric the model does not log (Lightning's traceback after the first
    epoch), several best checkpoints under one name (``best.ckpt`` would be the first kept, not the best), and
    ``last.ckpt`` written every n epochs or steps (resume, eval and ``test_on=last`` take it for the last epoch)."""
    callbacks = {k: c for k, c in (cfg.get("callbacks") or {}).items() if isinstance(c, DictConfig)}
    # lenet_exp's module and Lightning's callbacks log only what LOGGED names; a class of the user's own may log more
    known = all(str(c.get("_target_", "")).startswith(("lenet_exp.", "pytorch_lightning.")) for c in callbacks.values())
    known = known and cfg.get("model", {}).get("_target_") == MODULE
    for name, callback in callbacks.items():
        monitor = callback.get("monitor")
        lenient = callback.get("strict") is False  # EarlyStopping(strict=False) only warns
        # lr-*: LearningRateMonitor's
        if known and isinstance(monitor, str) and not lenient and not (monitor in LOGGED or monitor.startswith("lr-")):
            close = difflib.get_close_matches(monitor, LOGGED, n=1, cutoff=0.6)
            raise UserError(
                f"callbacks.{name}.monitor={monitor} is not a metric the model logs, so Lightning would stop at the "
                f"end of the first epoch; monitor {close[0] if close else 'val/acc'} (the model logs "
                f"{', '.join(MODULE_METRICS)})."
            )
        top_k, filename = callback.get("save_top_k", 1), str(callback.get("filename") or "")
        if str(callback.get("_target_", "")).endswith("BestCheckpoint") and top_k not in (0, 1) and "{" not in filename:
            raise UserError(
                f"callbacks.{name}.save_top_k={typed(top_k)} keeps several checkpoints under the one name {filename}, "
                f"which Lightning numbers {filename}-v1, {filename}-v2 in the order they are saved, so {filename}.ckpt "
                f"would not be the best; give each its epoch: \"callbacks.{name}.filename='{filename}-{{epoch}}'\"."
            )
        moved = {
            "every_n_epochs": callback.get("every_n_epochs") not in (None, 1),
            "every_n_train_steps": callback.get("every_n_train_steps") not in (None, 0),
            "train_time_interval": callback.get("train_time_interval") is not None,
        }
        if filename == "last" and (given := [key for key, changed in moved.items() if changed]):
            raise UserError(
                f"callbacks.{name}.{given[0]}={typed(callback.get(given[0]))}: checkpoints/last.ckpt is the last "
                "epoch's state, which resume, eval and test_on=last rely on, so it is written after every epoch; "
                "to keep checkpoints every n epochs as well, add a ModelCheckpoint of your own (docs/configuration.md)."
            )


# What lenet_exp's module logs each epoch that a callback may monitor (val/*: with data.val_size > 0), and with
# epoch and step, which Lightning offers to a ModelCheckpoint's monitor (monitor: epoch keeps the newest k).
MODULE_METRICS = ("val/acc", "val/loss", "train/acc", "train/loss")
LOGGED = (*MODULE_METRICS, "epoch", "step")

# The classes whose arguments lenet_exp.arguments checks: a config naming another class (a user's own) is checked
# by that class alone.
DATA_MODULE, MODULE = "lenet_exp.data.FashionMNIST", "lenet_exp.classifier.Classifier"


def check_arguments(cfg: DictConfig) -> None:
    """The data module's and the LightningModule's values, as their constructors check them (lenet_exp.arguments):
    the keys the config gives of those the check functions take (the learning rate: of a partial optimizer)."""
    data, model = cfg.get("data") or {}, cfg.get("model") or {}
    if data.get("_target_") == DATA_MODULE:
        arguments.check_data(**_given(data, arguments.check_data))
    if model.get("_target_") == MODULE:
        optimizer = model.get("optimizer")
        partial = isinstance(optimizer, DictConfig) and optimizer.get("_partial_")
        arguments.check_model(optimizer.get("lr") if partial else None, **_given(model, arguments.check_model))
        scheduler = model.get("scheduler")
        if isinstance(scheduler, DictConfig) and str(scheduler.get("_target_")).endswith("ReduceLROnPlateau"):
            raise UserError(
                f"model.scheduler={scheduler._target_} changes the rate when a metric stops improving, and lenet_exp "
                "steps a schedule after every optimizer step, with no metric; give a schedule of steps, such as "
                "{_target_: torch.optim.lr_scheduler.CosineAnnealingLR, _partial_: true} (T_max: the run's steps)."
            )
        augment = model.get("augment")
        if augment is not None and not (isinstance(augment, DictConfig) and "_target_" in augment):
            shown = typed(OmegaConf.to_container(augment) if isinstance(augment, DictConfig) else augment)
            raise UserError(f"model.augment={shown} is not an augmentation; {arguments.AUGMENT_ADVICE}")
        if augment is not None and augment._target_ == arguments.AUGMENTATION:
            arguments.check_augment(**_given(augment, arguments.check_augment))
        if data.get("_target_") == DATA_MODULE:  # labels 0 to 9: fewer outputs fail at the first step
            for key in ("net.num_classes", "num_classes"):
                if (classes := OmegaConf.select(model, key)) is not None:
                    arguments.check_classes(classes, f"model.{key}")


def _given(node: DictConfig, check: Any) -> dict[str, Any]:
    """The values of ``node`` named as arguments of ``check`` (other than the learning rate, read elsewhere)."""
    return {k: node[k] for k in inspect.signature(check).parameters if k != "lr" and k in node}


def check_split(cfg: DictConfig) -> None:
    """``data.val_size`` against the training processes that the trainer config asks for (lenet_exp.arguments'
    rule, of any data module), before any process starts; after the check of the processes themselves."""
    count, val_size = processes(cfg.trainer), cfg.data.get("val_size", 0)
    if count is not None and count > 1 and isinstance(val_size, int) and not isinstance(val_size, bool):
        arguments.check_split(val_size, count)  # (other values: refused elsewhere, or known only to the Trainer)


def check_run_folder(cfg: DictConfig) -> None:
    """``trainer.default_root_dir`` is the run folder: Lightning's files go into it as every other file of the run
    does, so a folder of the user's there would be parsed and left empty; the run folder is Hydra's to choose."""
    given = cfg.trainer.get("default_root_dir")
    if given is None or Path(str(given)).absolute() != Path(str(cfg.run_dir)).absolute():
        raise UserError(
            f"trainer.default_root_dir={given} is not used: every file of a lenet_exp run goes into its run folder, "
            "which Hydra chooses; give hydra.run.dir=<folder> instead (hydra.sweep.dir=<folder> for a sweep), "
            "and leave trainer.default_root_dir as it is."
        )


def check_seed(seed: Any) -> None:
    """A seed that every generator takes (numpy's: 0 to 2**32 - 1; Lightning would warn and use 0 for one outside
    them), or null: one drawn at random."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise UserError(
            f"seed={typed(seed)} must be a whole number from 0 to {2**32 - 1}, such as 42, or null for one drawn at "
            "random."
        )


# The top-level keys of a run's config: conf/config.yaml's own and its groups' (tests/test_config.py keeps them so).
RUN_KEYS = ("seed", "run_dir", "ckpt_path", "test_on", "optimized_metric", "threads", "trusted_targets")
RUN_KEYS += ("steps_per_call", "data", "model", "trainer", "logger", "callbacks")


def check_top_level(cfg: DictConfig) -> None:
    """A top-level key of a config file that is a typo of one of lenet_exp's (``sed: 3``, ``trainers:``) would be
    left unused, and the run would go on with the setting it meant to change: refused, naming the key it meant.
    (Hydra refuses such a key on the command line; a file may add keys, and one unlike any is left alone: it may
    be a value of the user's own for interpolations.)"""
    import re

    given = OmegaConf.to_container(cfg, resolve=False)
    texts = " ".join(str(value) for _, value in leaves(given))  # (a list's strings are in its str())
    for key, value in given.items():
        meant = difflib.get_close_matches(str(key), RUN_KEYS, n=1, cutoff=0.8) if key not in RUN_KEYS else []
        if not meant or re.search(rf"\$\{{\s*{re.escape(str(key))}\b", texts):  # a value of one's own, used
            continue
        if _kind(value) == _kind(given.get(meant[0])):  # (seeds: [1, 2, 3] is no seed)
            if typed := _added_on_the_command_line(str(key)):
                instead = meant[0] + typed.lstrip("+").removeprefix(str(key))  # trainers.max_epochs=1: trainer...
                raise UserError(
                    f"{typed} adds {key}, which is not a setting of lenet_exp, so it would change nothing; did you "
                    f"mean {meant[0]}? Give {instead} instead."
                )
            raise UserError(
                f"{key} is not a setting of lenet_exp, so a config file's {key}: would change nothing; did you mean "
                f"{meant[0]}? Correct the key in the file that sets it (--info defaults lists the files)."
            )


def _added_on_the_command_line(key: str) -> str | None:
    """The override (``+sed=3``, ``++sed=3``) that added the top-level ``key``, as typed; None if none did."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    typed = HydraConfig.get().overrides.task
    return next((o for o in typed if o.lstrip("+").split("=", 1)[0].split(".")[0] == key), None)


def _kind(value: Any) -> type:
    return dict if isinstance(value, dict) else list if isinstance(value, list) else object


def check_run(cfg: DictConfig, new: bool = True) -> str:
    """Everything about ``cfg`` that can be refused before any data or model is built; returns which
    weights the final test uses (``best`` or ``last``). ``new``: a new run, not a stored one that resume finishes."""
    check_seed(cfg.get("seed"))
    check_trainer(cfg.trainer, cfg.get("callbacks"))
    check_run_folder(cfg)
    if cfg.get("ckpt_path"):
        checkpoint_file(cfg.ckpt_path)
    check_arguments(cfg)
    check_optimized_metric(cfg.get("optimized_metric"), cfg.data.get("val_size", 0))
    test_on = check_selection(cfg)
    if new:
        check_callbacks(cfg)
    check_many_steps(cfg)
    # Then the accelerator and the processes (which load torch unless the accelerator is the CPU), and the split
    # against those processes.
    check_accelerator(cfg.trainer.accelerator, cfg.trainer.get("devices"))
    check_split(cfg)
    return test_on
