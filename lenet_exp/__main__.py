"""``python -m lenet_exp [overrides]``: one training run (or a sweep with ``-m``) from conf/."""

import logging
import sys

import hydra
from omegaconf import DictConfig

from lenet_exp.errors import UserError

log = logging.getLogger("lenet_exp")


def user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind ``err``, also when Hydra's instantiate wrapped it."""
    while err is not None and not isinstance(err, UserError):
        err = err.__cause__
    return err


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from lenet_exp.train import train  # imported here so that --help and --cfg stay fast

    try:
        train(cfg)
    except Exception as err:
        if (cause := user_error(err)) is None:
            raise
        log.error(f"error: {cause}")
        sys.exit(1)


if __name__ == "__main__":
    main()
