"""lenet_exp.processes: the training processes a Trainer config asks for, as Lightning's Trainer would read the
same settings (devices a number, a list of indices or digits; num_nodes), and whether that is DDP."""

import pytest
from omegaconf import OmegaConf

from lenet_exp.processes import distributed, processes

CASES = [  # trainer settings -> (processes, distributed)
    ({}, (1, False)),
    ({"devices": 1, "strategy": "auto"}, (1, False)),
    ({"devices": 2, "strategy": "auto"}, (2, True)),  # Lightning's auto strategy starts DDP for two devices
    ({"devices": "2"}, (2, True)),
    ({"devices": [0, 1]}, (2, True)),
    ({"devices": 2, "num_nodes": 3, "strategy": "ddp"}, (6, True)),
    ({"devices": 1, "strategy": "ddp"}, (1, True)),  # one process, under DDP's strategy
    ({"devices": 1, "num_nodes": 2}, (2, True)),
    ({"devices": -1}, (None, False)),  # every device: only the Trainer knows how many
    ({"devices": "auto", "num_nodes": 2}, (None, True)),
    ({"devices": "auto", "strategy": "ddp_spawn"}, (None, True)),
    ({"devices": 0}, (None, False)),  # refused by the Trainer
    ({"devices": 2, "num_nodes": 0}, (None, True)),  # likewise
    ({"devices": True}, (None, False)),
]


@pytest.mark.parametrize(("settings", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_the_processes_and_ddp_a_trainer_config_asks_for(settings, expected):
    for trainer in (settings, OmegaConf.create(settings)):  # a plain mapping, and the config Hydra composes
        assert (processes(trainer), distributed(trainer)) == expected
