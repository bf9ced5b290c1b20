"""Bad input at every entry point is one clear sentence and leaves no result behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import (
    ONE_EPOCH,
    ROOT,
    compose_config,
    first_of_each,
    run_cli,
    run_main,
    unfinished_copy,
    write_fake_fashion_mnist,
    write_idx,
)
from omegaconf import OmegaConf
from PIL import Image
from pytorch_lightning.callbacks import Callback

import lenet_exp
from lenet_exp.errors import UserError, user_error
from lenet_exp.train import train


def corrupt(name: str, data: bytes | None = None, array: torch.Tensor | None = None):
    """A setup step that replaces one of the synthetic IDX files."""

    def apply(data_dir: Path) -> None:
        target = data_dir / f"{name}.gz"
        if array is not None:
            write_idx(data_dir / name, array)
        else:
            target.unlink()
            (data_dir / name).write_bytes(data)

    return apply


def raw(name: str, cut: int = 0, magic: bytes | None = None):
    def apply(data_dir: Path) -> None:
        import gzip

        content = gzip.decompress((data_dir / f"{name}.gz").read_bytes())
        content = (magic + content[4:]) if magic else content[: len(content) - cut]
        (data_dir / f"{name}.gz").unlink()
        (data_dir / name).write_bytes(content)

    return apply


def remove_all(data_dir: Path) -> None:
    shutil.rmtree(data_dir)


def damaged_gz(name: str, where: str):
    """Damage the gzip file itself: its header, the deflate stream, the CRC trailer, or its end."""

    def apply(data_dir: Path) -> None:
        path = data_dir / f"{name}.gz"
        blob = bytearray(path.read_bytes())
        if where == "header":
            blob[3] = 0xFF  # reserved flag bits set: gzip refuses the header
        elif where == "stream":
            for i in range(20, min(len(blob) - 8, 60)):
                blob[i] ^= 0xFF
        elif where == "crc":
            blob[-8] ^= 0xFF
        else:
            blob = blob[: len(blob) // 2]
        path.write_bytes(bytes(blob))

    return apply


BAD_INPUTS = {
    # id: (overrides, setup of the synthetic data folder, the sentence expected)
    "data: missing files": ([], remove_all, "the four IDX files were not found in .*; with data.verify_md5=false"),
    "data: truncated file": ([], raw("train-images-idx3-ubyte", cut=100), "truncated or corrupt"),
    "data: wrong magic": ([], raw("t10k-labels-idx1-ubyte", magic=b"\0\0\x08\x03"), "magic number 0x803"),
    "data: counts differ": (
        [],
        corrupt("t10k-labels-idx1-ubyte", array=torch.zeros(5, dtype=torch.uint8)),
        "images but .* has 5 labels",
    ),
    "data: label out of range": (
        [],
        corrupt("t10k-labels-idx1-ubyte", array=torch.full((32,), 12, dtype=torch.uint8)),
        "label 12, outside",
    ),
    "data: md5 mismatch": (["data.verify_md5=true"], None, "is not the published Fashion-MNIST file"),
    # MLflow makes a store's folder from its URL undecoded, and SQLite its file decoded: one would land elsewhere
    "logger: an MLflow store's folder named with ?": (
        ["logger=mlflow", "logger.mlflow.save_dir=/tmp/lenet_exp-test/run?1/mlflow"],
        None,
        r"logger=mlflow keeps its store in /tmp/lenet_exp-test/run\?1/mlflow, whose path holds \?, which MLflow reads",
    ),
    "config: batch size 0": (["data.batch_size=0"], None, r"data.batch_size=0 must be a positive whole number"),
    # Trainer arguments as Lightning's docs type them, wrong: Lightning divides by the first in the first epoch,
    # compares the words with numbers deep in its loops, or reads a bare number as a timedelta
    "config: validate every 0 epochs": (
        ["trainer.check_val_every_n_epoch=0"],
        None,
        r"trainer.check_val_every_n_epoch=0 must be a positive whole number, such as 2, or null for Lightning's",
    ),
    "config: a Trainer count given a word": (["trainer.max_steps=abc"], None, r"trainer.max_steps='abc' must be a"),
    "config: a Trainer switch given a word": (
        ["trainer.detect_anomaly=abc"],
        None,
        r"trainer.detect_anomaly='abc' must be true or false",
    ),
    "config: a batch limit given a word": (
        ["trainer.limit_train_batches=abc"],
        None,
        r"trainer.limit_train_batches='abc' must be a whole number of batches or a fraction",
    ),
    "config: a negative gradient clip": (["trainer.gradient_clip_val=-1"], None, r"gradient_clip_val=-1 must be a"),
    "config: max_time a bare number": (["trainer.max_time=20"], None, r"trainer.max_time=20 is not a duration"),
    # values Lightning takes and then runs into nothing: a traceback in the first step, an untrained "finished"
    # run, a run without its final test (a KeyError after training)
    "config: validate every 0 batches": (
        ["trainer.val_check_interval=0"],
        None,
        r"trainer.val_check_interval=0 must be a positive whole number of training batches, or a fraction",
    ),
    "config: no time to train": (["trainer.max_time=00:00:00:00"], None, r"max_time=00:00:00:00 leaves no time"),
    "config: negative time": (["trainer.max_time={minutes: -1}"], None, r"'minutes': -1} leaves no time to train"),
    "config: no final test": (
        ["trainer.limit_test_batches=0", "data.val_size=16"],
        None,
        r"trainer.limit_test_batches=0 would skip the final test, whose accuracy is the run's result",
    ),
    "config: batch size negative": (["data.batch_size=-3"], None, r"data.batch_size=-3 must be a positive"),
    "config: batch size not an integer": (["data.batch_size=2.5"], None, r"data.batch_size=2.5 must be a positive"),
    "config: batch size a word": (["data.batch_size=many"], None, r"data.batch_size='many' must be a positive"),
    # a value is echoed as it was typed: true, not Python's True
    "config: batch size a switch": (["data.batch_size=true"], None, r"data.batch_size=true must be a positive"),
    "config: max_epochs 0": (["trainer.max_epochs=0"], None, r"trainer.max_epochs=0 must be a positive"),
    "config: max_epochs negative": (["trainer.max_epochs=-2"], None, r"trainer.max_epochs=-2 must be a positive"),
    "config: lr 0": (["model.optimizer.lr=0"], None, r"model.optimizer.lr=0 must be a positive number"),
    "config: lr negative": (["model.optimizer.lr=-0.1"], None, r"model.optimizer.lr=-0.1 must be a positive number"),
    "config: val_size too large": (["data.val_size=64"], None, r"data.val_size=64 leaves no training images"),
    "config: lr not a number": (["model.optimizer.lr=abc"], None, r"model.optimizer.lr='abc' must be a positive"),
    "config: threads negative": (["threads=-1"], None, r"threads=-1 must be a positive whole number"),
    "config: seed a word": (["seed=abc"], None, r"seed='abc' must be a whole number from 0 to 4294967295, such as 42"),
    "config: seed negative": (["seed=-1"], None, r"seed=-1 must be a whole number from 0 to 4294967295"),
    "config: optimizing the test set": (
        ["optimized_metric=test_acc"],
        None,
        "would choose hyperparameters on the test",
    ),
    "config: optimizing an unknown metric": (["optimized_metric=acc"], None, "optimized_metric=acc is not a metric"),
    "config: optimizing val without a split": (["optimized_metric=val_acc"], None, "needs a validation split"),
    "config: optimizing a number": (["optimized_metric=5"], None, r"optimized_metric=5 names no metric; give one of"),
    "config: unknown activation": (["model.net.activation=tanh"], None, r"model.net.activation='tanh' is not known"),
    "config: unknown compile mode": (["model.compile=sometimes"], None, r"model.compile='sometimes' is not known"),
    "config: more CPU processes than cores": (
        ["trainer.devices=64"],
        None,
        r"trainer.devices=64 would start 64 training processes on this machine's \d+ CPU cores; ask for",
    ),
    "config: a validation split smaller than the DDP processes": (
        ["trainer.devices=2", "data.val_size=1"],
        None,
        r"data.val_size=1 leaves some of the 2 training processes without a validation image; hold out at least",
    ),
    "config: an accelerator this machine lacks": (["trainer.accelerator=mps"], None, "mps is not available"),
    "config: an accelerator nobody has": (["trainer.accelerator=abacus"], None, "abacus is not an accelerator"),
    # lenet_exp's own settings as a user may type them: a word where a switch belongs ran as true, an augmentation
    # by name, a crop bigger than the image, fewer outputs than classes failed in the first training step
    "config: a switch given a word": (["model.flip_average=off"], None, r"model.flip_average='off' must be true or"),
    "config: a data switch given a word": (["data.download=no"], None, r"data.download='no' must be true or false"),
    "config: a network switch given a word": (["+model.net.batch_norm=off"], None, r"batch_norm='off' must be true"),
    "config: an augmentation by name": (["model.augment=cutout"], None, r"model.augment='cutout' is not an augment"),
    "config: an augmentation without its class": (
        ["+model.augment.crop_padding=1"],
        None,
        r"model.augment=\{'crop_padding': 1\} is not an augmentation; give one such as \{_target_: lenet_exp",
    ),
    "config: a crop bigger than the image": (
        ["model=lenet_modern", "model.augment.crop_padding=40"],
        None,
        r"model.augment.crop_padding=40 must be a whole number from 0 to 27",
    ),
    "config: an augmentation's switch given a word": (
        ["model=lenet_modern", "model.augment.flip=off"],
        None,
        r"model.augment.flip='off' must be true or false",
    ),
    "config: fewer outputs than classes": (["model.net.num_classes=5"], None, r"model.net.num_classes=5 must be a"),
    "config: an optimizer that needs a closure, several steps per call": (
        ["model.optimizer._target_=torch.optim.LBFGS", "steps_per_call=4"],
        None,
        r"model.optimizer._target_=torch.optim.LBFGS evaluates the loss again within a step, so it needs Lightning",
    ),
    "data: images that are not 28 x 28": (
        [],
        lambda d: write_idx(d / "t10k-images-idx3-ubyte", torch.zeros(32, 32, 32)),
        r"holds images of 32 x 32 pixels",
    ),
    "gz: damaged header": ([], damaged_gz("train-images-idx3-ubyte", "header"), "cannot be read"),
    "gz: damaged stream": ([], damaged_gz("train-images-idx3-ubyte", "stream"), "cannot be read"),
    "gz: damaged checksum": ([], damaged_gz("t10k-labels-idx1-ubyte", "crc"), "cannot be read"),
    "gz: cut in half": ([], damaged_gz("t10k-images-idx3-ubyte", "half"), "cannot be read"),
}
if not torch.cuda.is_available():
    BAD_INPUTS["config: gpu without gpu"] = (["trainer.accelerator=gpu"], None, "finds no CUDA GPU")


@pytest.mark.parametrize("case", first_of_each(BAD_INPUTS, kind=lambda case: case.split(":")[0]))
def test_bad_input_is_one_clear_sentence_and_writes_no_result(case, tmp_path, fake_data, no_debian_data):
    overrides, setup, expected = BAD_INPUTS[case]
    if setup:
        setup(fake_data)
    cfg = compose_config(tmp_path / "run", [*ONE_EPOCH, f"data.data_dir={fake_data}", *overrides])
    with pytest.raises(Exception) as err:
        train(cfg)
    cause = user_error(err.value)
    assert cause is not None, f"not a UserError: {err.value!r}"
    message = str(cause)
    assert re.search(expected, message), message
    assert "\n" not in message and message.endswith(".")
    assert not (tmp_path / "run" / "metrics.json").exists()


# An interpolation that cannot be resolved, typed or in a config file: (the arguments, the key as typed).
UNRESOLVABLE = {
    "a job's setting": (["data.data_dir=${oc.env:LENET_EXP_UNSET}"], "data.data_dir=${oc.env:LENET_EXP_UNSET}"),
    "a key that is not there": (["model.optimizer.lr=${nope}"], "model.optimizer.lr=${nope}"),
    "the checkpoint": (["ckpt_path=${oc.env:LENET_EXP_UNSET}/a.ckpt"], "ckpt_path=${oc.env:LENET_EXP_UNSET}/a.ckpt"),
    "the run folder": (["hydra.run.dir=${oc.env:LENET_EXP_UNSET}/run"], "hydra.run.dir=${oc.env:LENET_EXP_UNSET}/run"),
    # keys after logger: logger.version interpolates Hydra's job.override_dirname, which holds every override
    "a key of one's own": (["+mine=${oc.env:LENET_EXP_UNSET}"], "mine=${oc.env:LENET_EXP_UNSET}"),
    "a callback's folder": (
        ["callbacks.checkpoint.dirpath=${oc.env:LENET_EXP_UNSET}"],
        "callbacks.checkpoint.dirpath=",
    ),
    "the sweep folder": (["-m", "seed=1,2", "hydra.sweep.dir=${oc.env:LENET_EXP_UNSET}"], "hydra.sweep.dir=${oc.env:"),
    "a sweep's setting": (["-m", "seed=1,2", "data.val_size=${oc.env:LENET_EXP_UNSET}"], "data.val_size=${oc.env:"),
}


@pytest.mark.parametrize("case", first_of_each(UNRESOLVABLE))
def test_an_interpolation_that_cannot_be_resolved_is_one_sentence_naming_its_key(case, tmp_path, monkeypatch):
    monkeypatch.delenv("LENET_EXP_UNSET", raising=False)
    monkeypatch.chdir(tmp_path)
    args, typed = UNRESOLVABLE[case]
    run = tmp_path / "run"
    folder = [] if "-m" in args or "hydra.run.dir" in args[0] else [f"hydra.run.dir={run}"]
    out = run_main("lenet_exp", *args, *folder, *ONE_EPOCH)
    assert out.returncode == 1 and "Traceback" not in out.stderr + out.stdout, out.stderr
    sentence = out.stderr.strip().splitlines()[-1]
    assert sentence.startswith(f"error: {typed}") and "cannot be resolved (" in sentence, out.stderr
    assert "LENET_EXP_UNSET" in sentence or "'nope' not found" in sentence
    if (run / "lenet_exp.log").is_file():  # a run refused once its log was open ends it with the sentence
        assert (run / "lenet_exp.log").read_text().splitlines()[-1].endswith(sentence)
    assert not list(tmp_path.rglob("metrics.json"))


@pytest.mark.slow
def test_a_top_level_key_of_ones_own_is_left_alone_and_a_switch_takes_0_and_1(tmp_path):
    """check_top_level refuses a typo of one of lenet_exp's keys, not a value of the user's own: one that an
    interpolation uses, or one of another kind than the key it resembles (a list is no seed)."""
    from lenet_exp.errors import check_value
    from lenet_exp.runtime.checks import check_top_level

    check_top_level(OmegaConf.create({"seed": 1, "seeds": [1, 2, 3]}))
    check_top_level(OmegaConf.create({"seed": "${seeds.0}", "seeds": 7}))
    with pytest.raises(UserError, match=r"^sed is not a setting of lenet_exp, .* did you mean seed\?"):
        check_top_level(OmegaConf.create({"seed": 1, "sed": 3}))
    with pytest.raises(UserError, match=r"^trainers is not a setting of lenet_exp, .* did you mean trainer\?"):
        check_top_level(OmegaConf.create({"trainer": {"max_epochs": 5}, "trainers": {"max_epochs": 1}}))
    # the command checks it (a file may add a key; + adds one here), and only for a new run: a stored config is data
    out = run_main("lenet_exp", "+sed=3", f"hydra.run.dir={tmp_path / 'run'}")
    said = "error: +sed=3 adds sed, which is not a setting of lenet_exp, so it would change nothing; did you mean seed?"
    assert out.returncode == 1 and f"{said} Give seed=3 instead." in out.stderr, out.stderr  # not "a config file's"
    out = run_main("lenet_exp", "+trainers.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert (
        "error: +trainers.max_epochs=1 adds trainers, which" in out.stderr and "Give trainer.max_epochs=1" in out.stderr
    )
    assert [check_value("model.flip_average", v, "switch") for v in (True, False, 0, 1)] == [True, False, 0, 1]
    for word in ("off", "yes", 2):
        with pytest.raises(UserError, match=r"must be true or false"):
            check_value("model.flip_average", word, "switch")


@pytest.mark.slow
def test_a_reader_that_stops_early_ends_a_command_quietly(tmp_path, two_epochs_run):
    """``... | head``: the command's output ends early, as a Unix tool's does (exit status 141, nothing on stderr),
    not in Python's BrokenPipeError traceback."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):  # a light object on black each, not a blank picture (about which predict warns)
        picture = Image.new("L", (28, 28), 0)
        picture.paste(100 + 50 * i, (8, 4, 20, 24))
        picture.save(images / f"{i}.png")
    run, _ = two_epochs_run
    commands = [
        ["-m", "lenet_exp", "--help"],
        ["-m", "lenet_exp", "--cfg", "job"],
        ["-m", "lenet_exp.report", "--help"],
        ["-m", "lenet_exp.predict", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"images={images}"],
    ]
    for command in commands:
        process = subprocess.Popen(
            [sys.executable, *command], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        process.stdout.close()  # the reader is gone before the command prints (head -0; head -1 after a line)
        stderr = process.stderr.read()
        # 141 (128 + SIGPIPE), or ended by SIGPIPE itself, which a shell reports as 141 too
        assert process.wait(timeout=120) in (141, -signal.SIGPIPE) and stderr == "", (command, stderr)


@pytest.mark.slow
def test_an_unreadable_data_directory_is_named(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0)
    code = f"from lenet_exp.data import find_files; from pathlib import Path; find_files(Path({str(folder)!r}))"
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:  # root reads everything: check without root's capabilities, as a user would meet it
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv")
        # still root, so the checkout and its venv stay readable wherever they are (an ordinary user may not get
        # into a clone in a private folder), but permission bits apply: the folder's 0 refuses its owner too
        command = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *command]
    try:
        out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    finally:
        folder.chmod(0o755)  # so that pytest can remove it
    assert out.returncode != 0
    assert f"{folder} cannot be read (permission denied)" in out.stderr


@pytest.mark.slow
def test_an_output_folder_that_cannot_be_written_is_refused_before_anything_runs(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for args, key in (
        (["hydra.run.dir=" + str(blocker / "run")], "hydra.run.dir"),
        (["-m", "hydra.sweep.dir=" + str(blocker / "sweep")], "hydra.sweep.dir"),
    ):
        out = run_cli(*args)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert f"error: the output folder {blocker}" in out.stderr and f"choose another with {key}=" in out.stderr
    assert blocker.read_text() == "not a folder"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-epoch run on synthetic data: the checkpoint and folder the commands are given."""
    data = tmp_path_factory.mktemp("data")
    write_fake_fashion_mnist(data)
    run = tmp_path_factory.mktemp("finished")
    lenet_exp.run(*ONE_EPOCH, f"data.data_dir={data}", f"hydra.run.dir={run}")  # as the command would
    return run


def damaged_data(tmp: Path) -> Path:
    folder = tmp / "data"
    write_fake_fashion_mnist(folder)
    damaged_gz("train-images-idx3-ubyte", "stream")(folder)
    return folder


NO_CKPT = "/nonexistent/last.ckpt"
# id: (command, arguments given the finished run and a scratch folder, what the one sentence says)
CLI_CASES = {
    "train: unknown key": ("lenet_exp", lambda r, t: ["data.foo=1"], "Key 'foo' is not in struct"),
    "train: unknown experiment": ("lenet_exp", lambda r, t: ["experiment=nope"], "Could not find 'experiment/nope'"),
    "train: batch size 0": ("lenet_exp", lambda r, t: ["data.batch_size=0"], "data.batch_size=0 must be a positive"),
    "train: 64 CPU processes": ("lenet_exp", lambda r, t: ["trainer=cpu", "trainer.devices=64"], "would start 64"),
    "train: an accelerator this machine lacks": ("lenet_exp", lambda r, t: ["trainer.accelerator=mps"], "mps is not"),
    "train: damaged compressed data": (
        "lenet_exp",
        lambda r, t: [*ONE_EPOCH, f"data.data_dir={damaged_data(t)}"],
        "train-images-idx3-ubyte.gz cannot be read",
    ),
    "train: missing checkpoint": ("lenet_exp", lambda r, t: [f"ckpt_path={NO_CKPT}"], "does not exist"),
    "train: Lightning's ckpt_path=last": (
        "lenet_exp",
        lambda r, t: ["ckpt_path=last"],
        "ckpt_path=last is Lightning's name for a checkpoint of the same Trainer's folder, and each lenet_exp command",
    ),
    # a key a class does not take, a class that cannot be imported: the key named, not Hydra's wrapped error or
    # a traceback at the first step
    "train: a key the data module does not take": (
        "lenet_exp",
        lambda r, t: ["+data.num_workers=4"],
        "data cannot be built: FashionMNIST.__init__() got an unexpected keyword argument 'num_workers'; remove",
    ),
    "train: a class that cannot be imported": (
        "lenet_exp",
        lambda r, t: ["model.optimizer._target_=torch.optim.Adamw"],
        "model.optimizer._target_=torch.optim.Adamw cannot be imported; give a class with its module",
    ),
    "train: a callback's required argument left out": (
        "lenet_exp",
        lambda r, t: ["+callbacks.swa._target_=pytorch_lightning.callbacks.StochasticWeightAveraging"],
        "missing 1 required positional argument: 'swa_lrs'; give it with +callbacks.swa.swa_lrs=<value>.",
    ),
    "train: Lightning's docs' package name": (
        "lenet_exp",
        lambda r, t: ["+callbacks.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor"],
        "the lightning package is not installed here; lenet_exp runs on pytorch_lightning, so write "
        "pytorch_lightning.callbacks.LearningRateMonitor.",
    ),
    "train: a callback whose package is not installed": (  # rich: none of lenet_exp's requirements needs it
        "lenet_exp",
        lambda r, t: ["+callbacks.rich._target_=pytorch_lightning.callbacks.RichProgressBar"],
        "callbacks.rich cannot be built: `RichProgressBar` requires `rich`",
    ),
    "train: a keyword the optimizer does not take": (
        "lenet_exp",
        lambda r, t: ["+model.optimizer.momentum=0.9"],
        "model.optimizer cannot be made: Adam got an unexpected keyword argument 'momentum'; remove that",
    ),
    "train: a scheduler by a name": (
        "lenet_exp",
        lambda r, t: ["model.scheduler=cosine"],
        "model.scheduler='cosine' is not a class or function to call; give one such as {_target_: torch.optim.",
    ),
    "train: continue a finished run": (
        "lenet_exp",
        lambda r, t: [*ONE_EPOCH, f"data.data_dir={data_dir(r)}", f"ckpt_path={r / 'checkpoints' / 'last.ckpt'}"],
        "already holds 1 epoch and trainer.max_epochs=1, so there is nothing left to train; to train further, "
        "raise it, such as trainer.max_epochs=6.",
    ),
    "eval: no arguments": ("lenet_exp.eval", lambda r, t: [], "usage: python -m lenet_exp.eval"),
    "eval: missing checkpoint": ("lenet_exp.eval", lambda r, t: [f"ckpt_path={NO_CKPT}"], "does not exist"),
    "eval: not a checkpoint": (
        "lenet_exp.eval",
        lambda r, t: [f"ckpt_path={r / '.hydra' / 'config.yaml'}"],
        "is not a checkpoint that loads with weights_only=True",
    ),
    "eval: an accelerator this machine lacks": (
        "lenet_exp.eval",
        lambda r, t: [f"ckpt_path={r / 'checkpoints' / 'last.ckpt'}", "accelerator=mps"],
        "accelerator=mps is not available",
    ),
    "eval: unknown argument": (
        "lenet_exp.eval",
        lambda r, t: [f"ckpt_path={r / 'checkpoints' / 'last.ckpt'}", "acelerator=cpu"],
        "acelerator is not an argument of this command",
    ),
    "eval: an override the config lacks": (
        "lenet_exp.eval",
        lambda r, t: [f"ckpt_path={r / 'checkpoints' / 'last.ckpt'}", "data.nope=1"],
        "does not fit the checkpoint's config",
    ),
    "eval: a run folder": ("lenet_exp.eval", lambda r, t: [f"ckpt_path={r}"], "is a folder; give one of its .ckpt"),
    "train: a folder without checkpoints": ("lenet_exp", lambda r, t: [f"ckpt_path={t}"], "is a folder without .ckpt"),
    "eval: a placeholder path": ("lenet_exp.eval", lambda r, t: ["ckpt_path=..."], "ckpt_path=... does not exist"),
    "eval: a path with spaces and YAML's characters": (
        "lenet_exp.eval",
        lambda r, t: ["ckpt_path=my run: [1]/{x}.ckpt"],
        "ckpt_path=my run: [1]/{x}.ckpt does not exist",
    ),
    "eval: an override YAML cannot read": (
        "lenet_exp.eval",
        lambda r, t: [f"ckpt_path={r / 'checkpoints' / 'last.ckpt'}", "data.data_dir=a: [b"],
        "must be quoted",
    ),
    "predict: a placeholder path": ("lenet_exp.predict", lambda r, t: ["ckpt_path=...", "images=..."], "... does not"),
    "predict: top as a word": (
        "lenet_exp.predict",
        lambda r, t: [f"ckpt_path={r / 'checkpoints' / 'last.ckpt'}", f"images={t}", "top=three"],
        "top='three' must be a positive whole number",
    ),
    "predict: no images": ("lenet_exp.predict", lambda r, t: [f"ckpt_path={NO_CKPT}"], "usage: python -m"),
    "predict: top 0": (
        "lenet_exp.predict",
        lambda r, t: [f"ckpt_path={r / 'checkpoints' / 'last.ckpt'}", f"images={t}", "top=0"],
        "top=0 must be a positive whole number",
    ),
    "predict: unknown format": (
        "lenet_exp.predict",
        lambda r, t: [f"ckpt_path={NO_CKPT}", f"images={t}", "format=xml"],
        "format=xml is not known; use format=text or format=json.",
    ),
    "predict: missing checkpoint": (
        "lenet_exp.predict",
        lambda r, t: [f"ckpt_path={NO_CKPT}", f"images={t}"],
        "does not exist",
    ),
    "predict: no image files": (
        "lenet_exp.predict",
        lambda r, t: [f"ckpt_path={r / 'checkpoints' / 'last.ckpt'}", f"images={t / 'empty'}"],
        "names no image files",
    ),
    "resume: no arguments": ("lenet_exp.resume", lambda r, t: [], "usage: python -m lenet_exp.resume"),
    "resume: not a folder": ("lenet_exp.resume", lambda r, t: [str(t / "nope")], "is not a folder"),
    "resume: not a run folder": ("lenet_exp.resume", lambda r, t: [str(t)], "is not a lenet_exp run folder"),
    "resume: a sweep folder": (  # a folder of multirun.yaml and its job folders
        "lenet_exp.resume",
        lambda r, t: [str(write(t, "multirun.yaml", "hydra: {}\n"))],
        "is a sweep's folder, not a run's; give one of its job folders.",
    ),
    "resume: config.yaml gone": (  # a run's .hydra holding only hydra.yaml: damaged, not another kind of folder
        "lenet_exp.resume",
        lambda r, t: [str(without(unfinished_copy(r, t), ".hydra/config.yaml"))],
        "/.hydra has no config.yaml (or it is not a file), so the folder is damaged; start the run again instead.",
    ),
    "resume: an empty config.yaml": (  # cut short to nothing: it said a version of lenet_exp had written it
        "lenet_exp.resume",
        lambda r, t: [str(write(unfinished_copy(r, t), ".hydra/config.yaml", ""))],
        ".hydra cannot be read (config.yaml is empty); the folder is damaged",
    ),
    "resume: damaged config.yaml": (
        "lenet_exp.resume",
        lambda r, t: [str(write(unfinished_copy(r, t), ".hydra/config.yaml", "model: [unclosed"))],
        ".hydra cannot be read",
    ),
    "resume: damaged hydra.yaml": (
        "lenet_exp.resume",
        lambda r, t: [str(write(unfinished_copy(r, t), ".hydra/hydra.yaml", "- just\n- a list\n"))],
        ".hydra cannot be read",
    ),
    "resume: a truncated last.ckpt": (  # a copy of the folder cut short: lenet_exp itself writes it whole
        "lenet_exp.resume",
        lambda r, t: [str(write(unfinished_copy(r, t), "checkpoints/last.ckpt", "PK\x03\x04 cut short"))],
        "the run's newest checkpoint, cannot be read (it is truncated or damaged), so the run cannot continue",
    ),
    "resume: unknown argument": ("lenet_exp.resume", lambda r, t: [str(r), "trusted=x"], "trusted is not an argument"),
    "resume: a folder of Hydra's": (  # a run resumes in its own folder; only DDP ranks are handed these
        "lenet_exp.resume",
        lambda r, t: [str(r), f"hydra.run.dir={t / 'elsewhere'}"],
        "hydra.run.dir is not an argument",
    ),
    "report: no arguments": ("lenet_exp.report", lambda r, t: [], "usage: python -m lenet_exp.report"),
    "report: not a folder": ("lenet_exp.report", lambda r, t: [str(t / "nope")], "is not a folder"),
    "report: no jobs": ("lenet_exp.report", lambda r, t: [str(t)], "holds no job folders"),
    "report: a run folder": ("lenet_exp.report", lambda r, t: [str(r)], "is the folder of one run; a report compares"),
    "report: unknown argument": (
        "lenet_exp.report",
        lambda r, t: [str(t), "acelerator=cpu"],
        "acelerator is not an argument of this command; usage: python -m lenet_exp.report",
    ),
    "bench: unknown variant": ("benchmarks/bench.py", lambda r, t: ["--variants", "bare,fast"], "--variants takes"),
    "bench: no epochs": ("benchmarks/bench.py", lambda r, t: ["--epochs", "0"], "--epochs, --repeats and"),
}
HYDRAS_OWN = {"train: unknown key", "train: unknown experiment"}
# One case of each of eval, predict, resume and report, and two of training (one that Hydra refuses, one that
# lenet_exp does), run the command as users do (a subprocess from a folder of their own); the other cases call
# its main in this process (conftest.run_main). The benchmarks' cases call their main in this process
# (test_bench.py and test_gpu_check.py run the scripts themselves).
AS_A_COMMAND = {
    "train: unknown key",
    "train: batch size 0",
    "eval: an override the config lacks",
    "predict: no image files",
    "resume: damaged config.yaml",
    "report: no jobs",
}
if not torch.cuda.is_available():
    CLI_CASES["eval: a GPU that is not there"] = (
        "lenet_exp.eval",
        lambda r, t: [f"ckpt_path={NO_CKPT}", "accelerator=gpu"],
        "accelerator=gpu but PyTorch finds no CUDA GPU",
    )
    CLI_CASES["gpu-check: no GPU"] = ("benchmarks/gpu_check.py", lambda r, t: [], "finds no CUDA GPU here")


# Wrong values of a run that lenet_exp refuses (Hydra refuses unknown keys itself), one of each kind: the data
# module's, the LightningModule's, the Trainer's, the CPU processes and the data split against them (the
# processes first: the split's advice would ask for more of them), steps_per_call alone and with a Trainer setting
# it cannot honour. The sentence comes before torch is imported,
# so that a typo costs under a second instead of the seconds torch and Lightning take.
BEFORE_TORCH = {
    "data.batch_size=0": "data.batch_size=0 must be a positive whole number",
    "model.optimizer.lr=-1": "model.optimizer.lr=-1 must be a positive number",
    "trainer.max_epochs=0": "trainer.max_epochs=0 must be a positive whole number",
    "trainer=ddp_cpu trainer.devices=64 data.val_size=4": "trainer.devices=64 would start 64 training processes",
    "trainer=ddp_cpu data.val_size=1": "data.val_size=1 leaves some of the 2 training processes",
    "trainer.max_time=20": "trainer.max_time=20 is not a duration",
    "steps_per_call=0": "steps_per_call=0 is not a whole number >= 1, epoch or auto",
    "steps_per_call=16 trainer.accumulate_grad_batches=2": "trainer.accumulate_grad_batches needs Lightning's",
}


@pytest.mark.slow
def test_a_wrong_value_is_refused_before_torch_is_imported(tmp_path):
    missing = f"ckpt_path={tmp_path / 'nothing.ckpt'}"
    commands = [
        ("lenet_exp", [*overrides.split(), f"hydra.run.dir={tmp_path / 'run'}"], expected, "lenet_exp.runtime.checks")
        for overrides, expected in BEFORE_TORCH.items()
    ]
    # and a checkpoint that is not there, to the commands that read one
    commands += [("lenet_exp.eval", [missing], "nothing.ckpt", "lenet_exp.errors")]
    commands += [("lenet_exp.predict", [missing, "images=."], "nothing.ckpt", "lenet_exp.errors")]
    for module, args, expected, checker in commands:
        out = run_cli(*args, module=module, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
        lines = out.stderr.splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        assert out.returncode == 1 and len(errors) == 1 and expected in errors[0], out.stderr[-3000:]
        imported = {line.rpartition("|")[2].strip() for line in lines if line.startswith("import time:")}
        assert checker in imported  # the profile is there, and holds what refused
        assert not imported & {"torch", "pytorch_lightning"}, (module, args)


def data_dir(run: Path) -> str:
    return OmegaConf.load(run / ".hydra" / "config.yaml").data.data_dir


@pytest.mark.parametrize(
    ("module", "run"),
    [
        ("lenet_exp.eval", run_cli),  # as users run it; the others' --help in this process
        ("lenet_exp.predict", run_main),
        ("lenet_exp.resume", run_main),
        ("lenet_exp.report", run_main),
    ],
)
def test_help_prints_the_usage_and_succeeds(module, run):
    out = run("--help", module=module) if run is run_cli else run(module, "--help")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.startswith(f"python -m {module} "), out.stdout
    if module != "lenet_exp.report":  # the commands that build from a stored config take trust= (safe-loading.md)
        assert "[trust=your.Class,...]" in out.stdout.split("\n\n")[0], out.stdout


def test_a_sweep_with_cfg_is_one_sentence_saying_to_show_one_jobs_config():
    """``-m ... --cfg job`` (to see what a sweep would run) ended in Hydra's ValueError traceback."""
    out = run_cli("-m", "data.batch_size=64,128", "--cfg", "job")
    assert out.returncode == 1 and "Traceback" not in out.stderr + out.stdout, out.stderr
    assert out.stderr.strip() == (
        "error: -m and -c cannot be given together: Hydra does one of running (-r), a sweep (-m), showing the "
        "config (-c), showing its sources (-i) and shell completion (-sc); to see a sweep's config, show one job's: "
        "leave out -m and give each key one value."
    )


def test_help_under_python_OO_still_prints_the_usage():
    """``python -OO`` drops docstrings, which are the commands' help: it printed an empty line."""
    out = subprocess.run(
        [sys.executable, "-OO", "-m", "lenet_exp.resume", "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.startswith("python -m lenet_exp.resume <run folder>"), out


def write(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder


def without(folder: Path, name: str) -> Path:
    (folder / name).unlink()
    return folder


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CLI_CASES))
def test_every_entry_point_answers_bad_input_with_one_sentence(case, finished, tmp_path):
    module, make_args, expected = CLI_CASES[case]
    (tmp_path / "empty").mkdir()
    args = make_args(finished, tmp_path) + ([f"hydra.run.dir={tmp_path / 'run'}"] if module == "lenet_exp" else [])
    if module.endswith(".py"):  # benchmarks/bench.py: its main, as benchmarks.bench
        out = run_main(module.removesuffix(".py").replace("/", "."), *args)
    elif module.startswith("lenet_exp") and case not in AS_A_COMMAND:
        out = run_main(module, *args)
    else:
        out = run_cli(*args, module=module)
    output = out.stdout + out.stderr
    assert out.returncode == 1 and "Traceback" not in output, output
    assert expected in output, output
    if case in HYDRAS_OWN:  # composing the config failed: Hydra says so in its own form, before lenet_exp runs
        assert "Set the environment variable HYDRA_FULL_ERROR" in out.stderr, output
    else:  # one line on stderr, the same from every command
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0] in out.stderr.splitlines() and expected in errors[0], output
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob("*.tmp"))
    assert not list(finished.rglob("*.tmp")) and not processes_mentioning(str(tmp_path))


class BrokenInside:
    """A class whose constructor fails in its own code with a TypeError: a bug to see, not a setting to name."""

    def __init__(self) -> None:
        len(5)


def test_a_constructors_own_type_error_keeps_its_traceback():
    from hydra.errors import InstantiationException

    from lenet_exp.errors import built

    with pytest.raises(InstantiationException) as raised:
        built(OmegaConf.create({"model": {"_target_": f"{__name__}.BrokenInside"}}).model)
    assert isinstance(raised.value.__cause__, TypeError)


@pytest.mark.slow
def test_an_empty_output_folder_or_one_beginning_with_a_tilde_is_refused_before_anything_is_written(
    tmp_path, fake_data, monkeypatch
):
    """hydra.run.dir= (a variable that was empty) made the current folder the run's: .hydra/, checkpoints/ and
    metrics.json among the user's files; a quoted '~/runs' made a folder named ~ in the current folder."""
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.chdir(user)
    tiny = [*ONE_EPOCH, f"data.data_dir={fake_data}", "logger=none"]
    for args, said in (
        (["hydra.run.dir="], "hydra.run.dir is empty, which would make the current folder the output folder; give"),
        (["-m", "seed=1,2", "hydra.sweep.dir="], "hydra.sweep.dir is empty, which would make the current folder"),
        (["hydra.run.dir='~/runs/a'"], "hydra.run.dir=~/runs/a would make a folder named ~ in the current folder"),
    ):
        out = run_main("lenet_exp", *args, *tiny)
        assert out.returncode == 1 and f"error: {said}" in out.stderr, out.stderr
    with pytest.raises(UserError, match=r"^hydra.run.dir is empty, which would make the current folder the output"):
        lenet_exp.run("hydra.run.dir=", *tiny)
    assert not list(user.iterdir())


def test_torchs_internal_info_lines_stay_out_of_a_commands_output():
    """torch logs its FakeTensor cache stats at exit, at INFO: quiet once torch's logging is set up, they came
    above the sentence of a command interrupted while torch was loading (eval, predict, resume, training)."""
    code = (
        "import logging; from lenet_exp.runtime.console import log_to_console; log_to_console(); "
        "logging.getLogger('torch._subclasses.fake_tensor').info('FakeTensor cache stats:'); "
        "logging.getLogger('torch').warning('a warning of torch'); logging.getLogger('lenet_exp').info('kept')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout == "a warning of torch\nkept\n", out.stdout + out.stderr


class Breaks(Callback):
    """A callback of one's own with a bug, for the test below (found by Hydra as tests' own module)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        raise RuntimeError("a bug of one's own code")


@pytest.mark.slow
def test_a_fault_of_code_keeps_its_traceback_in_the_runs_log_file_at_run_and_at_resume(tmp_path, fake_data):
    """The terminal had Hydra's traceback (or Python's, at resume) and the run's lenet_exp.log ended at the model
    summary, as if cut off."""
    run = tmp_path / "run"
    breaks = "+callbacks.breaks={_target_:test_errors.Breaks}"
    out = run_main("lenet_exp", *ONE_EPOCH, f"data.data_dir={fake_data}", breaks, f"hydra.run.dir={run}")
    assert out.returncode == 1 and "RuntimeError: a bug of one's own code" in out.stderr  # Hydra's report of it
    log = (run / "lenet_exp.log").read_text()
    assert "the run failed:\nTraceback (most recent call last):" in log
    assert log.rstrip().endswith("RuntimeError: a bug of one's own code")
    with pytest.raises(RuntimeError, match="a bug of one's own code"):  # Python's traceback on the terminal
        run_main("lenet_exp.resume", str(run), "trust=test_errors.Breaks")
    log = (run / "lenet_exp.log").read_text()
    assert log.count("the run failed:\nTraceback (most recent call last):") == 2, log
    assert log.rstrip().endswith("RuntimeError: a bug of one's own code")
