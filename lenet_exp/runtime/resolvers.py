"""lenet_exp's own config interpolations, registered when any part of lenet_exp is imported."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def if_multirun(in_a_sweep: Any, otherwise: Any) -> Any:
    """``${if_multirun:A,B}``: A in a job of a sweep (``-m``), B in a single run (or outside Hydra).

    conf/logger/mlflow.yaml uses it to give all jobs of a sweep one MLflow store, in the sweep folder.
    A resumed job replays its stored Hydra settings, so it resolves as it did when it ran.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return in_a_sweep if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN else otherwise


def gpus_of(accelerator: Any, devices: Any) -> Any:
    """``${gpus_of:${trainer.accelerator},${trainer.devices}}``: the GPUs a SLURM job asks for: the devices
    when the accelerator is a GPU, else none (a CPU job that asks for GPUs is refused by a CPU cluster)."""
    return devices if str(accelerator) in ("gpu", "cuda") else None


def cpus_of(threads: Any, accelerator: Any) -> Any:
    """``${cpus_of:${threads},${trainer.accelerator}}``: the CPUs a SLURM task asks for: ``threads`` when set;
    else 4 beside a GPU (to feed it) and 1 for a CPU task (a CPU DDP job of N tasks takes N CPUs)."""
    if threads is not None:
        return threads
    return 4 if str(accelerator) in ("gpu", "cuda") else 1


def unless_deterministic(deterministic: Any) -> bool:
    """``${unless_deterministic:${.deterministic}}``: the Trainer's ``benchmark`` (cuDNN's autotuner) is on unless
    the run asks for deterministic algorithms (``true`` or ``warn``); PyTorch ignores determinism in cuDNN while
    the autotuner is on, and Lightning turns it off in that case only when ``benchmark`` is left unset."""
    return not deterministic


def unless_compiled(compile: Any) -> bool:
    """``${unless_compiled:${oc.select:model.compile,false}}``: the Trainer's ``inference_mode`` (the final test under
    ``torch.inference_mode``) is on unless the net is compiled. Lightning validates during fit under
    ``torch.no_grad``, and torch.compile compiles the net again for each of the two (a tensor made in inference
    mode fails the guards of a graph compiled for one made under no_grad): tested under no_grad too, the test
    reuses the graphs the validation compiled: one compilation fewer."""
    return not compile


OmegaConf.register_new_resolver("if_multirun", if_multirun, replace=True)
OmegaConf.register_new_resolver("gpus_of", gpus_of, replace=True)
OmegaConf.register_new_resolver("cpus_of", cpus_of, replace=True)
OmegaConf.register_new_resolver("unless_deterministic", unless_deterministic, replace=True)
OmegaConf.register_new_resolver("unless_compiled", unless_compiled, replace=True)
