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


OmegaConf.register_new_resolver("if_multirun", if_multirun, replace=True)
