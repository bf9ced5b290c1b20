"""conf/ as a new user reads it: every option of every group, chosen alone, composes to what its file says,
and every class a config names is one that eval and resume may rebuild from a stored config."""

from __future__ import annotations

import os
import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from conftest import CONF_DIR, compose_config, first_of_each, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lenet_exp.runtime.checks import RUN_KEYS
from lenet_exp.runtime.trust import allowed

GROUPS = sorted(d.name for d in CONF_DIR.iterdir() if d.is_dir() and d.name != "hydra")
OPTIONS = [(group, file.stem) for group in GROUPS for file in sorted((CONF_DIR / group).glob("*.yaml"))]
DEFAULTS = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml").defaults)
IN_DEFAULTS = {next(iter(entry)) for entry in DEFAULTS if isinstance(entry, dict)}  # chosen without a "+"


def package(file: Path, group: str) -> str:
    """Where a group file's keys land: its ``# @package`` header (``_global_``: the top), else the group."""
    for line in file.read_text().splitlines():
        if line.startswith("# @package"):
            name = line.split(maxsplit=2)[2].strip()
            return "" if name == "_global_" else name
    return group


def package_path(file: Path, group: str) -> tuple[str, ...]:
    return tuple(part for part in package(file, group).split(".") if part)


def leaves(node: Any, path: tuple[str, ...]) -> dict[tuple[str, ...], Any]:
    """``{("model", "net", "activation"): "relu", ...}``: every value a file sets, lists taken whole
    (a path, not a dotted string: the sweeper's ``params`` have keys such as ``model.optimizer.lr``)."""
    if not isinstance(node, dict):
        return {path: node}
    flat: dict[tuple[str, ...], Any] = {}
    for key, value in node.items():
        flat.update(leaves(value, (*path, str(key))))
    return flat


def lookup(config: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        config = config[part]
    return config.name if isinstance(config, Enum) else config  # hydra.mode: RunMode.MULTIRUN


@pytest.mark.parametrize(
    ("group", "option"), first_of_each(OPTIONS, kind=lambda case: case[0]), ids=[f"{g}={o}" for g, o in OPTIONS]
)
def test_each_option_alone_composes_to_what_its_file_says(group, option):
    file = CONF_DIR / group / f"{option}.yaml"
    own = OmegaConf.to_container(OmegaConf.load(file)) or {}
    own.pop("defaults", None)
    choice = f"{'' if group in IN_DEFAULTS else '+'}{group}={option}"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[choice], return_hydra_config=True)
    composed = OmegaConf.to_container(cfg, resolve=False)
    expected = leaves(own, package_path(file, group))
    for key, value in expected.items():
        found = lookup(composed, key)
        assert found == value, f"{choice}: {'.'.join(key)} is {found!r}, its file says {value!r}"
    # only keys the run knows at the top (a typo of one is refused: checks.check_top_level)
    assert set(composed) - {"hydra"} <= set(RUN_KEYS), choice


def test_the_default_run_is_the_books_and_d2l_lenet_changes_nothing(tmp_path):
    default = compose_config(tmp_path)
    assert set(default) == set(RUN_KEYS)  # the keys checks.check_top_level knows are conf/config.yaml's
    assert default.model.net.activation == "sigmoid"
    assert default.model.optimizer._target_ == "torch.optim.Adam" and default.model.optimizer.lr == 0.001
    assert default.model.scheduler is None and default.model.augment is None
    assert default.data.batch_size == 256 and default.data.val_size == 0 and default.trainer.max_epochs == 5
    assert compose_config(tmp_path, ["experiment=d2l_lenet"]) == default


def test_a_model_chosen_alone_keeps_its_own_learning_rate_and_activation(tmp_path):
    """The trap this guards: a default experiment merged after the model group overwrote both."""
    cfg = compose_config(tmp_path, ["model=lenet_modern"])
    assert cfg.model.net.activation == "relu" and cfg.model.net.batch_norm is True
    assert cfg.model.optimizer._target_ == "torch.optim.AdamW" and cfg.model.optimizer.lr == 0.003
    assert cfg.model.optimizer.weight_decay == 0.05 and cfg.model.scheduler.max_lr == 0.01
    assert cfg.data.batch_size == 256 and cfg.trainer.max_epochs == 5  # the model group sets neither


@pytest.mark.slow
def test_cfg_job_shows_the_chosen_model(tmp_path):
    out = run_cli("model=lenet_modern", "--cfg", "job", timeout=60)
    assert out.returncode == 0, out.stderr
    shown = OmegaConf.create(out.stdout)
    assert shown.model.net.activation == "relu" and shown.model.net.batch_norm is True
    assert shown.model.optimizer._target_ == "torch.optim.AdamW" and shown.model.optimizer.lr == 0.003


def _targets(node: Any, where: str):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield where, value
            else:
                yield from _targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}[{i}]")


# Hydra's own settings (conf/hydra/: its callbacks, launchers) are never stored in a run's config.yaml
# or a checkpoint, so eval and resume never rebuild them.
STORED = sorted(p for p in CONF_DIR.rglob("*.yaml") if "hydra" not in p.relative_to(CONF_DIR).parts)


@pytest.mark.parametrize("file", STORED, ids=[str(p.relative_to(CONF_DIR)) for p in STORED])
def test_every_class_a_config_names_may_be_rebuilt_from_a_stored_config(file):
    """A new class in conf/ that is not on runtime/trust.py's ALLOWED would make eval, predict and resume
    refuse every run that used it: add it to ALLOWED."""
    node = OmegaConf.to_container(OmegaConf.load(file)) or {}
    for where, target in _targets(node, file.stem):
        assert allowed(target), f"{file.relative_to(CONF_DIR)} names {where}={target}: add it to trust.ALLOWED"


@pytest.mark.slow
def test_a_changed_copy_of_one_of_lenet_exps_configs_in_ones_own_folder_is_refused_not_ignored(tmp_path):
    """A copy of conf/ given with --config-dir, edited: Hydra reads lenet_exp's files of the same names, so the
    edits changed nothing, without a word. An unchanged copy beside files of one's own still runs."""
    import shutil

    import lenet_exp
    from lenet_exp.errors import UserError

    mine = tmp_path / "mine"
    shutil.copytree(CONF_DIR, mine)
    (mine / "experiment" / "sharp.yaml").write_text("# @package _global_\nseed: 7\n")  # a name of its own
    out = run_cli("-cd", str(mine), "experiment=sharp", "--cfg", "job", timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and OmegaConf.create(out.stdout).seed == 7, out.stderr
    lenet = mine / "model" / "lenet.yaml"
    lenet.write_text(lenet.read_text().replace("activation: sigmoid", "activation: relu"))
    said = (
        f"--config-dir={mine} holds model/lenet.yaml, the name of one of lenet_exp's own configs, which Hydra reads "
        "instead, so your changes to it would be ignored; give it a name of its own (model/mine.yaml, chosen with "
        "model=mine)."
    )
    out = run_cli("-cd", str(mine), "--cfg", "job", timeout=60, cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip() == f"error: {said}" and not out.stdout
    with pytest.raises(UserError, match=r"^config_dir=.* holds model/lenet.yaml, the name of one of lenet_exp's"):
        lenet_exp.run(config_dir=mine)


@pytest.mark.slow
def test_a_file_of_ones_own_configs_that_is_not_yaml_is_one_sentence_naming_it_and_its_line(tmp_path):
    """It was the YAML parser's traceback, from the command line and from lenet_exp.run alike; the other files of
    the folder are not read."""
    import lenet_exp
    from lenet_exp.errors import UserError

    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "wide.yaml").write_text("defaults:\n  - lenet\nnet: {channels: [1, 2\n")
    out = run_cli("-cd", "mine", "model=wide", "trainer.max_epochs=1", timeout=60, cwd=tmp_path)
    wide = tmp_path / "mine" / "model" / "wide.yaml"
    said = f"{wide} cannot be read as YAML (line 4, column 1: expected ','"
    assert out.returncode == 1 and out.stderr.startswith(f"error: {said}"), out.stderr
    assert out.stderr.rstrip().endswith("); correct it, or choose another config.")
    assert not (tmp_path / "outputs").exists()
    with pytest.raises(UserError, match=rf"^{re.escape(said)}"):
        lenet_exp.run("model=wide", config_dir=tmp_path / "mine")
    # a YAML file Hydra is not asked for (of another tool, in a tag of its own; a pipe) is not read
    (tmp_path / "mine" / "deploy").mkdir()
    (tmp_path / "mine" / "deploy" / "compose.yaml").write_text("services:\n  web:\n    ports: !reset []\n")
    os.mkfifo(tmp_path / "mine" / "deploy" / "pipe.yaml")
    wide.write_text("defaults:\n  - lenet\nnet: {channels: [1, 2]}\n")
    out = run_cli("-cd", "mine", "model=wide", "--cfg", "job", timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and OmegaConf.create(out.stdout).model.net.channels == [1, 2], out.stderr
