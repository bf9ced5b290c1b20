"""Bad input gets one clear sentence; failures and kills lose nothing already written."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, apply, compose_config, real_data, run_cli, scalars, write_idx
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback

from lenet_exp.checkpoint import CONFIG_KEY, AtomicCheckpointIO, load_checkpoint
from lenet_exp.errors import UserError, user_error
from lenet_exp.train import train

TIMING = ("seconds_per_epoch", "epoch_seconds", "first_step_at", "git_rev")  # differ between equal runs
SYNTHETIC = ["trainer=cpu", "data.verify_md5=false", "data.batch_size=16", "trainer.max_epochs=1"]


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
    cfg = compose_config(tmp_path / "run", [*SYNTHETIC, f"data.data_dir={fake_data}", *overrides])
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
    for args, key in ((["hydra.run.dir=" + str(blocker / "run")], "hydra.run.dir"),
                      (["-m", "hydra.sweep.dir=" + str(blocker / "sweep")], "hydra.sweep.dir")):  # fmt: skip
        out = run_cli(*args)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert f"error: the output folder {blocker}" in out.stderr and f"choose another with {key}=" in out.stderr
    assert blocker.read_text() == "not a folder"


@pytest.fixture
def trained_run(tmp_path_factory, fake_data) -> Path:
    run = tmp_path_factory.mktemp("trained")
    train(compose_config(run, [*SYNTHETIC, f"data.data_dir={fake_data}"]))
    return run


def other_architecture(path: Path) -> None:
    """A checkpoint that names the default model but holds weights of another shape."""
    config = OmegaConf.to_container(compose_config(path.parent, []), resolve=True)
    torch.save({"state_dict": {"net.features.0.weight": torch.zeros(3, 1, 5, 5)}, CONFIG_KEY: config}, path)


class Pickled:  # an arbitrary class: loading it would run code that is not a tensor
    pass


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (None, "does not exist"),
        (lambda p: p.write_text("not a checkpoint"), "is not a checkpoint that loads with weights_only=True"),
        (lambda p: torch.save({"state_dict": {}, "x": Pickled()}, p), "loads with weights_only=True"),
        (other_architecture, "was saved from another architecture"),
    ],
)
def test_bad_checkpoints_are_refused(tmp_path, fake_data, make, expected):
    path = tmp_path / "given.ckpt"
    if make:
        make(path)
    cfg = compose_config(tmp_path / "run", [*SYNTHETIC, f"data.data_dir={fake_data}", f"ckpt_path={path}"])
    with pytest.raises(Exception) as err:
        train(cfg)
    assert user_error(err.value) is not None and expected in str(user_error(err.value))
    for bad in [path] if make else []:  # evaluation refuses the same files, as one sentence too
        out = run_cli(f"ckpt_path={bad}", module="lenet_exp.eval")
        assert out.returncode == 1 and expected in out.stderr and "Traceback" not in out.stderr


def test_checkpoints_load_without_unpickling_code_and_hold_the_config(trained_run):
    checkpoint = load_checkpoint(trained_run / "checkpoints" / "last.ckpt")  # weights_only=True inside
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


class InfiniteLearningRateFromEpoch(Callback):
    """Makes the loss blow up from a given epoch on (1-based), as a too-large learning rate does."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = float("inf")


def test_a_nan_loss_stops_the_run_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, fake_data):
    cfg = compose_config(
        tmp_path, [*SYNTHETIC, "trainer.max_epochs=3", f"data.data_dir={fake_data}",
                   "+callbacks.blow_up._target_=test_reliability.InfiniteLearningRateFromEpoch",
                   "+callbacks.blow_up.epoch=2"],
    )  # fmt: skip
    with pytest.raises(UserError, match=r"NaN or infinite in epoch 2 at step 2, .* lower the learning rate"):
        train(cfg)
    kept = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert kept["epoch"] == 0  # the index of the last good epoch (the first), not of the broken one
    assert all(torch.isfinite(t).all() for t in kept["state_dict"].values() if t.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()


def test_two_runs_with_one_seed_give_identical_metrics(tmp_path, fake_data):
    results = []
    for name in ("a", "b"):
        cfg = compose_config(tmp_path / name, [*SYNTHETIC, "trainer.max_epochs=2", f"data.data_dir={fake_data}"])
        metrics = train(cfg)
        results.append({k: v for k, v in metrics.items() if k not in TIMING})
        ckpt = load_checkpoint(tmp_path / name / "checkpoints" / "last.ckpt")
        results.append(ckpt["state_dict"])
    assert results[0] == results[2]
    assert all(torch.equal(results[1][k], results[3][k]) for k in results[1])


def test_a_failing_job_keeps_the_other_jobs_of_a_sweep(tmp_path, fake_data):
    sweep = tmp_path / "sweep"
    out = run_cli("-m", *SYNTHETIC[:2], "trainer.max_epochs=1", f"data.data_dir={fake_data}",
                  "data.batch_size=0,16", f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert out.returncode != 0
    assert "job 0 (" in out.stdout and "data.batch_size=0) failed: data.batch_size=0 must be a positive" in out.stdout
    assert "must be a positive whole number" in (sweep / "0" / "error.txt").read_text()
    assert not (sweep / "0" / "metrics.json").exists()
    assert json.loads((sweep / "1" / "metrics.json").read_text())["epochs"] == 1
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file()


def start_run(run: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lenet_exp", "trainer=cpu", f"hydra.run.dir={run}", *overrides],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def interrupt_after_line(proc: subprocess.Popen, prefix: str, sig: signal.Signals) -> tuple[int, str]:
    """Send ``sig`` one second after the line starting with ``prefix``; return exit code and output."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            time.sleep(0.3)  # the line is written as the next epoch starts: now well inside it
            proc.send_signal(sig)
            break
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + rest


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]


@apply(real_data)
def test_sigterm_in_epoch_3_then_resume_equals_an_uninterrupted_run(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert start_run(full, "trainer.max_epochs=4").wait(timeout=300) == 0

    code, output = interrupt_after_line(start_run(killed, "trainer.max_epochs=4"), "epoch 2,", signal.SIGTERM)
    assert code == 143, output
    assert f"interrupted during epoch 3; {killed}/checkpoints/last.ckpt holds epoch 2" in output
    assert f"resume with: python -m lenet_exp.resume {killed}" in output
    assert load_checkpoint(killed / "checkpoints" / "last.ckpt")["epoch"] == 1  # index of epoch 2
    assert not (killed / "metrics.json").exists()

    resumed = run_cli(str(killed), module="lenet_exp.resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "epoch 3, loss" in resumed.stdout and "epoch 1, loss" not in resumed.stdout

    same = lambda m: {k: v for k, v in m.items() if k not in TIMING}  # noqa: E731
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (full, killed)]
    assert same(metrics[0]) == same(metrics[1]) and metrics[1]["epochs"] == 4
    a, b = weights(full), weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical on CPU
    # the same TensorBoard run: one point per epoch, continuing the steps, equal to the uninterrupted run
    assert scalars(killed, "train/loss") == scalars(full, "train/loss")


@apply(real_data)
def test_ctrl_c_keeps_the_last_completed_epoch_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    code, output = interrupt_after_line(start_run(run, "trainer.max_epochs=3"), "epoch 1,", signal.SIGINT)
    assert code == 130, output
    assert "interrupted during epoch 2" in output and f"python -m lenet_exp.resume {run}" in output
    assert "Traceback" not in output
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0
    assert not list((run / "checkpoints").glob("*.tmp")) and not (run / "metrics.json").exists()
