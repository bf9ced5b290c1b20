"""Interrupted runs (SIGTERM, Ctrl-C) say how to go on, and resume to the uninterrupted result."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from conftest import (
    ROOT,
    TIMING,
    TINY,
    epoch_lines,
    event_dir,
    load_checkpoint,
    run_cli,
    run_main,
    scalars,
    write_fake_fashion_mnist,
)

import lenet_exp
from lenet_exp.errors import UserError
from lenet_exp.models import LeNet
from lenet_exp.runtime.checkpoints import CONFIG_KEY
from lenet_exp.runtime.lock import release
from lenet_exp.runtime.run_folder import EVENT_FILES


@pytest.fixture(scope="module")
def many_batches(tmp_path_factory) -> Path:
    """Synthetic data with 32 training batches of 32 per epoch: an epoch long enough to be interrupted in, and
    no more images than that (the real data adds nothing here; test_realdata.py trains on it)."""
    folder = tmp_path_factory.mktemp("data")
    write_fake_fashion_mnist(folder, n_train=1024, n_test=32)
    return folder


def settings(run: Path, data_dir: Path, *overrides: str) -> list[str]:
    """One optimizer step per call: these tests interrupt between batches (the default's calls take 16 steps,
    and SIGTERM is honoured after the current call: docs/faults.md)."""
    data = ["data.verify_md5=false", "data.batch_size=32", f"data.data_dir={data_dir}", "steps_per_call=1"]
    return ["trainer=cpu", *data, f"hydra.run.dir={run}", *overrides]


def start_run(run: Path, data_dir: Path, *overrides: str) -> subprocess.Popen:
    """A run of ``python -m lenet_exp`` that a test interrupts, as a terminal or a scheduler would."""
    return subprocess.Popen(
        [sys.executable, "-m", "lenet_exp", *settings(run, data_dir, *overrides)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # Ctrl-C as on a terminal, also when the tests themselves run in the background of a
        # non-interactive shell, which starts them with SIGINT ignored (and children inherit that).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def interrupt_after_line(proc: subprocess.Popen, prefix: str, sig: signal.Signals) -> tuple[int, str]:
    """Send ``sig`` as soon as the line starting with ``prefix`` is read; return exit code and output.
    The line is written as the next epoch starts, after that epoch's checkpoint: the signal comes inside it."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            proc.send_signal(sig)
            break
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + rest


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.mark.slow
def test_sigterm_in_epoch_3_then_resume_equals_an_uninterrupted_run(tmp_path, many_batches):
    full, killed = tmp_path / "full", tmp_path / "killed"
    # the uninterrupted run in this process (the same arithmetic as a process of its own: test_faults.py)
    assert run_main("lenet_exp", *settings(full, many_batches, "trainer.max_epochs=4")).returncode == 0

    started = start_run(killed, many_batches, "trainer.max_epochs=4")
    code, output = interrupt_after_line(started, "epoch 2,", signal.SIGTERM)
    assert code == 143, output
    assert f"interrupted during epoch 3; {killed}/checkpoints/last.ckpt holds epoch 2" in output
    assert f"resume with: python -m lenet_exp.resume {killed}" in output
    assert load_checkpoint(killed / "checkpoints" / "last.ckpt")["epoch"] == 1  # index of epoch 2
    assert not (killed / "metrics.json").exists()

    resumed = run_main("lenet_exp.resume", str(killed))  # in this process: test_faults.py resumes from a terminal
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "epoch 3, loss" in resumed.stdout and "epoch 1, loss" not in resumed.stdout

    same = lambda m: {k: v for k, v in m.items() if k not in TIMING}  # noqa: E731
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (full, killed)]
    assert same(metrics[0]) == same(metrics[1]) and metrics[1]["epochs"] == 4
    assert len(metrics[1]["epoch_seconds"]) == 4  # the two epochs before the resume too
    a, b = weights(full), weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical on CPU
    # the same TensorBoard run: one point per epoch, continuing the steps, equal to the uninterrupted run
    assert scalars(killed, "train/loss") == scalars(full, "train/loss")
    # the network's graph and chart layout, written once per run: a second graph would make TensorBoard warn
    assert [written(killed, kind) for kind in ("graph_def", "custom_scalars")] == [1, 1]


def written(run: Path, kind: str) -> int:
    """How many events of ``kind`` (a graph, a chart layout) the run's TensorBoard event files hold, all files."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = sorted(event_dir(run).glob(EVENT_FILES))
    assert len(files) == 2, files  # the interrupted process's and the resume's
    count = 0
    for file in files:
        for event in EventFileLoader(str(file)).Load():
            if kind == "graph_def":
                count += event.HasField("graph_def")
            else:
                count += any(v.tag == "custom_scalars__config__" for v in event.summary.value)
    return count


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_completed_epoch_and_says_how_to_resume(tmp_path, many_batches):
    run = tmp_path / "run"
    code, output = interrupt_after_line(start_run(run, many_batches, "trainer.max_epochs=3"), "epoch 1,", signal.SIGINT)
    assert code == 130, output
    assert "interrupted during epoch 2" in output and f"python -m lenet_exp.resume {run}" in output
    assert "Traceback" not in output
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0
    assert not list((run / "checkpoints").glob("*.tmp")) and not (run / "metrics.json").exists()


@pytest.mark.slow
def test_a_run_stopped_in_its_first_epoch_says_resume_starts_it_over_and_it_does(tmp_path, fake_data):
    """Nothing is checkpointed before the first epoch ends; the interrupt's sentence still names the resume,
    which trains the run from the start (in this process: the commands' mains, as test_faults.py runs the
    signals themselves)."""
    mine, run = "test_trust.StopOnceAtEpoch", tmp_path / "run"
    stop = [
        f"+callbacks.stop._target_={mine}",
        f"+callbacks.stop.marker={tmp_path / 'stopped'}",
        "+callbacks.stop.epoch=0",
    ]
    args = [*TINY, "trainer.max_epochs=1", f"data.data_dir={fake_data}", *stop, f"hydra.run.dir={run}"]
    stopped = run_main("lenet_exp", *args)
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == 130, output
    said = "interrupted during epoch 1; no epoch was completed, so resuming starts it over: python -m lenet_exp.resume"
    assert f"{said} {run}" in output
    assert not (run / "checkpoints" / "last.ckpt").exists()
    resumed = run_main("lenet_exp.resume", str(run), f"trust={mine}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # said as it is: the folder holds no checkpoint (here none was written; elsewhere one may have been removed)
    assert f"{run} holds no checkpoints/last.ckpt to continue from: running it again from the start" in resumed.stdout
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1


@pytest.mark.slow
def test_resume_replays_the_runs_own_config_and_notes_a_changed_revision(tmp_path, fake_data):
    """The run's settings come from its folder, not from today's configs or its overrides file. A class of the
    user's own that the run names (a callback of test_trust.py) is refused by resume until it is named with
    trust=; then the run resumes and finishes."""
    from lenet_exp.runtime.checkpoints import GIT_KEY

    mine = "test_trust.StopOnceAtEpoch"
    srun = tmp_path / "bin" / "srun"  # SLURM's client on the PATH: Lightning would hint at using it
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PATH": f"{srun.parent}{os.pathsep}{os.environ['PATH']}",
    }
    args = [*TINY, "trainer.max_epochs=3", "model.optimizer.lr=0.002", f"data.data_dir={fake_data}"]
    full, run = tmp_path / "full", tmp_path / "run"
    assert run_main("lenet_exp", *args, f"hydra.run.dir={full}").returncode == 0  # the reference, in this process
    stop = [f"+callbacks.stop._target_={mine}", f"+callbacks.stop.marker={tmp_path / 'stopped'}"]
    stopped = run_cli(*args, *stop, f"hydra.run.dir={run}", env=env)
    assert stopped.returncode == 130, stopped.stdout + stopped.stderr
    assert "interrupted during epoch 2" in stopped.stdout + stopped.stderr
    refused = run_main("lenet_exp.resume", str(run))  # in this process: a refusal; the command resumes below
    assert refused.returncode == 1 and f"trust={mine}" in refused.stderr, refused.stderr
    assert not (run / "metrics.json").exists()
    (run / ".hydra" / "overrides.yaml").unlink()  # what the old resume replayed against today's conf/
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint[GIT_KEY] = "0123abc"
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    resumed = run_cli(str(run), f"trust={mine}", module="lenet_exp.resume", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "epoch 2, loss" in resumed.stdout and (run / "metrics.json").is_file()
    assert f"note: {run} was started by the code at 0123abc" in resumed.stdout + resumed.stderr
    logged = (run / "lenet_exp.log").read_text()  # the run's log says where it resumed, and with which code
    assert f"note: {run} was started by the code at 0123abc" in logged and f"resuming {run} after epoch 1" in logged
    for hint in ("exists and is not empty", "dirpath has changed", "`srun` command"):  # Lightning's, not for users
        assert hint not in resumed.stdout + resumed.stderr, resumed.stderr
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (full, run)]
    assert metrics[1]["epochs"] == 3 and metrics[1]["test_acc"] == metrics[0]["test_acc"]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt", [mine])[CONFIG_KEY]["model"]["optimizer"]["lr"] == 0.002
    a, b = weights(full), load_checkpoint(run / "checkpoints" / "last.ckpt", [mine])["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def refused_run(tmp_path_factory) -> Path:
    """A folder whose .hydra/ files Hydra wrote for a run that a refused setting stopped before torch loaded."""
    folder = tmp_path_factory.mktemp("refused") / "run"
    with pytest.raises(UserError, match="data.batch_size=0 must be a positive"):  # as the command would
        lenet_exp.run(*TINY, "data.batch_size=0", f"hydra.run.dir={folder}")
    assert (folder / ".hydra" / "config.yaml").is_file()
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda c: c["model"].__setitem__("dropout", 0.5), "names model.dropout, which this version's"),
        (lambda c: c.pop("trainer"), "has no trainer, which this version of lenet_exp needs"),
        (lambda c: c.__setitem__("callbacks", 5), "holds callbacks=5, where lenet_exp writes a mapping of settings"),
    ],
)
def test_resume_of_a_folder_of_another_version_is_one_sentence_naming_the_key(tmp_path, refused_run, edit, says):
    folder = tmp_path / "run"
    shutil.copytree(refused_run, folder)
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    config["data"]["batch_size"] = 16
    edit(config)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    # in this process (the command's main): the tests above run the command itself
    out = run_main("lenet_exp.resume", str(folder))  # a traceback would raise here
    stderr = out.stderr
    assert out.returncode == 1, stderr
    assert f"{folder}/.hydra/config.yaml {says}" in stderr
    assert "another version of lenet_exp" in stderr or "was not written by lenet_exp" in stderr
    assert not (folder / "checkpoints").exists()


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("batch_size", "lots", "data.batch_size='lots' must be a positive whole number, such as 256"),
        ("val_size", -3, "data.val_size=-3 must be"),
    ],
)
def test_resume_of_a_folder_holding_a_bad_value_names_the_file_to_correct(tmp_path, refused_run, key, value, says):
    """resume takes no key=value for a run's settings: a bad one (edited by hand, or refused by this code) is
    corrected in the folder's config file, which the sentence names (it said what to type, as to a new run)."""
    folder = tmp_path / "run"
    shutil.copytree(refused_run, folder)
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    config["data"]["batch_size"] = 16
    config["data"][key] = value
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    out = run_main("lenet_exp.resume", str(folder))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    sentence = out.stderr.strip().splitlines()[-1]
    assert sentence.startswith(f"error: {folder}/.hydra/config.yaml holds a setting that cannot run here: {says}")
    assert sentence.endswith("; correct it in that file and resume again."), sentence
    assert not (folder / "checkpoints").exists()
    assert (folder / "lenet_exp.log").read_text().splitlines()[-1].endswith(sentence)


def test_a_run_folder_whose_name_holds_an_equals_sign_is_resumed(tmp_path, refused_run, monkeypatch):
    """A sweep's job folders may be named by their overrides (hydra.sweep.subdir=${hydra.job.override_dirname}):
    such a folder was taken for a key=value argument, and resume said to give one run folder."""
    folder = tmp_path / "data.batch_size=0"
    shutil.copytree(refused_run, folder)
    monkeypatch.chdir(tmp_path)
    for typed in (str(folder), "data.batch_size=0"):  # absolute, and relative to the current folder
        out = run_main("lenet_exp.resume", typed)
        said = f"error: {folder}/.hydra/config.yaml holds a setting that cannot run here: data.batch_size=0 must be"
        assert out.returncode == 1 and said in out.stderr, out.stderr  # the folder was read: its own refusal


@pytest.mark.slow
def test_a_run_stopped_between_its_last_checkpoint_and_metrics_json_resumes_to_its_own_metrics(tmp_path, fake_data):
    """A run killed after its last epoch's checkpoint, in its final test or before metrics.json: resume trains
    nothing and must still write what the uninterrupted run wrote, the last epoch's train and val metrics too
    (they come from last.ckpt, as no epoch is trained to log them again)."""
    run = tmp_path / "run"
    settings = [*TINY, f"data.data_dir={fake_data}", "data.val_size=16", "trainer.max_epochs=2"]
    settings.append("+callbacks.lr={_target_: pytorch_lightning.callbacks.LearningRateMonitor}")  # another's metric
    trained = run_main("lenet_exp", *settings, f"hydra.run.dir={run}")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    expected = json.loads((run / "metrics.json").read_text())
    assert expected["lr-Adam"] == pytest.approx(0.001)
    (run / "metrics.json").write_text("{garbage")  # damaged since: one sentence (it said finished, then a traceback)
    damaged = run_main("lenet_exp.resume", str(run))
    assert damaged.returncode == 1 and "Traceback" not in damaged.stderr and "finished" not in damaged.stderr
    assert f"error: {run / 'metrics.json'} cannot be read (JSONDecodeError: " in damaged.stderr, damaged.stderr
    assert "remove it and resume again" in damaged.stderr
    (run / "metrics.json").unlink()  # as if killed just before writing it
    resumed = run_main("lenet_exp.resume", str(run))
    assert resumed.returncode == 0 and "resuming" in resumed.stdout + resumed.stderr, resumed.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "test_acc"} <= metrics.keys()
    drop = (*TIMING, "environment")
    assert {k: v for k, v in metrics.items() if k not in drop} == {k: v for k, v in expected.items() if k not in drop}
    # the epochs' times too, from last.ckpt: this process trained none (seconds_per_epoch was 0 here)
    assert metrics["epoch_seconds"] == expected["epoch_seconds"]
    assert metrics["seconds_per_epoch"] == expected["seconds_per_epoch"] > 0

    # the best epoch's checkpoint, which the final test loads, damaged since: one sentence (it was a traceback)
    (run / "metrics.json").unlink()
    best = run / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[:1000])
    damaged = run_main("lenet_exp.resume", str(run))
    assert damaged.returncode == 1 and "Traceback" not in damaged.stderr, damaged.stderr[-3000:]
    assert f"error: {best} cannot be read (" in damaged.stderr and "missing, truncated or damaged" in damaged.stderr


class DropoutLeNet(LeNet):
    """LeNet with dropout on its input: a network of one's own that draws random numbers in every training step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.nn.functional.dropout(x, 0.5, self.training))


class InterruptOnce(pl.Callback):
    """Ctrl-C (KeyboardInterrupt) as epoch ``epoch`` (from 0) starts, once per ``marker`` file: an interruption a
    resumed run (which replays the same config) does not repeat."""

    def __init__(self, epoch: int, marker: str) -> None:
        self.epoch, self.marker = epoch, Path(marker)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and not self.marker.exists():
            self.marker.touch()
            raise KeyboardInterrupt


@pytest.mark.slow  # six short runs, about 6 s
def test_a_network_that_draws_random_numbers_resumes_to_the_uninterrupted_weights(tmp_path, fake_data):
    """torch's generators are not in Lightning's checkpoints: resumed, a network with dropout trained on other
    numbers than the uninterrupted run. Each step draws what it drew, under one step per call and many."""
    ours = ["test_resume.DropoutLeNet", "test_resume.InterruptOnce"]
    common = [*TINY, "trainer.max_epochs=3", f"data.data_dir={fake_data}", "logger=none", "callbacks.best=null"]
    common.append(f"model.net._target_={ours[0]}")
    weights = {}
    for per_call in ("1", "auto"):
        full, cut = tmp_path / f"full-{per_call}", tmp_path / f"cut-{per_call}"
        settings = [*common, f"steps_per_call={per_call}"]
        assert run_main("lenet_exp", *settings, f"hydra.run.dir={full}").returncode == 0
        stop = [f"+callbacks.stop._target_={ours[1]}", "+callbacks.stop.epoch=1"]
        stop.append(f"+callbacks.stop.marker={tmp_path / f'stopped-{per_call}'}")
        stopped = run_main("lenet_exp", *settings, *stop, f"hydra.run.dir={cut}")
        assert stopped.returncode == 130 and "resume with" in stopped.stderr, stopped.stderr[-2000:]
        resumed = run_main("lenet_exp.resume", str(cut), f"trust={','.join(ours)}")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        a, b = (json.loads((run / "metrics.json").read_text()) for run in (full, cut))
        assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
        first, second = (load_checkpoint(run / "checkpoints" / "last.ckpt", ours)["state_dict"] for run in (full, cut))
        assert all(torch.equal(first[k], second[k]) for k in first), per_call
        weights[per_call] = first
    one, many = weights["1"], weights["auto"]  # 16 steps per call on a CPU: the same draws in each step
    assert all(torch.allclose(one[k], many[k], atol=1e-6, rtol=0) for k in one)


@pytest.mark.parametrize("stop", ["early_stopping", "max_time"])
@pytest.mark.slow
def test_a_run_a_callback_stopped_trains_nothing_when_resumed_after_its_last_checkpoint(tmp_path, fake_data, stop):
    """Early stopping (here: at the first epoch, its threshold reached) ended the run before its last epoch; killed
    after that epoch's checkpoint, in its final test: resume trained on (Lightning restores the callbacks' states,
    not the trainer's stop), to other weights, epochs and test accuracy. trainer.max_time, which stops mid-epoch:
    the resumed run trained nothing, but said it had trained no epoch (Lightning restores it at epoch 0)."""
    run = tmp_path / "run"
    settings = [*TINY, f"data.data_dir={fake_data}", "data.val_size=16", "trainer.max_epochs=4"]
    if stop == "early_stopping":
        settings += ["callbacks=with_early_stopping", "+callbacks.early_stopping.stopping_threshold=0.0"]
    else:
        settings += ["trainer.max_time={milliseconds: 1}"]  # after the first batch; that epoch ends, and is saved
    trained = run_main("lenet_exp", *settings, f"hydra.run.dir={run}")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    expected = json.loads((run / "metrics.json").read_text())
    assert expected["epochs"] == 1, expected  # (the case this checks: stopped before max_epochs)
    last = run / "checkpoints" / "last.ckpt"
    weights = load_checkpoint(last)["state_dict"]
    (run / "metrics.json").unlink()  # as if killed in the final test
    resumed = run_main("lenet_exp.resume", str(run))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert epoch_lines(resumed.stdout + resumed.stderr) == []  # no epoch trained
    metrics = json.loads((run / "metrics.json").read_text())
    drop = (*TIMING, "environment")
    assert {k: v for k, v in metrics.items() if k not in drop} == {k: v for k, v in expected.items() if k not in drop}
    after = load_checkpoint(last)["state_dict"]
    assert all(torch.equal(weights[k], after[k]) for k in weights)


@pytest.mark.slow
def test_a_run_whose_own_data_moved_is_refused_not_trained_on_debians_and_resumes_when_given_the_new_folder(
    tmp_path, fake_data
):
    """Files of one's own (data.verify_md5=false) moved since the run: resume took Debian's Fashion-MNIST in their
    place without a word (where it is installed, as on CI), and went on training on other data."""
    run, moved = tmp_path / "run", tmp_path / "moved"
    settings = [*TINY, f"data.data_dir={fake_data}", "trainer.max_epochs=1", "logger=none"]
    assert run_main("lenet_exp", *settings, f"hydra.run.dir={run}").returncode == 0
    expected = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()  # as if killed in the final test
    fake_data.rename(moved)
    refused = run_main("lenet_exp.resume", str(run))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert f"error: the four IDX files were not found in {fake_data}, " in refused.stderr, refused.stderr
    assert "give data.data_dir=<the folder that holds them>" in refused.stderr and not (run / "metrics.json").exists()
    resumed = run_main("lenet_exp.resume", str(run), f"data.data_dir={moved}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_acc"] == expected["test_acc"] and metrics["train_loss"] == expected["train_loss"]


@pytest.mark.slow
def test_a_moved_run_named_by_its_folder_goes_on_in_the_tensorboard_run_it_began(tmp_path, fake_data):
    """A run whose settings are all in a config file (no override names it) has a TensorBoard run named by its
    folder's date and time; moved (or copied) and resumed, it wrote a second TensorBoard run named by the new path."""
    conf, run, moved = tmp_path / "conf", tmp_path / "outputs" / "2026-01-01" / "10-00-00", tmp_path / "elsewhere"
    conf.mkdir()
    settings = {"trainer": {"accelerator": "cpu", "max_epochs": 1}}
    settings["data"] = {"data_dir": str(fake_data), "verify_md5": False, "batch_size": 16}
    (conf / "mine.yaml").write_text(yaml.safe_dump({"defaults": ["config", "_self_"], **settings}))
    trained = run_main("lenet_exp", f"--config-dir={conf}", "--config-name=mine", f"hydra.run.dir={run}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert [d.name for d in (run / "tensorboard").iterdir()] == ["2026-01-01_10-00-00"]
    (run / "metrics.json").unlink()  # as if killed in the final test
    shutil.move(run, moved)
    resumed = run_main("lenet_exp.resume", str(moved))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [d.name for d in (moved / "tensorboard").iterdir()] == ["2026-01-01_10-00-00"]
    assert not run.exists()


@pytest.mark.slow
def test_a_run_whose_checkpoints_are_kept_elsewhere_is_not_started_again_over_them(tmp_path, fake_data):
    """callbacks.checkpoint.dirpath outside the run folder: resume found no checkpoints/last.ckpt, started the run
    again and replaced the checkpoint it had kept there."""
    run, kept = tmp_path / "run", tmp_path / "kept"
    elsewhere = f"callbacks.checkpoint.dirpath={kept}"
    settings = [*TINY, f"data.data_dir={fake_data}", "trainer.max_epochs=1", "logger=none", elsewhere]
    assert run_main("lenet_exp", *settings, f"hydra.run.dir={run}").returncode == 0
    (run / "metrics.json").unlink()  # as if killed in the final test
    before = (kept / "last.ckpt").read_bytes()
    out = run_main("lenet_exp.resume", str(run), elsewhere)  # the key given again: writes outside are allowed
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    said = f"error: {run} kept its checkpoints in {kept} (callbacks.checkpoint.dirpath), outside its folder"
    assert said in out.stderr and f"python -m lenet_exp ckpt_path={kept / 'last.ckpt'} and" in out.stderr
    assert (kept / "last.ckpt").read_bytes() == before and not (run / "metrics.json").exists()


def unless_raw(command):
    """``command()``, failing the test (not stopping pytest) where Ctrl-C comes out of it as KeyboardInterrupt."""
    try:
        return command()
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of the command as Python's KeyboardInterrupt: a traceback, exit status 1")


def test_ctrl_c_before_training_or_in_evals_start_is_one_line_and_130(tmp_path, fake_data, monkeypatch):
    """Ctrl-C outside Lightning's loops (the imports, building the run) was Python's KeyboardInterrupt traceback."""
    run = tmp_path / "run"
    stop = "+callbacks.stop._target_=test_trust.CtrlCWhileBuilt"
    stopped = unless_raw(
        lambda: run_main("lenet_exp", *TINY, f"data.data_dir={fake_data}", stop, f"hydra.run.dir={run}")
    )
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    said = f"interrupted (Ctrl-C); no epoch was completed, so resuming starts it over: python -m lenet_exp.resume {run}"
    assert said in stopped.stderr
    from lenet_exp.runtime import stored_config

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stored_config, "open_stored", interrupted)  # while eval reads the checkpoint
    (tmp_path / "any.ckpt").write_bytes(b"")  # never read: the Ctrl-C comes first
    evaluated = unless_raw(lambda: run_main("lenet_exp.eval", f"ckpt_path={tmp_path / 'any.ckpt'}"))
    assert evaluated.returncode == 130 and "Traceback" not in evaluated.stderr, evaluated.stderr[-3000:]
    assert "interrupted (Ctrl-C) before the command ended; what it had written is kept" in evaluated.stderr


@pytest.mark.slow  # a command of its own (a signal in this process would end pytest's)
def test_sigterm_before_training_is_the_interrupts_sentence_and_143(tmp_path, fake_data, capsys):
    """SIGTERM outside Lightning's loops (the imports, building the run: a scheduler stopping a job that has just
    started) ended the command without a word; Lightning's loops answer it themselves (the tests above)."""
    run, env = tmp_path / "run", {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    stop = "+callbacks.stop._target_=test_trust.SigtermWhileBuilt"
    out = run_cli(*TINY, f"data.data_dir={fake_data}", stop, f"hydra.run.dir={run}", env=env)
    assert out.returncode == 143 and "Traceback" not in out.stderr, (out.returncode, out.stderr[-3000:])
    said = (
        f"interrupted (SIGTERM); no epoch was completed, so resuming starts it over: python -m lenet_exp.resume {run}"
    )
    assert said in out.stderr
    assert (run / "lenet_exp.log").read_text().splitlines()[-1].endswith(said)
    # the other commands (eval, predict, resume, report) end through exit_on_user_error, which answers it alike
    from lenet_exp.errors import Terminated, exit_on_user_error

    def stopped():
        raise Terminated

    with pytest.raises(SystemExit) as end:
        exit_on_user_error(stopped)
    assert end.value.code == 143
    assert "interrupted (SIGTERM) before the command ended; what it had written is kept" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_in_the_final_test_says_so_and_the_resume_finishes_the_run(tmp_path, fake_data):
    """Every epoch is checkpointed when the final test starts: Ctrl-C there is the interrupt's sentence and 130
    (it was exit status 1 after Lightning's own line), and resume runs the test and writes metrics.json."""
    mine, run = "test_trust.StopOnceInTheTest", tmp_path / "run"
    stop = [f"+callbacks.stop._target_={mine}", f"+callbacks.stop.marker={tmp_path / 'stopped'}"]
    args = [*TINY, "trainer.max_epochs=2", f"data.data_dir={fake_data}", *stop, f"hydra.run.dir={run}"]
    stopped = run_main("lenet_exp", *args)
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == 130, output[-3000:]
    said = f"interrupted during the final test; {run}/checkpoints/last.ckpt holds epoch 2; resume with: python -m"
    assert said in output and not (run / "metrics.json").exists()
    release(run)  # as the stopped command's end would
    resumed = run_main("lenet_exp.resume", str(run), f"trust={mine}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.slow
def test_a_moved_run_folder_resumes_with_its_own_best_checkpoint(tmp_path, fake_data):
    """last.ckpt names the best checkpoint by the path it was written at. A run folder moved (or copied) before
    it is resumed keeps choosing and testing its own best.ckpt: neither a second best-v1.ckpt beside a stale
    best.ckpt, nor a read of the folder it came from (gone here; elsewhere it may hold other weights)."""
    mine, first = "test_trust.StopOnceAtEpoch", tmp_path / "first"
    stop = [f"+callbacks.stop._target_={mine}", f"+callbacks.stop.marker={tmp_path / 'stopped'}"]
    settings = [*TINY, f"data.data_dir={fake_data}", "data.val_size=16", "trainer.max_epochs=3", *stop]
    assert run_main("lenet_exp", *settings, f"hydra.run.dir={first}").returncode == 130  # stopped in epoch 2
    release(first)  # as the stopped command's end would (it ran in this process)
    second = first.rename(tmp_path / "second")
    resumed = run_main("lenet_exp.resume", str(second), f"trust={mine}")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    metrics = json.loads((second / "metrics.json").read_text())
    assert sorted(p.name for p in (second / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert load_checkpoint(second / "checkpoints" / "best.ckpt", [mine])["epoch"] + 1 == metrics["best_epoch"]

    (second / "metrics.json").unlink()  # as if stopped in its final test, then moved again
    third = second.rename(tmp_path / "third")
    again = run_main("lenet_exp.resume", str(third), f"trust={mine}")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    drop = (*TIMING, "environment")
    tested = json.loads((third / "metrics.json").read_text())
    assert {k: v for k, v in tested.items() if k not in drop} == {k: v for k, v in metrics.items() if k not in drop}


@pytest.mark.slow
def test_a_run_without_its_hydra_folder_says_so_when_it_starts_and_continues_through_ckpt_path(tmp_path, fake_data):
    """hydra.output_subdir=null (Hydra's docs' way to keep no .hydra folder): the run says at its start that
    resume will not be able to continue it, and resume names the way that can, which works as printed, also for
    a folder whose name Hydra's override grammar takes only in quotes (a letter such as é)."""
    run, settings = tmp_path / "été run", [*TINY, f"data.data_dir={fake_data}", "trainer.max_epochs=1"]
    trained = run_main("lenet_exp", *settings, "hydra.output_subdir=null", f"hydra.run.dir='{run}'")
    assert trained.returncode == 0 and not (run / ".hydra").exists(), trained.stderr[-3000:]
    assert "hydra.output_subdir=null: this run keeps no .hydra folder" in trained.stdout + trained.stderr
    (run / "metrics.json").unlink()  # as if it had been stopped
    resumed = run_main("lenet_exp.resume", str(run))
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr
    last = run / "checkpoints" / "last.ckpt"
    assert resumed.stderr.strip() == (
        f"error: {run} keeps no .hydra folder (it ran with hydra.output_subdir=null), so it cannot be resumed from "
        f"its folder; continue it with python -m lenet_exp \"ckpt_path='{last}'\" and the settings it ran with."
    )
    printed = shlex.split(resumed.stderr.split("continue it with python -m lenet_exp ")[1].split(" and the")[0])
    more = tmp_path / "more"
    continued = run_main("lenet_exp", *settings, "trainer.max_epochs=2", *printed, f"hydra.run.dir={more}")
    assert continued.returncode == 0 and json.loads((more / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.slow  # three short runs, about 4 s
def test_a_run_killed_between_logging_an_epoch_and_its_checkpoint_resumes_without_points_twice(tmp_path, fake_data):
    """Lightning saves last.ckpt after an epoch's curves are written: a SIGKILL between the two left that epoch's
    points (and, after the last epoch, the final test's) in the event file, and the resume wrote them again."""
    run, first = tmp_path / "run", tmp_path / "first"
    settings = [*TINY, f"data.data_dir={fake_data}", "seed=3"]
    lenet_exp.run(*settings, "trainer.max_epochs=2", f"hydra.run.dir={run}")
    lenet_exp.run(*settings, "trainer.max_epochs=1", f"hydra.run.dir={first}")  # the same first epoch
    expected = {tag: scalars(run, tag) for tag in ("train/loss", "test/acc", "grad_mean_abs/conv1")}
    # as if killed after the final test, before metrics.json, with last.ckpt still at epoch 0
    (run / "metrics.json").unlink()
    shutil.copy(first / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    resumed = run_main("lenet_exp.resume", str(run))  # in this process
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(list(event_dir(run).glob(EVENT_FILES))) == 2
    for tag, points in expected.items():
        assert [step for step, _ in scalars(run, tag)] == [step for step, _ in points], tag  # once each
        assert [value for _, value in scalars(run, tag)] == pytest.approx([value for _, value in points]), tag
