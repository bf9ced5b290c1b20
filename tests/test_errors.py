"""Bad input at every entry point is one clear sentence and leaves no result behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import ONE_EPOCH, ROOT, compose_config, run_cli, write_idx

from lenet_exp.errors import user_error
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


BAD_INPUTS = {
    # id: (overrides, setup of the synthetic data folder, the sentence expected)
    "data: missing files": ([], remove_all, "Fashion-MNIST was not found in .*; run `make data`"),
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
    "config: batch size 0": (["data.batch_size=0"], None, r"data.batch_size=0 must be a positive whole number"),
    "config: batch size negative": (["data.batch_size=-3"], None, r"data.batch_size=-3 must be a positive"),
    "config: batch size not an integer": (["data.batch_size=2.5"], None, r"data.batch_size=2.5 must be a positive"),
    "config: batch size a word": (["data.batch_size=many"], None, r"data.batch_size='many' must be a positive"),
    "config: max_epochs 0": (["trainer.max_epochs=0"], None, r"trainer.max_epochs=0 must be a positive"),
    "config: max_epochs negative": (["trainer.max_epochs=-1"], None, r"trainer.max_epochs=-1 must be a positive"),
    "config: lr 0": (["model.optimizer.lr=0"], None, r"model.optimizer.lr=0 must be a positive number"),
    "config: lr negative": (["model.optimizer.lr=-0.1"], None, r"model.optimizer.lr=-0.1 must be a positive number"),
    "config: val_size too large": (["data.val_size=64"], None, r"data.val_size=64 leaves no training images"),
    "config: lr not a number": (["model.optimizer.lr=abc"], None, r"model.optimizer.lr='abc' must be a positive"),
    "config: threads negative": (["threads=-1"], None, r"threads=-1 must be a positive whole number"),
    "config: optimizing the test set": (
        ["optimized_metric=test_acc"],
        None,
        "would choose hyperparameters on the test",
    ),
    "config: optimizing an unknown metric": (["optimized_metric=acc"], None, "optimized_metric=acc is not a metric"),
    "config: optimizing val without a split": (["optimized_metric=val_acc"], None, "needs a validation split"),
    "config: unknown activation": (["model.net.activation=tanh"], None, r"model.net.activation='tanh' is not known"),
}
if not torch.cuda.is_available():
    BAD_INPUTS["config: gpu without gpu"] = (["trainer.accelerator=gpu"], None, "finds no CUDA GPU")


@pytest.mark.parametrize("case", list(BAD_INPUTS))
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


def test_an_unreadable_data_directory_is_named():
    container = Path(tempfile.mkdtemp(prefix="lenet-exp-test-"))  # reachable by any user, unlike tmp_path
    container.chmod(0o755)
    folder = container / "locked"
    folder.mkdir()
    folder.chmod(0)
    code = f"from lenet_exp.data import find_files; from pathlib import Path; find_files(Path({str(folder)!r}))"
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:  # root reads everything: check as an ordinary user, as a user would meet it
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    try:
        out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    finally:
        folder.chmod(0o755)
        shutil.rmtree(container)
    assert out.returncode != 0
    assert f"{folder} cannot be read (permission denied)" in out.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["data.foo=1"], "Key 'foo' is not in struct"),
        (["experiment=nonexistent"], "Could not find 'experiment/nonexistent'"),
        (["data.batch_size=0"], "error: data.batch_size=0 must be a positive whole number, such as 256."),
    ],
)
def test_cli_config_errors_exit_non_zero_without_a_traceback(tmp_path, args, expected):
    out = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode != 0
    assert expected in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


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
