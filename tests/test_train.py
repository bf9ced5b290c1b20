"""The Hydra entry point: composed configs, a fast_dev_run, and the CLI's messages."""

import ctypes
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import (
    ONE_EPOCH,
    TIMING,
    TWO_EPOCHS,
    compose_config,
    counted_over,
    event_dir,
    load_checkpoint,
    run_cli,
    run_main,
)
from omegaconf import OmegaConf

from lenet_exp.runtime.threads import NVML_CHECK
from lenet_exp.train import train


def test_default_config_is_the_books_experiment(tmp_path):
    cfg = compose_config(tmp_path)
    assert cfg.model.net.activation == "sigmoid"
    assert cfg.model.optimizer._target_ == "torch.optim.Adam" and cfg.model.optimizer.lr == 0.001
    assert cfg.data.batch_size == 256 and cfg.data.val_size == 0
    assert cfg.trainer.max_epochs == 5
    assert set(cfg.logger) == {"tensorboard"} and cfg.logger.tensorboard._target_.endswith("TensorBoardLogger")


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "auto"])
def test_trainer_group_picks_the_accelerator(tmp_path, trainer):
    assert compose_config(tmp_path, [f"trainer={trainer}"]).trainer.accelerator == trainer


def test_fast_dev_run_through_hydra_compose(tmp_path, fake_data):
    overrides = [
        "trainer=cpu",
        "trainer.fast_dev_run=true",
        f"data.data_dir={fake_data}",
        "data.verify_md5=false",
        "data.batch_size=16",
    ]
    cfg = compose_config(tmp_path, overrides)
    metrics = train(cfg)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == metrics
    for key in ("test_acc", "train_acc", "train_loss", "epochs", "seconds_per_epoch", "seed", "git_rev"):
        assert key in written
    assert counted_over(written["test_acc"], 32) and written["epochs"] == 1 and written["seed"] == 42


def test_one_epoch_on_synthetic_data_writes_a_complete_run_folder(validated_run):
    run, metrics = validated_run  # VALIDATED: 3 epochs with a validation split of 16 images
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert event_dir(run).name == (
        "data.batch_size=16,data.val_size=16,data.verify_md5=false,model.optimizer.lr=0.02,trainer.max_epochs=3,"
        "trainer=cpu"
    )
    assert {"val_acc", "test_acc", "train_loss"} <= metrics.keys() and metrics["epochs"] == 3
    machine = json.loads((run / "metrics.json").read_text())["environment"]  # what makes a timing comparable
    assert machine["device"] == "cpu" and machine["cpu_cores"] == os.cpu_count() and machine["cpu"]
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()  # AVX512, AVX2, ...
    assert machine["torch"] == torch.__version__.split("+")[0]  # the installed distribution's version
    assert machine["torch_threads"] == metrics["threads"] and machine["pytorch-lightning"] and machine["hydra-core"]
    assert machine["python"] == platform.python_version() and "gpu" not in machine
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["lenet_exp_config"]["data"]["val_size"] == 16
    assert OmegaConf.create(ckpt["lenet_exp_config"]).model.net.activation == "sigmoid"


@pytest.mark.slow
def test_help_and_cfg_job_work_like_hydra():
    help_out = run_cli("--help")
    assert help_out.returncode == 0 and "trainer: auto, cpu, ddp, ddp_cpu, default, gpu" in help_out.stdout
    assert "debug: fast_dev_run, limit, profiler" in help_out.stdout
    script = subprocess.run([Path(sys.executable).parent / "lenet-exp", "--help"], capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout == help_out.stdout  # the console script is the same app
    cfg_out = run_cli("--cfg", "job", "data.batch_size=128")
    assert cfg_out.returncode == 0
    assert OmegaConf.create(cfg_out.stdout).data.batch_size == 128


@pytest.mark.slow
def test_with_hydras_chdir_relative_paths_still_mean_the_folder_the_command_started_in(fake_data, monkeypatch):
    """hydra.job.chdir=true runs the job inside its run folder; data.data_dir=data and ckpt_path=... typed from
    the user's folder must still mean that folder (before, data_dir meant <run>/data, which does not exist, and
    the search went on to Debian's copy of the real data)."""
    monkeypatch.chdir(fake_data.parent)
    common = ["hydra.job.chdir=true", f"data.data_dir={fake_data.name}", *ONE_EPOCH]
    out = run_main("lenet_exp", *common, "hydra.run.dir=first")
    assert out.returncode == 0, out.stderr
    assert f"Fashion-MNIST from {fake_data}" in (fake_data.parent / "first" / "lenet_exp.log").read_text()
    assert json.loads((fake_data.parent / "first" / "metrics.json").read_text())["epochs"] == 1
    more = ["hydra.run.dir=second", "ckpt_path=first/checkpoints/last.ckpt", "trainer.max_epochs=2"]
    out = run_main("lenet_exp", *common[:2], *ONE_EPOCH[:-1], *more)
    assert out.returncode == 0, out.stderr
    assert json.loads((fake_data.parent / "second" / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_without_gpu_is_one_clear_sentence(tmp_path):
    out = run_cli("trainer.accelerator=gpu", f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0
    assert "Traceback" not in out.stdout + out.stderr
    assert "finds no CUDA GPU" in out.stderr and "trainer.accelerator=cpu or trainer.accelerator=auto" in out.stderr
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(  # fast_dev_run in make test-fast; the presets that train whole epochs in make test
    "debug",
    ["fast_dev_run", pytest.param("limit", marks=pytest.mark.slow), pytest.param("profiler", marks=pytest.mark.slow)],
)
def test_debug_presets_compose_and_run(tmp_path, fake_data, debug):
    cfg = compose_config(
        tmp_path,
        [f"debug={debug}", "trainer=cpu", f"data.data_dir={fake_data}", "data.verify_md5=false", "data.batch_size=16"],
    )
    metrics = train(cfg)
    assert metrics["epochs"] == {"fast_dev_run": 1, "limit": 2, "profiler": 1}[debug]


@pytest.mark.slow
def test_a_callback_set_to_null_is_left_out_as_hydra_users_drop_one(tmp_path, fake_data):
    nulls = ["callbacks.progress_bar=null", "callbacks.test_images=null", "callbacks.network_view=null"]
    metrics = train(compose_config(tmp_path, [*ONE_EPOCH, f"data.data_dir={fake_data}", *nulls]))  # was a traceback
    assert metrics["epochs"] == 1 and (tmp_path / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_two_runs_with_one_seed_give_identical_metrics(tmp_path, fake_data, two_epochs_run):
    """This run and the shared one of TWO_EPOCHS (trained earlier in this process, from files of the same bytes)."""
    first, first_metrics = two_epochs_run
    cfg = compose_config(tmp_path / "b", [*TWO_EPOCHS, f"data.data_dir={fake_data}"])
    metrics = train(cfg)
    results = []
    for run, result in ((first, first_metrics), (tmp_path / "b", metrics)):
        results.append({k: v for k, v in result.items() if k not in TIMING})
        results.append(load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"])
    assert results[0] == results[2]
    assert all(torch.equal(results[1][k], results[3][k]) for k in results[1])


def test_a_threads_given_is_set_for_the_run_and_left_in_no_environment(tmp_path, fake_data, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = compose_config(tmp_path, [*ONE_EPOCH, f"data.data_dir={fake_data}", "threads=1", "logger=none"])
    assert train(cfg)["threads"] == 1
    assert "OMP_NUM_THREADS" not in os.environ  # processes started later (a sweep's next job) choose their own


@pytest.mark.skipif(torch.version.cuda is None, reason="a CPU-only torch never asks NVML")
def test_optimizer_steps_stop_looking_for_an_absent_nvml(tmp_path, fake_data, monkeypatch):
    """Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1; torch's optimizers then ask NVML for the GPUs in
    every step, which without NVML fails slowly each time (1-2 % of an epoch on a CPU). A run unsets it where
    NVML cannot be loaded, and keeps it where it can (a GPU machine: Lightning's fork-safe check)."""
    if torch.cuda.is_initialized():
        pytest.skip("CUDA is initialised in this process: torch counts its devices once and asks NVML no more")
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        present = True
    except OSError:
        present = False
    monkeypatch.setenv(NVML_CHECK, "1")  # as Lightning's import leaves it (and put back after this test)
    looked = []  # torch's attempts to load NVML (its private helper, counted here)
    load = torch.cuda._raw_device_count_nvml
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", lambda: looked.append(1) or load())
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    assert looked  # Lightning's setting: a step asks NVML
    train(compose_config(tmp_path, [*ONE_EPOCH, f"data.data_dir={fake_data}", "logger=none"]))
    assert os.environ.get(NVML_CHECK) == ("1" if present else None)
    if not present:
        looked.clear()
        optimizer.step()
        assert not looked
