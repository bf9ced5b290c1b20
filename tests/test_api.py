"""lenet_exp.run / sweep / load: the command line's runs from Python, one after another in one process."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ONE_EPOCH, run_main, write_fake_fashion_mnist
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.version import VersionBase
from PIL import Image

import lenet_exp
import lenet_exp.__main__  # noqa: F401  (importing it sets Hydra's version base, as @hydra.main does)
import lenet_exp.api  # noqa: F401  (the trained fixture names lenet_exp.api.Run, also when it runs alone)
from lenet_exp.data import find_files, load_split
from lenet_exp.errors import UserError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("api") / "data"
    write_fake_fashion_mnist(directory)
    return directory


@pytest.fixture(scope="module")
def trained(two_epochs_run) -> lenet_exp.api.Run:
    """A run on the synthetic files (conftest's shared one), for the tests that need a checkpoint."""
    return lenet_exp.api.Run(*two_epochs_run)


def process_state() -> dict:
    """What one run must not leave changed for the next one."""
    root = logging.getLogger()
    return {
        "root handlers": list(root.handlers),
        "root level": root.level,
        "environment": dict(os.environ),
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "torch threads": torch.get_num_threads(),
        "Hydra initialized": GlobalHydra.instance().is_initialized(),
        "HydraConfig": HydraConfig.instance().cfg,
        "Hydra version base": VersionBase.instance().getbase(),
        "deterministic": (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ),
        "cudnn benchmark": torch.backends.cudnn.benchmark,
        "mlflow's tracking URI set": "mlflow" in sys.modules and mlflow_uri_set(),
    }


def test_import_lenet_exp_loads_neither_torch_nor_lightning_until_a_call():
    heavy = "[m for m in ('torch', 'pytorch_lightning', 'hydra') if m in sys.modules]"
    out = subprocess.run(
        [sys.executable, "-c", f"import sys, lenet_exp; lenet_exp.run, lenet_exp.load; print({heavy})"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.slow
def test_a_home_that_cannot_be_written_brings_no_matplotlib_warning_and_a_foreign_folder_is_not_used(tmp_path):
    """HOME=/ (a container started as a bare user ID) or a read-only home: matplotlib, which Lightning imports,
    printed three lines of warning in every command and built its font cache anew. lenet_exp gives it a folder of
    the user's alone in the temporary folder, and never one that another user made there."""
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    env |= {"HOME": "/proc", "TMPDIR": str(tmp_path)}  # /proc/.config cannot be made, even by root
    code = "import os, lenet_exp, matplotlib.font_manager; print(os.environ.get('MPLCONFIGDIR'))"

    def imported() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)

    out = imported()
    folder = tmp_path / f"lenet_exp-matplotlib-{os.getuid()}"
    assert out.returncode == 0 and out.stdout.strip() == str(folder) and "Matplotlib" not in out.stderr, out.stderr
    assert (folder.stat().st_mode & 0o777) == 0o700 and list(folder.glob("fontlist-*.json"))  # kept for the next
    if os.geteuid() == 0:  # the same folder made by someone else: matplotlib's own choice, with its warning
        os.chown(folder, 65534, 65534)
        out = imported()
        assert out.stdout.strip() != str(folder) and "Matplotlib created a temporary" in out.stderr, out.stderr


def mlflow_uri_set() -> bool:
    """Whether mlflow's own calls go to a tracking URI that was set (else to its default, in the current folder)."""
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    return is_tracking_uri_set()


@pytest.mark.slow
def test_two_runs_in_one_process_land_in_two_folders_with_their_own_metrics_and_logs(
    tmp_path, data_dir, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    before = process_state()
    a = lenet_exp.run(*ONE_EPOCH, f"data.data_dir={data_dir}", "threads=1")
    assert process_state() == before
    # the Trainer's switches of torch for the whole process, and an MLflow logger's of mlflow's own calls
    process_wide = ["trainer.deterministic=true", "trainer.benchmark=true", "logger=mlflow"]
    b = lenet_exp.run(*ONE_EPOCH, f"data.data_dir={data_dir}", "threads=1", "seed=1", *process_wide)
    assert process_state() == before

    day = time.strftime("%Y-%m-%d")
    assert a.run_dir != b.run_dir
    assert a.run_dir.parent == b.run_dir.parent == tmp_path / "outputs" / day  # outputs/<date>/<time>/
    for result, seed in ((a, 42), (b, 1)):
        assert result.metrics == json.loads((result.run_dir / "metrics.json").read_text())
        assert result.metrics["seed"] == seed and result.metrics["epochs"] == 1
        assert (result.run_dir / ".hydra" / "config.yaml").is_file() and (
            result.run_dir / ".hydra" / "hydra.yaml"
        ).is_file()
        assert result.checkpoint == result.run_dir / "checkpoints" / "last.ckpt" and result.checkpoint.is_file()
        log = (result.run_dir / "lenet_exp.log").read_text()
        assert log.count("epoch 1, loss") == 1 and log.count("run folder") == 1  # the other run's lines are not in it
    assert b.overrides == [*ONE_EPOCH, f"data.data_dir={data_dir}", "threads=1", "seed=1", *process_wide]

    printed = capsys.readouterr().out
    assert printed.count("epoch 1, loss") == 2  # the book's epoch line, as the command line prints it
    assert f"run folder {a.run_dir}" in printed and f"run folder {b.run_dir}" in printed


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_a_folder_named_by_the_clock_that_exists_already_is_not_shared(tmp_path, data_dir, monkeypatch):
    # What two runs started within the same second see: the second finds the first one's folder.
    runs = tmp_path / "it's runs"  # a quote and a space: the folder is passed on as a Hydra override
    taken = runs / time.strftime("%Y")
    taken.mkdir(parents=True)
    clock = "'" + str(runs).replace("'", "\\'") + "/${now:%Y}'"  # quoted, as Hydra's override grammar wants
    result = lenet_exp.run(*ONE_EPOCH, f"data.data_dir={data_dir}", "threads=1", f"hydra.run.dir={clock}")
    assert result.run_dir == taken.with_name(f"{taken.name}_1") and (result.run_dir / "metrics.json").is_file()
    # A sweep's launcher composes each job again: its jobs go into the sweep's own folder too.
    from lenet_exp.runtime import hydra_callbacks

    checked = []  # the sweep's settings and folder, checked once: by lenet_exp.sweep, not again by its callbacks
    for check in ("check_sweep", "check_no_earlier_sweep"):
        original = getattr(hydra_callbacks, check)
        monkeypatch.setattr(hydra_callbacks, check, lambda *a, _f=original, _n=check: checked.append(_n) or _f(*a))
    jobs = lenet_exp.sweep(*ONE_EPOCH, f"data.data_dir={data_dir}", "threads=1", "seed=1,2", f"hydra.sweep.dir={clock}")
    folder = taken.with_name(f"{taken.name}_2")
    assert sorted(checked) == ["check_no_earlier_sweep", "check_sweep"]
    assert not any(taken.iterdir())
    # lenet_exp.sweep returns each job, in job order
    assert [job.run_dir for job in jobs] == [folder / "0", folder / "1"]
    assert [job.metrics["seed"] for job in jobs] == [1, 2] and [job.overrides[-1] for job in jobs] == [
        "seed=1",
        "seed=2",
    ]
    assert all(job.error is None and job.metrics["epochs"] == 1 for job in jobs)
    assert all((job.run_dir / "metrics.json").is_file() for job in jobs) and (folder / "multirun.yaml").is_file()


@pytest.mark.slow
def test_a_sweep_into_a_relative_folder_returns_jobs_that_stay_valid_in_another_folder(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (job,) = lenet_exp.sweep(*ONE_EPOCH, f"data.data_dir={data_dir}", "threads=1", "seed=1", "hydra.sweep.dir=mine")
    monkeypatch.chdir("/")  # a notebook's next cell, somewhere else
    assert job.run_dir == tmp_path / "mine" / "0"
    assert job.checkpoint == tmp_path / "mine" / "0" / "checkpoints" / "last.ckpt"
    assert len(lenet_exp.load(job.checkpoint).predict(torch.zeros(1, 28, 28)).classes) == 1


@pytest.mark.slow
def test_user_errors_are_raised_with_their_sentence_never_exited(tmp_path, data_dir):
    before = process_state()
    sentence = r"^trainer.max_epochs=0 must be a positive whole number, such as 5 \(or -1: until something else .*\)\.$"
    with pytest.raises(UserError, match=sentence):
        lenet_exp.run("trainer.max_epochs=0", f"hydra.run.dir={tmp_path / 'zero'}")
    # the run's folder keeps the sentence in its log, as the command line's does
    last = (tmp_path / "zero" / "lenet_exp.log").read_text().splitlines()[-1]
    assert re.search(sentence.replace("^", "error: "), last), last
    with pytest.raises(UserError, match=r"^trainer.max_epochs=0 must be a positive whole number"):
        lenet_exp.run(["trainer=cpu", "trainer.max_epochs=0"], f"hydra.run.dir={tmp_path / 'listed'}")  # a list too
    with pytest.raises(
        UserError, match=r"^In 'config': Could not find 'model/nope' Available options in 'model': lenet"
    ):
        lenet_exp.run("model=nope")
    with pytest.raises(UserError, match=r"^config_dir=.*missing is not a folder"):
        lenet_exp.run(config_dir=tmp_path / "missing")
    with pytest.raises(UserError, match=r"^config_dir=5 must be the path of a folder"):
        lenet_exp.run(config_dir=5)
    with pytest.raises(UserError, match=r"To sweep over it, call lenet_exp.sweep$"):  # not the command line's -m
        lenet_exp.run("seed=1,2")
    with pytest.raises(UserError, match=r"^overrides are strings such as 'seed=1' or 'trainer.max_epochs=2', not 5\.$"):
        lenet_exp.run(5)
    with pytest.raises(UserError, match=r"^overrides are strings .*, not \{'seed': 1\}\.$"):
        lenet_exp.sweep({"seed": 1})
    with pytest.raises(UserError, match=r"^-m is a flag of the command line, not an override; lenet_exp.sweep runs"):
        lenet_exp.run("-m", "seed=1,2")
    pasted = r"^'debug=limit seed=3' holds 2 overrides in one string; give each as a string of its own: \('debug=limit'"
    with pytest.raises(UserError, match=pasted):  # a command line pasted whole: Hydra's grammar error, it was
        lenet_exp.run("debug=limit seed=3")
    with pytest.raises(UserError, match=r"^trainer.strategy=ddp with trainer.devices=2 starts its other processes"):
        lenet_exp.run("trainer=ddp_cpu", f"hydra.run.dir={tmp_path / 'ddp'}")  # Lightning would re-run sys.argv
    assert not (tmp_path / "ddp").exists()
    with pytest.raises(UserError, match=r"^trainer.strategy=auto with trainer.devices=2 starts its other processes"):
        lenet_exp.run("trainer=cpu", "trainer.devices=2", f"hydra.run.dir={tmp_path / 'auto'}")  # auto is DDP here
    assert not (tmp_path / "auto").exists()
    nodes = r"^trainer.strategy=auto with trainer.devices=1 and trainer.num_nodes=2 starts its other processes"
    with pytest.raises(UserError, match=nodes):  # the count that makes it DDP is named
        lenet_exp.run("trainer=cpu", "trainer.num_nodes=2", f"hydra.run.dir={tmp_path / 'nodes'}")
    assert not (tmp_path / "nodes").exists()
    folder = tmp_path / "sweep"
    with pytest.raises(
        UserError,
        match=rf"^job 0 of the sweep in {re.escape(str(folder))} failed: data.batch_size=0 must be a positive",
    ):
        lenet_exp.sweep(*ONE_EPOCH, f"data.data_dir={data_dir}", "data.batch_size=0", f"hydra.sweep.dir={folder}")
    assert "data.batch_size=0 must be a positive" in (folder / "0" / "error.txt").read_text()
    # a swept key Hydra cannot compose into a job's config: no job ran
    with pytest.raises(UserError, match=r"failed: Could not override 'data.batch_szie'\. To append to your config"):
        lenet_exp.sweep("data.batch_szie=1,2", f"hydra.sweep.dir={tmp_path / 'typo'}")
    # a folder named by an environment variable that is not set
    unset = r"\$\{oc.env:LENET_EXP_UNSET\}"
    with pytest.raises(UserError, match=rf"^hydra.run.dir={unset}/x cannot be resolved \(Environment variable"):
        lenet_exp.run("hydra.run.dir=${oc.env:LENET_EXP_UNSET}/x")
    with pytest.raises(UserError, match=rf"^hydra.sweep.dir={unset} cannot be resolved \(Environment variable"):
        lenet_exp.sweep("seed=1,2", "hydra.sweep.dir=${oc.env:LENET_EXP_UNSET}")
    assert process_state() == before


# lenet_exp.sweep returning each job: test_a_folder_named_by_the_clock_that_exists_already_is_not_shared.


@pytest.mark.slow
def test_a_run_that_kept_no_checkpoint_has_none(tmp_path, data_dir):
    quick = tmp_path / "quick"
    result = lenet_exp.run(*ONE_EPOCH, "debug=fast_dev_run", f"data.data_dir={data_dir}", f"hydra.run.dir={quick}")
    assert result.metrics["test_acc"] >= 0 and not (quick / "checkpoints").exists()
    assert result.checkpoint is None


@pytest.mark.slow
def test_config_dir_adds_the_users_configs_like_the_config_dir_option(tmp_path, data_dir):
    mine = tmp_path / "mine" / "experiment"
    mine.mkdir(parents=True)
    (mine / "tiny.yaml").write_text("# @package _global_\nmodel:\n  optimizer:\n    lr: 0.0042\n")
    result = lenet_exp.run(
        *ONE_EPOCH,
        "experiment=tiny",
        f"data.data_dir={data_dir}",
        "threads=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        config_dir=tmp_path / "mine",
    )
    assert "lr: 0.0042" in (result.run_dir / ".hydra" / "config.yaml").read_text()


@pytest.mark.slow
def test_load_predicts_what_the_predict_command_prints_from_paths_pil_images_and_tensors(tmp_path, trained, data_dir):
    images, _ = load_split(find_files(data_dir), "test", verify_md5=False)
    images = images.clone()
    for row, column in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        images[:, row, column] = 0  # a black background, as Fashion-MNIST's: its corners (the synthetic ones are not)
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(images[i].numpy()).save(paths[-1])
    # the command in this process (test_docs.py runs README's predict command from a terminal)
    out = run_main("lenet_exp.predict", f"ckpt_path={trained.checkpoint}", f"images={tmp_path}", "format=json")
    assert out.returncode == 0, out.stderr
    printed = [json.loads(line) for line in out.stdout.splitlines()]

    model = lenet_exp.load(trained.checkpoint)
    predictions = model.predict(paths)
    assert predictions.classes == [r["class"] for r in printed]
    assert predictions.top(3) == [r["top"] for r in printed]
    assert predictions.probabilities.shape == (6, 10)
    assert torch.allclose(predictions.probabilities.sum(dim=1), torch.ones(6))
    assert model.predict(str(tmp_path)).classes == predictions.classes  # a folder, as images= of the command

    # These pictures are 28x28, on black: made like Fashion-MNIST's, they stay as they are.
    same = [
        [Image.open(path) for path in paths],  # PIL images
        images[:6],  # a uint8 batch (N, 28, 28)
        images[:6].unsqueeze(1).float() / 255,  # floats in [0, 1], (N, 1, 28, 28)
        [images[i].numpy() for i in range(6)],  # arrays, one image each
    ]
    for each in same:
        assert torch.equal(model.predict(each).probabilities, predictions.probabilities)
    # views with negative strides (np.flipud, np.rot90, [::-1]) of the same pixels
    flipped = [np.flipud(images[i].numpy()[::-1].copy()) for i in range(6)]
    assert all(a.strides[0] < 0 for a in flipped)
    assert torch.equal(model.predict(flipped).probabilities, predictions.probabilities)
    # in evaluation mode (batch norm's running statistics, the EMA weights), whatever mode the module is in, which
    # it keeps; in the precision the module was put in
    modes = []
    model.module.train()
    hook = model.module.register_forward_pre_hook(lambda module, _: modes.append(module.training))
    assert torch.equal(model.predict(paths).probabilities, predictions.probabilities)
    hook.remove()
    assert modes == [False] and model.module.training
    model.module.eval().double()
    assert model.predict(paths).classes == predictions.classes
    model.module.float()

    with pytest.raises(UserError, match=r"floats must hold pixels in \[0, 1\]"):
        model.predict(images[:2].float())
    with pytest.raises(UserError, match=r"whole numbers must hold 0-255 pixels"):
        model.predict(images[:2].to(torch.int32) * 257)  # 16-bit values, not divided by 255 into [0, 1]
    with pytest.raises(UserError, match=r"whole numbers must hold 0-255 pixels"):  # a 16-bit scan's own type
        model.predict(images[:2].numpy().astype(np.uint16) * 257)
    with pytest.raises(UserError, match=r"floats must hold pixels in \[0, 1\]"):  # NaN is no pixel
        model.predict(torch.full((28, 28), float("nan")))
    for odd in (np.zeros((28, 28), dtype=object), torch.zeros(28, 28, dtype=torch.complex64)):
        with pytest.raises(UserError, match=r"is not pixels; give whole numbers 0-255 or floats in \[0, 1\]\."):
            model.predict(odd)
    with pytest.raises(UserError, match=r"shape \(2, 3, 28, 28\) is not Fashion-MNIST's"):
        model.predict(np.zeros((2, 3, 28, 28), dtype=np.uint8))
    with pytest.raises(UserError, match=r"missing.png cannot be read: no such file"):
        model.predict(tmp_path / "missing.png")
    for k in (0, -1, "3", None):  # as top= of the command refuses them
        with pytest.raises(UserError, match=r"^top=.* must be a positive whole number, such as 3\.$"):
            predictions.top(k)
    with pytest.raises(
        UserError, match=r"^load takes the path of a \.ckpt file, not None \(the checkpoint of a run that"
    ):
        lenet_exp.load(None)
    with pytest.raises(UserError, match=r"^load takes the path of a \.ckpt file, such as run.checkpoint, not 5\.$"):
        lenet_exp.load(5)
    with pytest.raises(UserError, match=r"^trust=5 must name classes"):
        lenet_exp.load(trained.checkpoint, trust=5)


@pytest.mark.slow
def test_load_takes_the_run_itself_and_a_moved_run_is_said_to_be_gone(tmp_path, trained):
    """``load(run)`` for ``load(run.checkpoint)`` (it was a sentence holding the whole Run's repr); a run whose folder
    was moved since had ``checkpoint`` None, and load said the run kept no checkpoint."""
    pixels = torch.zeros(28, 28)
    torch.manual_seed(0)
    drawn = torch.rand(3)
    torch.manual_seed(0)
    lenet_exp.load(trained)  # builds the network, whose initial weights its checkpoint's replace
    assert torch.equal(torch.rand(3), drawn)  # the caller's own random numbers are as they were
    assert torch.equal(
        lenet_exp.load(trained).predict(pixels).probabilities,
        lenet_exp.load(trained.checkpoint).predict(pixels).probabilities,
    )
    gone = lenet_exp.api.Run(tmp_path / "moved-away", trained.metrics)
    assert gone.checkpoint == tmp_path / "moved-away" / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match=r"^ckpt_path=.*moved-away/checkpoints/last.ckpt does not exist"):
        lenet_exp.load(gone)


def test_load_refuses_a_checkpoint_that_names_a_class_it_may_not_build(tmp_path, trained):
    checkpoint = torch.load(trained.checkpoint, weights_only=True)
    checkpoint["lenet_exp_config"]["model"]["_target_"] = "os.system"
    crafted = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, crafted)
    with pytest.raises(UserError, match="os.system"):
        lenet_exp.load(crafted)


@pytest.mark.slow
def test_ctrl_c_during_a_run_is_a_keyboard_interrupt_and_the_next_run_works(tmp_path, data_dir):
    # Lightning answers Ctrl-C with SystemExit and then ignores SIGINT; a notebook's kernel must live on.
    script = f"""
import signal, lenet_exp
args = {[*ONE_EPOCH[:-1], f"data.data_dir={data_dir}", "threads=1"]!r}
try:
    lenet_exp.run(*args, "trainer.max_epochs=1000", "hydra.run.dir={tmp_path / "stopped"}")
except KeyboardInterrupt:
    print("KeyboardInterrupt", signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
print("next", lenet_exp.run(*args, "trainer.max_epochs=1", "hydra.run.dir={tmp_path / "next"}").metrics["epochs"])
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # also under a shell that ignores it
    )
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("epoch 2,"):
                proc.send_signal(signal.SIGINT)
                break
        output = "".join(seen) + proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert f"resume with: python -m lenet_exp.resume {tmp_path / 'stopped'}" in output
    assert "KeyboardInterrupt True" in output and "next 1" in output and "SystemExit" not in output


# A notebook's cells, each script a kernel of its own: Lightning imported before the first run (by the user, or by
# lenet_exp.load), and Lightning used after a run, in a process whose root logger has no handlers.
LIGHTNING_FIRST = """
import sys, pytorch_lightning, lenet_exp
run = lenet_exp.run(*sys.argv[2:], f"hydra.run.dir={sys.argv[1]}")
print("GPU available" in (run.run_dir / "lenet_exp.log").read_text())
"""
LIGHTNING_AFTER = """
import sys, lenet_exp
lenet_exp.run(*sys.argv[2:], f"hydra.run.dir={sys.argv[1]}")
import pytorch_lightning as pl
print("a later cell", file=sys.stderr)
pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
"""


@pytest.mark.slow  # two Python processes of their own
def test_lightnings_lines_go_to_the_runs_log_whatever_was_imported_first_and_print_in_later_cells(tmp_path, data_dir):
    """Lightning's loggers print through a handler of their own, made at its import when the root logger has none:
    imported before a run, its lines (the devices, the model summary) missed the run's log file; imported first by
    a run, under the run's handlers, a later cell's Trainer printed nothing at all."""
    settings = [*ONE_EPOCH, f"data.data_dir={data_dir}"]
    first = subprocess.run(
        [sys.executable, "-c", LIGHTNING_FIRST, str(tmp_path / "first"), *settings], capture_output=True, text=True
    )
    assert first.returncode == 0 and first.stdout.splitlines()[-1] == "True", first.stderr[-3000:]
    after = subprocess.run(
        [sys.executable, "-c", LIGHTNING_AFTER, str(tmp_path / "after"), *settings], capture_output=True, text=True
    )
    assert after.returncode == 0, after.stderr[-3000:]
    assert "GPU available: False" in after.stderr.split("a later cell")[1], after.stderr[-3000:]


def child_processes() -> list[str]:
    """The command lines of this process's children, leaving out multiprocessing's and loky's resource trackers."""
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            command = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and "resource_tracker" not in command:
            found.append(command)
    return found


@pytest.mark.slow
def test_a_joblib_sweep_leaves_no_worker_process_behind_in_the_notebook(tmp_path, data_dir):
    """loky kept the sweep's two workers (about 0.8 GB each) for 300 s after the call had returned."""
    before = child_processes()
    joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    runs = lenet_exp.sweep(*ONE_EPOCH, f"data.data_dir={data_dir}", "logger=none", "seed=1,2", *joblib)
    assert [run.metrics["seed"] for run in runs] == [1, 2]
    assert child_processes() == before
