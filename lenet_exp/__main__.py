"""``python -m lenet_exp [overrides]``: one training run (or a sweep with ``-m``) from conf/."""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lenet_exp.errors import user_error

log = logging.getLogger("lenet_exp")


# conf/ beside the package (it is installed editable): an absolute path, so that the `lenet-exp`
# console script finds it as well as `python -m lenet_exp` does.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Train once; return ``optimized_metric`` (such as val_acc) for sweepers like Optuna."""
    from lenet_exp.train import train  # imported here so that --help and --cfg stay fast

    logging.raiseExceptions = False  # a full disk under the log file: the run's own writes report it, once

    try:
        metrics = train(cfg)
        return metrics[cfg.optimized_metric] if cfg.get("optimized_metric") else None
    except Exception as err:
        if (cause := user_error(err)) is None:
            raise
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise cause from None  # Hydra marks the job failed and runs the others (see runs.FailedJobs)
        log.error(f"error: {cause}")
        sys.exit(1)


if __name__ == "__main__":
    main()
