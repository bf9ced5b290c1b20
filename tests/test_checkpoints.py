"""Checkpoints: written atomically, read as data only, refused when they do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ONE_EPOCH, compose_config, load_checkpoint, run_main
from omegaconf import OmegaConf

from lenet_exp.errors import UserError, user_error
from lenet_exp.runtime.atomic import AtomicCheckpointIO
from lenet_exp.runtime.checkpoints import CONFIG_KEY
from lenet_exp.runtime.stored_config import open_stored
from lenet_exp.train import train


def other_architecture(path: Path) -> None:
    """A checkpoint that names the default model but holds weights of another shape."""
    config = OmegaConf.to_container(compose_config(path.parent, []), resolve=True)
    torch.save({"state_dict": {"net.features.0.weight": torch.zeros(3, 1, 5, 5)}, CONFIG_KEY: config}, path)


def changed_byte(path: Path) -> None:
    """A whole checkpoint with one byte inside its weights changed since it was written (a disk's or a copy's
    fault): torch.load reads it as other weights, and only the archive's checksums tell."""
    import zipfile

    untrained_checkpoint(path)
    with zipfile.ZipFile(path) as archive:  # the largest tensor's bytes: the first layer's weights, say
        part = max(archive.infolist(), key=lambda info: info.file_size)
    blob = bytearray(path.read_bytes())
    local = part.header_offset  # its local header: 30 bytes, then its name and extra field, then its data
    start = local + 30 + int.from_bytes(blob[local + 26 : local + 28], "little")
    start += int.from_bytes(blob[local + 28 : local + 30], "little")
    blob[start + part.compress_size // 2] ^= 0x40
    path.write_bytes(bytes(blob))


class Pickled:  # an arbitrary class: loading it would run code that is not a tensor
    pass


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (None, "does not exist"),
        (lambda p: p.write_text("not a checkpoint"), "is not a checkpoint that loads with weights_only=True"),
        (lambda p: torch.save({"state_dict": {}, "x": Pickled()}, p), "loads with weights_only=True"),
        (changed_byte, "fails its checksum: bytes changed after it was written"),
        (other_architecture, ("was saved from another architecture", "do not fit the model its own stored config")),
    ],
)
def test_bad_checkpoints_are_refused(tmp_path, fake_data, make, expected):
    # training with ckpt_path= builds the user's model; eval builds the one the checkpoint's config describes
    expected, evaluation = expected if isinstance(expected, tuple) else (expected, expected)
    path = tmp_path / "given.ckpt"
    if make:
        make(path)
    cfg = compose_config(tmp_path / "run", [*ONE_EPOCH, f"data.data_dir={fake_data}", f"ckpt_path={path}"])
    with pytest.raises(Exception) as err:
        train(cfg)
    assert user_error(err.value) is not None and expected in str(user_error(err.value))
    for bad in [path] if make else []:  # evaluation refuses the same files, as one sentence too
        # in this process: test_errors.py and test_trust.py run the eval command itself on bad checkpoints
        out = run_main("lenet_exp.eval", f"ckpt_path={bad}")
        assert out.returncode == 1 and evaluation in out.stderr and "Traceback" not in out.stderr
        assert "use the model config" not in out.stderr  # eval takes no model config


def test_checkpoints_load_without_unpickling_code_and_hold_the_config(two_epochs_run):
    run, _ = two_epochs_run  # a checkpoint that a run wrote
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")  # weights_only=True inside
    assert checkpoint["lenet_exp_config"]["model"]["net"]["activation"] == "sigmoid"


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process is stopped in the middle of writing

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    kept = load_checkpoint(path)
    assert kept["epoch"] == 1 and torch.equal(kept["state_dict"]["w"], torch.ones(3))


def untrained_checkpoint(path: Path, edit=None, revision: str = "0123abc") -> Path:
    """A lenet_exp checkpoint of an untrained model (its weights and stored config), its config changed by ``edit``."""
    from hydra.utils import instantiate

    from lenet_exp.runtime.checkpoints import GIT_KEY

    cfg = compose_config(path.parent / "run", ONE_EPOCH)
    config = OmegaConf.to_container(cfg, resolve=True)
    if edit is not None:
        edit(config)
    state = instantiate(cfg.model).state_dict()
    torch.save({"state_dict": state, "epoch": 0, CONFIG_KEY: config, GIT_KEY: revision}, path)
    return path


CLASSIFIER, RENAMED = "lenet_exp.classifier.Classifier", "does not take (the option was renamed or removed)"


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            lambda c: c["model"].__setitem__("dropout", 0.5),
            f"names model.dropout, which this version's {CLASSIFIER} {RENAMED}",
        ),
        (lambda c: c["model"]["net"].__setitem__("width", 2), "names model.net.width, which this version's"),
        (lambda c: c["model"].pop("net"), f"has no model.net, which this version's {CLASSIFIER}"),
        (lambda c: c["data"].__setitem__("shuffle", True), "names data.shuffle, which this version's"),
        (lambda c: c.pop("model"), "has no model, which this version of lenet_exp needs"),
    ],
)
def test_a_checkpoint_of_another_version_is_one_sentence_naming_the_key_and_revision(tmp_path, edit, says):
    """The gate, open_stored, is what eval, predict, lenet_exp.load and ckpt_path= read a checkpoint with."""
    path = untrained_checkpoint(tmp_path / "old.ckpt", edit)
    with pytest.raises(UserError, match="^ckpt_path=") as err:
        open_stored(path, builds=())
    assert says in str(err.value) and "(it was written by the code at 0123abc)" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_predict_refuses_a_checkpoint_of_another_version_in_one_sentence(tmp_path):
    path = untrained_checkpoint(tmp_path / "old.ckpt", lambda c: c["model"].__setitem__("dropout", 0.5))
    # in this process: test_errors.py and test_trust.py run the predict command itself on bad checkpoints
    out = run_main("lenet_exp.predict", f"ckpt_path={path}", f"images={tmp_path}")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "names model.dropout, which this version's lenet_exp.classifier.Classifier does not take" in out.stderr
