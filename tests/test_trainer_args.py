"""Lightning's Trainer arguments as users type them: without a "+", through the command line, each doing what
Lightning documents beside lenet_exp's epoch lines, checkpoints, best epoch, TensorBoard's epoch axis and
resume. The command runs from a folder outside the checkout where a test needs a process of its own (DDP, a
kill, a callback of the user's on PYTHONPATH, Lightning's warnings on the console, which pytest would catch);
the others run its main in this process, with the same argv.

The fake data: 64 training images in batches of 16 (4 batches an epoch; with data.val_size=16, 3 batches and
16 validation images), 32 test images."""

from __future__ import annotations

import inspect
import json
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import (
    CONF_DIR,
    ROOT,
    TIMING,
    TINY,
    compose_config,
    epoch_lines,
    run_cli,
    run_main,
    scalars,
    write_fake_fashion_mnist,
)
from omegaconf import OmegaConf

from lenet_exp.runtime.atomic import AtomicCheckpointIO
from lenet_exp.runtime.checks import LAUNCHED
from lenet_exp.runtime.run_folder import best_checkpoint, config_file, last_checkpoint, metrics_file
from lenet_exp.train import build, train

# Most tests here run the command line (a second or so in this process, more as processes of their own): make
# test runs them, make test-fast leaves them out.
pytestmark = pytest.mark.slow

# Where conf/trainer/default.yaml differs from Lightning's default on purpose (each line says why).
CHOSEN = {
    "devices",
    "precision",
    "max_epochs",
    "num_sanity_val_steps",
    "enable_model_summary",
    "deterministic",
    "benchmark",
    "inference_mode",
    "plugins",
    "default_root_dir",
}
# The arguments users of LightningCLI type as they are (issue: each needed a "+").
TYPED = [
    "trainer.accumulate_grad_batches=2",
    "trainer.gradient_clip_val=0.5",
    "trainer.val_check_interval=0.5",
    "trainer.check_val_every_n_epoch=2",
    "trainer.max_steps=30",
    "trainer.max_time=00:00:10:00",
    "trainer.strategy=ddp",
    "trainer.strategy=ddp_spawn",
    "trainer.log_every_n_steps=1",
    "trainer.overfit_batches=2",
    "trainer.enable_checkpointing=false",
    "trainer.limit_val_batches=0",
]


def lenet_exp(tmp_path: Path, fake_data: Path, *args: str, env: dict[str, str] | None = None, process=False):
    """``python -m lenet_exp <TINY> <args>`` into ``tmp_path/run``: its main in this process, or (``process``)
    a process of its own started from ``tmp_path`` (outside the checkout)."""
    run = tmp_path / "run"
    argv = [*TINY, f"data.data_dir={fake_data}", f"hydra.run.dir={run}", *args]
    out = run_cli(*argv, cwd=tmp_path, env=env) if process else run_main("lenet_exp", *argv)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    return out.stdout + out.stderr, run, json.loads(metrics_file(run).read_text())


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_the_trainer_yaml_holds_every_argument_of_lightnings_trainer_with_its_defaults():
    """A Lightning upgrade that adds, removes or renames an argument fails here: add it to the YAML."""
    yaml = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "trainer" / "default.yaml"))
    signature = inspect.signature(pl.Trainer.__init__).parameters
    assert set(yaml) - {"_target_"} == set(signature) - {"self"}
    text = (CONF_DIR / "trainer" / "default.yaml").read_text()
    for name, value in yaml.items():
        if name == "_target_":
            continue
        if name in CHOSEN:  # a choice of lenet_exp's, and its line says why
            assert value != signature[name].default, name
            assert "#" in next(line for line in text.splitlines() if line.startswith(f"{name}:")), name
        else:
            assert value == signature[name].default, f"{name}: {value!r}, Lightning's is {signature[name].default!r}"


@pytest.mark.parametrize("override", TYPED)
def test_each_argument_is_set_without_a_plus(tmp_path, override):
    key, value = override.split("=", 1)
    composed = OmegaConf.select(compose_config(tmp_path, [override]), key)
    assert str(composed).lower() == value.lower()


def test_lightnings_switch_for_the_progress_bar_turns_lenet_exps_off_and_keeps_the_epoch_lines(tmp_path, fake_data):
    """trainer.enable_progress_bar=false, as Lightning's docs type it: Lightning refused it beside the progress bar
    callback of conf/callbacks (a sentence that asked to change the override the user had just typed)."""
    output, run, metrics = lenet_exp(tmp_path, fake_data, "trainer.enable_progress_bar=false", "trainer.max_epochs=1")
    assert "epoch 1, loss" in output and metrics["epochs"] == 1


def test_a_step_limited_run_is_not_taken_up_from_a_checkpoint_where_lightning_would_repeat_batches(
    tmp_path, fake_data, monkeypatch
):
    """Lightning restores a run with trainer.max_steps as one stopped inside an epoch: resumed, such a run trained
    different epochs and stopped early; continued with ckpt_path=, it trained nothing and wrote NaN (exit 0 both).
    Both are one sentence now, and the way it names (an epoch count instead) works."""
    output, run, _ = lenet_exp(tmp_path, fake_data, "trainer.max_steps=1000", "trainer.max_epochs=2")
    metrics_file(run).unlink()  # stopped before its end
    last = run / "checkpoints" / "last.ckpt"
    said = f"error: trainer.max_steps=1000 cannot go on from a checkpoint ({last}): Lightning would take it up as"
    resumed = run_main("lenet_exp.resume", str(run))
    assert resumed.returncode == 1 and said in resumed.stderr, resumed.stderr[-3000:]
    more = [*TINY, f"data.data_dir={fake_data}", f"ckpt_path={last}", "trainer.max_epochs=3"]
    monkeypatch.chdir(tmp_path)  # the checkpoint named relative to it: the command said is one to copy anywhere
    relative = [*more[:-2], f"ckpt_path={last.relative_to(tmp_path)}", "trainer.max_epochs=3"]
    continued = run_main("lenet_exp", *relative, "trainer.max_steps=1000", f"hydra.run.dir={tmp_path / 'more'}")
    assert continued.returncode == 1 and said in continued.stderr, continued.stderr[-3000:]
    assert f"python -m lenet_exp ckpt_path={last} trainer.max_steps=-1" in continued.stderr
    named = run_main("lenet_exp", *more, "trainer.max_steps=-1", f"hydra.run.dir={tmp_path / 'named'}")
    assert named.returncode == 0 and "epoch 3, loss" in named.stdout + named.stderr


def test_unbounded_max_epochs_alone_is_one_sentence(tmp_path):
    out = run_main("lenet_exp", *TINY, "trainer.max_epochs=-1", f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    assert "error: trainer.max_epochs=-1 trains until something ends the run, and nothing here does" in out.stderr


@pytest.mark.parametrize(
    ("override", "sentence"),
    [
        # Lightning's docs' "every device": refused on the CPU, before the Trainer is built
        ("trainer.devices=-1", "error: trainer.devices=-1 asks Lightning for every GPU (-1) or none (0)"),
        # combinations only Lightning's Trainer knows it refuses: its reason, in one line, not Hydra's wrapper
        ("trainer.strategy=fsdp", "error: Lightning's Trainer refuses these trainer.* settings: The strategy `fsdp`"),
        ("trainer.precision=7", "error: Lightning's Trainer refuses these trainer.* settings: Precision 7 is invalid."),
        # a precision Lightning documents whose package is not installed here
        (
            "trainer.precision=transformer-engine",
            "error: Lightning's Trainer needs a package that is not installed here for these trainer.* settings: "
            "Requirement 'transformer_engine",
        ),
        # Lightning's docs' "every 1000 batches" where an epoch has 4: refused once fit knows the batches
        (
            "trainer.val_check_interval=1000",
            "error: Lightning's Trainer refuses these trainer.* settings: `val_check_i",
        ),
        # a fraction of an epoch that is less than one batch (the docs' 0.1, of a small folder of one's own)
        (
            "trainer.limit_train_batches=0.01",
            "error: Lightning's Trainer refuses these trainer.* settings: You requested to check 0.01 of the",
        ),
        # the Trainer's loggers and callbacks come from lenet_exp's groups; barebones would turn off its logging
        ("trainer.logger=mlflow", "error: trainer.logger=mlflow is not built here: lenet_exp builds the Trainer's"),
        (
            "trainer.callbacks=[{_target_:pytorch_lightning.callbacks.RichProgressBar}]",
            "error: trainer.callbacks=[{'_target_': 'pytorch_lightning.callbacks.RichProgressBar'}] is not built here",
        ),
        ("trainer.barebones=true", "error: trainer.barebones=true turns off Lightning's logging"),
        # Lightning would wait forever for a second node that nothing starts
        ("trainer.num_nodes=2", "error: trainer.num_nodes=2 asks for 2 machines, and no launcher started the others"),
        # Lightning takes it, then divides by it in the first batch
        ("trainer.accumulate_grad_batches=0", "error: trainer.accumulate_grad_batches=0 must be a positive whole"),
        # Lightning's folder for its files: here they go into the run folder, which Hydra chooses
        ("trainer.default_root_dir=elsewhere", "error: trainer.default_root_dir=elsewhere is not used: every file"),
    ],
)
def test_settings_lightning_refuses_or_cannot_run_are_one_sentence_and_nothing_is_trained(
    tmp_path, fake_data, override, sentence, monkeypatch
):
    for name in LAUNCHED:  # as from a shell on one machine
        monkeypatch.delenv(name, raising=False)
    run = tmp_path / "run"
    out = run_main("lenet_exp", *TINY, f"data.data_dir={fake_data}", f"hydra.run.dir={run}", override)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(sentence) and line.endswith(".") and "Error in call to target" not in out.stderr, line
    assert not (run / "checkpoints").exists() and not metrics_file(run).exists()


@pytest.mark.parametrize("deterministic", ["true", "warn"])
def test_deterministic_turns_off_cudnns_autotuner_which_would_ignore_it(tmp_path, deterministic):
    """PyTorch ignores torch.backends.cudnn.deterministic while cudnn.benchmark is on (Lightning warns so when
    both are given): trainer.deterministic alone gets Lightning's deterministic run, the autotuner off."""
    settings = compose_config(tmp_path, [f"trainer.deterministic={deterministic}"]).trainer
    assert settings.benchmark is False and compose_config(tmp_path).trainer.benchmark is True  # the default: on
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            pl.Trainer(deterministic=settings.deterministic, benchmark=settings.benchmark, logger=False)
        assert not [w for w in said if "ignores torch.backends.cudnn.deterministic" in str(w.message)]
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    finally:  # Lightning sets torch's process-wide flags; the next tests in this worker expect torch's defaults
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = False


def test_logger_false_is_lightnings_way_to_say_logger_none(tmp_path, fake_data):
    output, run, metrics = lenet_exp(tmp_path, fake_data, "trainer.logger=false", "trainer.max_epochs=1")
    assert metrics["epochs"] == 1 and len(epoch_lines(output)) == 1 and last_checkpoint(run).is_file()
    assert not (run / "tensorboard").exists() and not (run / "csv").exists()


def test_max_epochs_minus_one_runs_until_early_stopping(tmp_path, fake_data):
    output, run, metrics = lenet_exp(
        tmp_path,
        fake_data,
        "trainer.max_epochs=-1",
        "callbacks=with_early_stopping",
        "callbacks.early_stopping.patience=1",
        "data.val_size=16",
    )
    # patience 1: the first epoch that does not beat the best one (strictly, as best.ckpt counts) is the last
    assert metrics["epochs"] == metrics["best_epoch"] + 1 == len(epoch_lines(output))
    assert checkpoint(best_checkpoint(run))["epoch"] + 1 == metrics["best_epoch"] and metrics["tested"] == "best"


@pytest.mark.parametrize(
    "max_time",
    [
        "00:00:00:03",
        pytest.param("{seconds:3}", marks=pytest.mark.slow, id="a timedelta's keys"),  # Lightning's dict form
    ],
)
def test_max_epochs_minus_one_runs_until_max_time(tmp_path, fake_data, max_time):
    output, run, metrics = lenet_exp(tmp_path, fake_data, "trainer.max_epochs=-1", f"trainer.max_time={max_time}")
    assert "Time limit reached" in output
    assert metrics["epochs"] == len(epoch_lines(output)) == checkpoint(last_checkpoint(run))["epoch"] + 1
    assert sum(metrics["epoch_seconds"]) < 3 + 2 * max(metrics["epoch_seconds"])  # stopped within an epoch or so
    assert [step for step, _ in scalars(run, "train/loss")] == list(range(metrics["epochs"]))  # the epoch axis


def test_max_steps_counts_accumulated_and_clipped_steps(tmp_path, fake_data):
    """3 optimizer steps of 2 batches each: the second of the 2 epochs begun stops after its first step."""
    spy = tmp_path / "grads.json"
    output, run, metrics = lenet_exp(
        tmp_path,
        fake_data,
        "trainer.max_steps=3",
        "trainer.accumulate_grad_batches=2",
        "trainer.gradient_clip_val=0.1",
        f"+callbacks.grad_spy={{_target_:grad_spy.GradSpy,path:{spy}}}",
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},  # the user's callback, found as theirs is
        process=True,
    )
    assert checkpoint(last_checkpoint(run))["global_step"] == 3 and metrics["epochs"] == 2
    first, second = epoch_lines(output)
    assert "test acc" in first and "test acc" not in second  # max_steps ended epoch 2 before its evaluation
    grads = json.loads(spy.read_text())
    assert len(grads["before"]) == len(grads["after"]) == 3
    assert max(grads["before"]) > 0.1 and max(grads["after"]) <= 0.1 * (1 + 1e-5)  # the clipping had work to do


def test_val_check_interval_validates_within_epochs_and_best_comes_from_the_epochs_last(tmp_path, fake_data):
    """32 training images, 2 batches: trainer.val_check_interval=0.5 validates after each."""
    output, run, metrics = lenet_exp(
        tmp_path, fake_data, "trainer.val_check_interval=0.5", "data.val_size=32", "trainer.max_epochs=2"
    )
    points = scalars(run, "val/acc")
    assert [step for step, _ in points] == [0, 0, 1, 1]  # logged at the epoch they ran in
    last_of_epoch = [points[1][1], points[3][1]]
    assert metrics["best_epoch"] == 1 + last_of_epoch.index(max(last_of_epoch)) and metrics["tested"] == "best"
    assert all("val acc" in line for line in epoch_lines(output))


def test_check_val_every_n_epoch_chooses_the_best_among_the_validated_epochs(tmp_path, fake_data):
    # a process of its own: Lightning's warnings are printed there (under pytest, pytest would catch them)
    output, run, metrics = lenet_exp(
        tmp_path,
        fake_data,
        "trainer.check_val_every_n_epoch=2",
        "data.val_size=16",
        "trainer.max_epochs=3",
        process=True,
    )
    assert [step for step, _ in scalars(run, "val/acc")] == [1]
    assert ["val acc" in line for line in epoch_lines(output)] == [False, True, False]  # no stale numbers
    assert metrics["best_epoch"] == 2 and checkpoint(best_checkpoint(run))["epoch"] == 1 and metrics["epochs"] == 3
    assert "could not find the monitored key" not in output


def test_no_validated_epoch_tests_the_last_weights_and_says_so(tmp_path, fake_data, caplog):
    """Validation due only after the last epoch (in-process: the same path as limit_val_batches=0 below)."""
    overrides = [*TINY, f"data.data_dir={fake_data}", "data.val_size=16", "trainer.max_epochs=2"]
    caplog.set_level(logging.INFO, logger="lenet_exp")
    metrics = train(compose_config(tmp_path, [*overrides, "trainer.check_val_every_n_epoch=3", "logger=none"]))
    assert metrics["tested"] == "last" and metrics["best_epoch"] is None and "val_acc" not in metrics
    assert not best_checkpoint(tmp_path).exists()
    assert caplog.text.count("no epoch was validated") == 1


@pytest.mark.parametrize("plugins", ["null", "[{_target_: lightning_fabric.plugins.environments.SLURMEnvironment}]"])
def test_plugins_of_ones_own_keep_checkpoints_written_whole(tmp_path, plugins):
    """trainer.plugins replaced (a cluster environment of one's own) took lenet_exp's atomic checkpoint writer with
    it: a kill could then leave half a last.ckpt."""
    cfg = compose_config(tmp_path, [*TINY, f"trainer.plugins={plugins}"])
    trainer = build(cfg, tmp_path)[2]
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_run_that_trains_no_step_says_so_not_that_nothing_was_validated(tmp_path, fake_data, caplog):
    # with the CSV logger, which had written no folder yet when the settings came at the end (a traceback, and
    # no metrics.json)
    overrides = [*TINY, f"data.data_dir={fake_data}", "data.val_size=16", "trainer.max_epochs=1", "logger=csv"]
    caplog.set_level(logging.INFO, logger="lenet_exp")
    metrics = train(compose_config(tmp_path, [*overrides, "trainer.limit_train_batches=0"]))
    assert metrics["tested"] == "last" and (tmp_path / "metrics.json").is_file()
    assert (tmp_path / "csv" / "hparams.yaml").is_file()
    assert "no step was trained (trainer.max_steps=0 or trainer.limit_train_batches=0)" in caplog.text
    assert "no epoch was validated" not in caplog.text


def test_fast_dev_run_with_a_validation_split_says_why_the_test_takes_the_last_weights(tmp_path, fake_data, caplog):
    caplog.set_level(logging.INFO, logger="lenet_exp")
    overrides = [*TINY, f"data.data_dir={fake_data}", "data.val_size=16", "debug=fast_dev_run"]
    metrics = train(compose_config(tmp_path, overrides))
    assert metrics["tested"] == "last"  # it validated, but kept no checkpoint (it blamed limit_val_batches)
    assert "trainer.fast_dev_run saves no checkpoint, so the final test uses the last weights" in caplog.text


def test_seed_null_draws_one_seed_records_it_and_reruns_the_same(tmp_path, fake_data):
    """With a validation split and trainer.limit_val_batches=0: the last weights are tested, said once."""
    output, run, metrics = lenet_exp(
        tmp_path, fake_data, "seed=null", "data.val_size=16", "trainer.limit_val_batches=0", "trainer.max_epochs=2"
    )
    seed = metrics["seed"]
    assert isinstance(seed, int) and f"seed=null: drew seed {seed}" in output
    assert output.count("no epoch was validated") == 1 and metrics["tested"] == "last"
    assert not best_checkpoint(run).exists()
    assert OmegaConf.load(config_file(run)).seed == seed  # what resume replays
    stored = checkpoint(last_checkpoint(run))
    assert stored["lenet_exp_config"]["seed"] == stored["lenet_exp_config"]["data"]["seed"] == seed

    metrics_file(run).unlink()  # resume: the run's own config, so its seed (in this process, as the command runs)
    resumed = run_main("lenet_exp.resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(metrics_file(run).read_text())["seed"] == seed and "drew seed" not in resumed.stderr
    assert f"resuming {run}" in resumed.stdout + resumed.stderr  # the command's lines were captured

    again = tmp_path / "again"  # a rerun with the seed given
    overrides = [*TINY, f"data.data_dir={fake_data}", "data.val_size=16", "trainer.limit_val_batches=0"]
    rerun = train(compose_config(again, [*overrides, "trainer.max_epochs=2", f"seed={seed}", "logger=none"]))
    assert {k: v for k, v in rerun.items() if k not in TIMING} == {k: v for k, v in metrics.items() if k not in TIMING}
    weights = checkpoint(last_checkpoint(again))["state_dict"]
    assert all(torch.equal(weights[k], stored["state_dict"][k]) for k in weights)


def test_enable_checkpointing_false_runs_without_checkpoints_and_resume_says_so(tmp_path, fake_data):
    output, run, metrics = lenet_exp(
        tmp_path, fake_data, "trainer.enable_checkpointing=false", "data.val_size=16", "trainer.max_epochs=2"
    )
    assert not (run / "checkpoints").exists() and metrics["tested"] == "last" and metrics["epochs"] == 2
    assert len(epoch_lines(output)) == 2
    metrics_file(run).unlink()
    resumed = run_main("lenet_exp.resume", str(run))  # in this process, as the command runs
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr
    assert "was run with trainer.enable_checkpointing=false, so it kept no checkpoint to resume from" in resumed.stderr
    # what an interruption says, after its second epoch or before its first ended (or during its start-up): not
    # "no epoch was completed, so resuming starts it over", a resume that the resume command refuses
    from lenet_exp.runtime.run_folder import kept

    for epoch in (2, 0, None):
        assert kept(run, epoch).startswith(f"{run} keeps no checkpoint (the run wrote none: trainer.enable_checkpoint")
        assert "lenet_exp.resume" not in kept(run, epoch)


def test_overfit_batches_and_log_every_n_steps(tmp_path, fake_data):
    """overfit_batches=2: 2 training batches an epoch, in the same order every epoch. lenet_exp logs once an
    epoch (on TensorBoard's epoch axis), so log_every_n_steps has no steps to log."""
    output, run, metrics = lenet_exp(
        tmp_path, fake_data, "trainer.overfit_batches=2", "trainer.log_every_n_steps=1", "trainer.max_epochs=2"
    )
    assert checkpoint(last_checkpoint(run))["global_step"] == 4 and metrics["epochs"] == 2
    assert [step for step, _ in scalars(run, "train/loss")] == [0, 1]


@pytest.mark.slow
def test_an_interrupted_ddp_spawn_run_resumes(tmp_path):
    """One spawned process (trainer.devices=1) with epochs long enough to be killed in: the whole process
    group killed during epoch 2 or 3, as a cluster does; resume trains the rest and records the run."""
    data, run = tmp_path / "data", tmp_path / "run"
    write_fake_fashion_mnist(data, n_train=400)  # 24 batches an epoch: the kill lands seconds before epoch 3 ends
    spawn = ["trainer.strategy=ddp_spawn", "trainer.devices=1", "data.val_size=16", "trainer.max_epochs=3"]
    command = [sys.executable, "-m", "lenet_exp", *TINY, f"data.data_dir={data}", f"hydra.run.dir={run}", *spawn]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 1,"):
            os.killpg(proc.pid, signal.SIGKILL)  # the launching process and the rank it spawned
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    done = checkpoint(last_checkpoint(run))["epoch"] + 1
    assert done in (1, 2) and not metrics_file(run).exists()

    resumed = run_cli(str(run), module="lenet_exp.resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    output = resumed.stdout + resumed.stderr
    assert f"resuming {run} after epoch {done}" in output
    assert [line.split(",")[0] for line in epoch_lines(output)] == [f"epoch {n}" for n in range(done + 1, 4)]
    metrics = json.loads(metrics_file(run).read_text())
    assert metrics["epochs"] == 3 and len(metrics["epoch_seconds"]) == 3 and metrics["tested"] == "best"
    assert checkpoint(best_checkpoint(run))["epoch"] + 1 == metrics["best_epoch"]
    assert sorted({step for step, _ in scalars(run, "train/loss")}) == [0, 1, 2]  # the epoch axis, continued


def test_the_final_test_on_an_earlier_best_epoch_keeps_every_epochs_seconds(tmp_path, fake_data):
    """The final test loads best.ckpt, whose callback states are its epoch's: metrics.json kept only the epochs
    up to the best one in epoch_seconds and seconds_per_epoch."""
    overrides = [*TINY, f"data.data_dir={fake_data}", "data.val_size=16", "trainer.max_epochs=3", "logger=none"]
    worst = ["callbacks.best.monitor=val/loss", "callbacks.best.mode=min"]  # on random labels: an early epoch
    metrics = train(compose_config(tmp_path, [*overrides, *worst]))
    assert metrics["tested"] == "best" and metrics["best_epoch"] < 3, metrics  # (the case this checks)
    assert len(metrics["epoch_seconds"]) == 3 and metrics["epochs"] == 3
    assert metrics["seconds_per_epoch"] == pytest.approx(sum(metrics["epoch_seconds"]) / 3)
