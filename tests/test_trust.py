"""A checkpoint or run folder someone sent is data: a stored config naming any class outside the
allowlist, at any depth, is refused by eval, predict, ckpt_path= and resume, and nothing it names runs."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ONE_EPOCH, compose_config, run_cli, run_main, unfinished_copy, write_fake_fashion_mnist
from pytorch_lightning.callbacks import Callback

import lenet_exp
from lenet_exp.errors import UserError, user_error
from lenet_exp.runtime.checkpoints import CONFIG_KEY
from lenet_exp.runtime.cli import names
from lenet_exp.runtime.stored_config import open_stored
from lenet_exp.train import train


def opener(canary: Path) -> dict:
    """A config node that, if Hydra built it, would create ``canary``."""
    return {"_target_": "builtins.open", "_args_": [str(canary), "w"]}


# where the crafted node goes in the stored config: (dotted key, how to put it there)
PLACES = {
    "top level": ("model", lambda cfg, node: cfg.__setitem__("model", node)),
    "nested": ("model.net.extra", lambda cfg, node: cfg["model"]["net"].__setitem__("extra", node)),
    "in a list": ("trainer.plugins[1]", lambda cfg, node: cfg["trainer"]["plugins"].append(node)),
    "inside an interpolation": (
        "model.scheduler",
        lambda cfg, node: cfg["model"].__setitem__(
            "scheduler", f"${{oc.create:{{_target_: {node['_target_']}, _args_: ['{node['_args_'][0]}', w]}}}}"
        ),
    ),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished one-epoch run on synthetic data (its folder, checkpoint and .hydra/ files)."""
    folder = tmp_path_factory.mktemp("run")
    data = folder.with_name(folder.name + "-data")  # data_of(run)
    write_fake_fashion_mnist(data)
    lenet_exp.run(*ONE_EPOCH, f"data.data_dir={data}", f"hydra.run.dir={folder}")  # as the command would
    return folder


def crafted_checkpoint(run: Path, place: str, canary: Path, into: Path) -> tuple[Path, str]:
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    key, put = PLACES[place]
    put(checkpoint[CONFIG_KEY], opener(canary))
    path = into / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path, key


@pytest.mark.slow
@pytest.mark.parametrize("place", list(PLACES))
def test_eval_predict_and_ckpt_path_refuse_a_crafted_checkpoint_and_run_nothing(run, tmp_path, place):
    canary = tmp_path / "ran"
    ckpt, key = crafted_checkpoint(run, place, canary, tmp_path)
    for module, args in (
        ("lenet_exp.eval", [f"ckpt_path={ckpt}", "accelerator=cpu"]),
        ("lenet_exp.predict", [f"ckpt_path={ckpt}", f"images={tmp_path}"]),
    ):
        # the commands themselves for one place; for the other places, their main in this process
        out = run_cli(*args, module=module) if place == "top level" else run_main(module, *args)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"names {key}._target_=builtins.open" in out.stderr, out.stderr
    cfg = compose_config(
        tmp_path / "again", [*ONE_EPOCH, f"data.data_dir={run.with_name(run.name + '-data')}", f"ckpt_path={ckpt}"]
    )
    with pytest.raises(Exception) as err:
        train(cfg)
    assert "builtins.open" in str(user_error(err.value))
    assert not canary.exists()


@pytest.mark.slow
def test_resume_refuses_a_run_folder_whose_config_names_other_code(run, tmp_path):
    canary = tmp_path / "ran"
    folder = unfinished_copy(run, tmp_path)
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    config["callbacks"]["evil"] = opener(canary)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    out = run_main("lenet_exp.resume", str(folder))  # in this process: test_resume.py runs the command itself
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "names callbacks.evil._target_=builtins.open" in out.stderr and "trust=builtins.open" in out.stderr
    assert not canary.exists() and not (folder / "metrics.json").exists()


@pytest.mark.slow
def test_an_interpolation_in_a_stored_config_is_the_gates_sentence_before_resume_reads_it(run, tmp_path, monkeypatch):
    """resume's first look at the folder (was checkpointing off?) read trainer resolved: an interpolation there
    ended in omegaconf's traceback before the gate saw it."""
    folder = unfinished_copy(run, tmp_path)
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    config["trainer"] = "${oc.env:LENET_EXP_UNSET}"
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.delenv("LENET_EXP_UNSET", raising=False)
    out = run_main("lenet_exp.resume", str(folder))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith(f"error: {folder / '.hydra' / 'config.yaml'} holds a config that cannot be read (")
    assert "LENET_EXP_UNSET" in out.stderr and len(out.stderr.splitlines()) == 1  # the gate's sentence
    assert not (folder / "metrics.json").exists()


@pytest.mark.slow
def test_resume_refuses_a_crafted_last_checkpoint(run, tmp_path):
    canary = tmp_path / "ran"
    folder = unfinished_copy(run, tmp_path)
    ckpt, _ = crafted_checkpoint(run, "nested", canary, tmp_path)
    shutil.copy(ckpt, folder / "checkpoints" / "last.ckpt")
    out = run_main("lenet_exp.resume", str(folder))  # in this process: test_resume.py runs the command itself
    assert out.returncode == 1 and "model.net.extra._target_=builtins.open" in out.stderr
    assert not canary.exists()


def stored(path: Path, config: dict) -> Path:
    """A checkpoint at ``path`` that stores ``config`` (and no weights: the gate reads only the config)."""
    torch.save({"state_dict": {}, CONFIG_KEY: config}, path)
    return path


def test_what_is_allowed_and_how_the_user_adds_a_class(tmp_path):
    config = {
        "model": {
            "_target_": "lenet_exp.classifier.Classifier",
            "net": {"_target_": "lenet_exp.models.LeNet"},
            "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True},
            "scheduler": {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True},
        },
        "trainer": {"_target_": "pytorch_lightning.Trainer", "plugins": []},
    }
    assert open_stored(stored(tmp_path / "ok.ckpt", config), builds=()).checkpoint[CONFIG_KEY] == config
    for target in ("os.system", "torch.load", "torch.optim.Optimizer.zero_grad", "subprocess.Popen", "torch.optim.os"):
        path = stored(tmp_path / "bad.ckpt", {"model": {"net": {"_target_": target}}})
        with pytest.raises(UserError, match=f"^ckpt_path={path} names model.net._target_={target}, "):
            open_stored(path, builds=())
    mine = {"model": {"net": {"_target_": "my_models.SmallCNN"}}}
    trusted = open_stored(stored(tmp_path / "mine.ckpt", mine), ["my_models.SmallCNN"], builds=())
    assert trusted.checkpoint[CONFIG_KEY] == mine
    # a second class of one's own: the argument to give names both, as trust= replaces what was given
    two = {"model": {"net": {"_target_": "my_models.SmallCNN"}}, "callbacks": {"c": {"_target_": "my_models.Counter"}}}
    with pytest.raises(UserError, match=r"allow it with trust=my_models.SmallCNN,my_models.Counter\.$"):
        open_stored(stored(tmp_path / "two.ckpt", two), ["my_models.SmallCNN"], builds=())
    # trust= as the commands read it: comma-separated, or written as Hydra writes a list (it was read as one name)
    both = ("my_models.SmallCNN,my_models.Counter", "[my_models.SmallCNN, my_models.Counter]")
    for typed in (*both, "[my_models.SmallCNN],[my_models.Counter]"):  # the last: two trust=[...] given to resume
        assert open_stored(stored(tmp_path / "two.ckpt", two), names(typed), builds=()).checkpoint[CONFIG_KEY] == two


def test_the_allowlist_comes_before_any_class_is_imported(tmp_path, monkeypatch):
    """The version check imports the classes a config names; the allowlist runs first, so a class that is not
    allowed is refused as such, never imported, even where it also names keys of another version."""
    (tmp_path / "planted.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\nclass Net:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = stored(tmp_path / "planted.ckpt", {"model": {"net": {"_target_": "planted.Net", "width": 2}}})
    with pytest.raises(UserError, match="names model.net._target_=planted.Net, which is not a class"):
        open_stored(path, builds=())
    assert "planted" not in sys.modules and not (tmp_path / "ran").exists()


# A class of the user's own (StopOnceAtEpoch below) is refused by resume until it is named with trust=, and then
# the run resumes and finishes: test_resume.py's test_resume_replays_the_runs_own_config_and_notes_a_changed_revision
# interrupts a run with it and checks both.


class CtrlCWhileBuilt(Callback):
    """Ctrl-C while the run is being built, before Lightning's loops (which handle their own) begin."""

    def __init__(self) -> None:
        raise KeyboardInterrupt


class SigtermWhileBuilt(Callback):
    """SIGTERM (a kill, a scheduler stopping a job that just started) while the run is being built."""

    def __init__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # the signal is answered at once: ended without a word, or the command's sentence


class StopOnceInTheTest(Callback):
    """Stops the run like Ctrl-C as its final test starts, once (``marker`` remembers it)."""

    def __init__(self, marker: str) -> None:
        self.marker = Path(marker)

    def on_test_start(self, trainer, pl_module) -> None:
        if not self.marker.exists():
            self.marker.touch()
            raise KeyboardInterrupt


class StopOnceAtEpoch(Callback):
    """Stops the run like Ctrl-C when the second epoch (or ``epoch``, from 0) starts, once (``marker`` remembers it):
    a class of the user's own, which resume builds only when it is trusted (test_resume.py)."""

    def __init__(self, marker: str, epoch: int = 1) -> None:
        self.marker, self.epoch = Path(marker), epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and not self.marker.exists():
            self.marker.touch()
            raise KeyboardInterrupt


def test_an_escaped_interpolation_is_refused_and_never_comes_back_to_life(tmp_path):
    """An escaped "\\${...}" resolves to the text "${...}", which passes for a plain string; loaded again, it would be
    an interpolation that builds a class the allowlist never saw."""
    canary = tmp_path / "ran"
    hidden = f"\\${{oc.create:{{_target_: builtins.open, _args_: ['{canary}', w]}}}}"
    model = {"_target_": "lenet_exp.classifier.Classifier", "net": {"_target_": "lenet_exp.models.LeNet"}}
    path = stored(tmp_path / "escaped.ckpt", {"model": {**model, "scheduler": hidden}})
    with pytest.raises(UserError, match=r"holds model.scheduler=.*read as an interpolation once loaded"):
        open_stored(path, builds=("model",))
    assert not canary.exists()
