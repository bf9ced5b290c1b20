"""One writer per run folder: a second process is refused with the PID of the first, a killed holder
leaves no stale lock, and eval may append beside a running training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ONE_EPOCH, ROOT, TINY, run_cli, run_main
from pytorch_lightning.callbacks import Callback

from lenet_exp.errors import UserError
from lenet_exp.runtime.lock import acquire, release
from lenet_exp.runtime.run_folder import lock_file

TESTS_ON_PATH = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


class WaitForFile(Callback):
    """Holds the run at its first epoch (saying so in ``<go>.waiting``) until ``go`` exists (at most a minute)."""

    def __init__(self, go: str) -> None:
        self.go = Path(go)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.go.with_name(self.go.name + ".waiting").touch()
        deadline = time.monotonic() + 60
        while not self.go.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def holder_pid(run: Path, go: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    """Wait until ``proc`` is inside its first epoch; the PID its lock file holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if go.with_name(go.name + ".waiting").exists():
            return int(lock_file(run).read_text())
        time.sleep(0.1)
    raise AssertionError(f"the run never locked {run}: {proc.communicate()}")


@pytest.fixture
def waiting_run(tmp_path, fake_data):
    """A training run, started as a user starts one, waiting inside its first epoch until released."""
    run, go = tmp_path / "run", tmp_path / "go"
    args = [*ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.run.dir={run}", "logger=csv"]
    wait = ["+callbacks.wait._target_=test_locks.WaitForFile", f"+callbacks.wait.go={go}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lenet_exp", *args, *wait],
        cwd=ROOT,
        env=TESTS_ON_PATH,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield run, go, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.slow
def test_a_second_writer_of_a_running_folder_is_refused_naming_the_pid(waiting_run, fake_data):
    run, go, proc = waiting_run
    pid = holder_pid(run, go, proc)
    assert pid == proc.pid
    stored = (run / ".hydra" / "config.yaml").read_text()
    busy = f"{run} is in use by another lenet_exp process (PID {pid})"
    resumed = run_main("lenet_exp.resume", str(run))  # in this process, as the command runs
    assert resumed.returncode == 1 and busy in resumed.stderr and "Traceback" not in resumed.stderr, resumed.stderr
    again = run_cli(*TINY, f"data.data_dir={fake_data}", f"hydra.run.dir={run}", "seed=7")
    assert again.returncode == 1 and busy in again.stderr and "Traceback" not in again.stderr, again.stderr
    assert (run / ".hydra" / "config.yaml").read_text() == stored  # Hydra wrote nothing over the running run's
    with pytest.raises(UserError, match=f"PID {pid}"):
        acquire(run)
    go.touch()
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert (run / "metrics.json").is_file()


def test_two_runs_started_in_the_same_second_into_hydras_default_folder_are_told_to_give_their_own(tmp_path, capsys):
    """Without hydra.run.dir, Hydra names the folder by the second the run started: the second of two runs
    started together was told to wait for the first, as if it had chosen that folder itself."""
    from omegaconf import OmegaConf

    from lenet_exp.runtime.hydra_callbacks import RunLock

    run = tmp_path / "outputs" / "2026-12-07" / "13-53-00"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=TESTS_ON_PATH
    )
    try:
        assert holder.stdout.readline() == "held\n"
        default = "that started in the same second, as Hydra names a run's folder by the second; give each run its "
        default += "own hydra.run.dir=<folder>, or start them as one sweep (-m seed=1,2)."
        chosen = "and a run folder has one writer at a time; wait for it"
        for given, says in (([], default), ([f"hydra.run.dir={run}"], chosen)):
            config = OmegaConf.create({"hydra": {"run": {"dir": str(run)}, "overrides": {"hydra": given}}})
            with pytest.raises(SystemExit):
                RunLock().on_run_start(config)
            said = capsys.readouterr().err
            assert f"error: {run} is in use by another lenet_exp process (PID {holder.pid})" in said
            assert says in said, said
    finally:
        holder.kill()
        holder.communicate()


HOLD = "import sys, time; from lenet_exp.runtime.lock import acquire; acquire(sys.argv[1]); print('held', flush=True); "
HOLD += "time.sleep(60)"


@pytest.mark.slow
def test_a_grid_sweep_into_the_folder_of_one_running_is_refused_before_a_job_starts(tmp_path, fake_data, capsys):
    """Two grid sweeps started together into one folder (Hydra's default, named by the second they started, or one
    given) both found it empty, then wrote each other's job folders: one's results under the other's settings."""
    from omegaconf import OmegaConf

    import lenet_exp
    from lenet_exp.runtime.hydra_callbacks import RunLock

    sweep = tmp_path / "multirun" / "2026-12-07" / "13-53-00"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(sweep)], stdout=subprocess.PIPE, text=True, env=TESTS_ON_PATH
    )
    try:
        assert holder.stdout.readline() == "held\n"
        busy = f"error: {sweep} is in use by another lenet_exp sweep (PID {holder.pid}) "
        grid = {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"}
        config = OmegaConf.create(
            {"hydra": {"sweep": {"dir": str(sweep)}, "sweeper": grid, "overrides": {"hydra": []}}}
        )
        with pytest.raises(SystemExit):
            RunLock().on_multirun_start(config)  # the folder Hydra named by the second
        assert busy + "that started in the same second, as Hydra names a sweep's folder" in capsys.readouterr().err
        args = [*ONE_EPOCH, f"data.data_dir={fake_data}", "logger=none", f"hydra.sweep.dir={sweep}", "seed=1,2"]
        out = run_main("lenet_exp", "-m", *args)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert busy + "whose jobs this sweep's would replace; give this sweep another hydra.sweep.dir" in out.stderr
        assert out.stderr.rstrip().endswith("Nothing was run.")
        with pytest.raises(UserError, match=f"is in use by another lenet_exp sweep \\(PID {holder.pid}\\)"):
            lenet_exp.sweep(*args)
        assert sorted(p.name for p in sweep.iterdir()) == [".lock"]  # no job started
    finally:
        holder.kill()
        holder.communicate()
    assert [run.run_dir.name for run in lenet_exp.sweep(*args)] == ["0", "1"]  # once the other sweep has ended


@pytest.mark.slow
def test_a_killed_holder_leaves_no_stale_lock(waiting_run):
    run, go, proc = waiting_run
    assert holder_pid(run, go, proc) == proc.pid
    proc.send_signal(signal.SIGKILL)  # as a cluster does before it requeues the job
    proc.wait(timeout=30)
    assert acquire(run)  # the kernel released it: the requeued job can resume
    release(run)


def test_a_planted_lock_link_is_refused(tmp_path):
    (tmp_path / "elsewhere").write_text("")
    lock_file(tmp_path).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match=r"\.lock is a symbolic link"):
        acquire(tmp_path)


def test_ddp_ranks_started_by_the_launcher_do_not_take_the_lock(tmp_path, monkeypatch):
    assert acquire(tmp_path)  # rank 0 holds it
    for variable in ("LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.setenv(variable, "1")
        child = subprocess.run(
            [sys.executable, "-c", f"from lenet_exp.runtime.lock import acquire; print(acquire({str(tmp_path)!r}))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode == 0 and child.stdout.strip() == "False", child.stderr
        monkeypatch.delenv(variable)
    release(tmp_path)


@pytest.mark.slow
def test_eval_appends_beside_a_running_training(tmp_path, fake_data):
    """eval takes no run lock: while the folder is held (as by a training), it still records its result."""
    import torch
    from conftest import compose_config
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from lenet_exp.runtime.checkpoints import CONFIG_KEY

    run = tmp_path / "run"
    cfg = compose_config(run, [*ONE_EPOCH, f"data.data_dir={fake_data}"])
    (run / "checkpoints").mkdir(parents=True)
    state = instantiate(cfg.model).state_dict()
    torch.save(
        {"state_dict": state, "epoch": 0, CONFIG_KEY: OmegaConf.to_container(cfg, resolve=True)},
        run / "checkpoints" / "last.ckpt",
    )
    # held by another process, as by a training (a process may take again the lock it holds: eval runs here)
    hold = f"from lenet_exp.runtime.lock import acquire; print(acquire({str(run)!r}), flush=True); input()"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "True\n" and int(lock_file(run).read_text()) == holder.pid
        out = run_main("lenet_exp.eval", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "accelerator=cpu")
    finally:
        holder.communicate("\n", timeout=60)
    assert out.returncode == 0, out.stderr
    assert len((run / "evaluations.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow  # several runs and sweeps, 3 s: make test runs it, make test-fast does not
def test_a_folder_that_holds_a_run_is_refused_before_anything_is_written_over(tmp_path, fake_data):
    """A fixed hydra.run.dir given again (a command run twice): the earlier run's files stay as they were, and an
    unfinished one is named with the command that continues it."""
    import lenet_exp

    run = tmp_path / "run"
    args = [*ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.run.dir={run}"]
    lenet_exp.run(*args)
    files = ("metrics.json", "checkpoints/last.ckpt", ".hydra/config.yaml", ".hydra/overrides.yaml")
    before = {name: (run / name).read_bytes() for name in files}
    out = run_main("lenet_exp", *args, "seed=7")  # the command line, in this process
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"error: {run} holds a finished run, whose metrics.json, checkpoints and settings this run" in out.stderr
    with pytest.raises(UserError, match="holds a finished run"):
        lenet_exp.run(*args, "seed=7")  # the Python API
    (run / "metrics.json").unlink()
    out = run_main("lenet_exp", *args, "seed=7")
    assert f"{run} holds an unfinished run" in out.stderr and f"python -m lenet_exp.resume {run}," in out.stderr
    out = run_main("lenet_exp", *args, f"ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=2")
    assert f"{run} holds the run that ckpt_path={run}/checkpoints/last.ckpt belongs to" in out.stderr  # not "delete"
    assert {name: (run / name).read_bytes() for name in files[1:]} == {name: before[name] for name in files[1:]}

    sweep = tmp_path / "sweep"  # a grid sweep into the folder of an earlier one, its job folders named by seed
    sweep_args = [*ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=s${seed}"]
    lenet_exp.sweep(*sweep_args, "seed=1,2")
    overrides = (sweep / "s1" / ".hydra" / "overrides.yaml").read_bytes()
    out = run_main("lenet_exp", "-m", *sweep_args, "seed=1,2")  # the same command again
    assert out.returncode == 1 and f"error: {sweep} holds the runs of an earlier sweep (2 job folders)" in out.stderr
    with pytest.raises(UserError, match="holds the runs of an earlier sweep"):
        lenet_exp.sweep(*sweep_args, "seed=1,2")
    assert (sweep / "s1" / ".hydra" / "overrides.yaml").read_bytes() == overrides
    # a sweep whose jobs all failed: its error.txt files would stay beside the new jobs' results
    failed = tmp_path / "failed"
    with pytest.raises(UserError, match="job 0 of the sweep"):
        lenet_exp.sweep(*ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.sweep.dir={failed}", "data.batch_size=0,-1")
    with pytest.raises(UserError, match="holds the runs of an earlier sweep \\(2 job folders\\)"):
        lenet_exp.sweep(*ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.sweep.dir={failed}", "seed=1,2")
    assert not (failed / "0" / "metrics.json").exists()


@pytest.mark.slow
def test_a_sweep_whose_job_folders_are_nested_is_refused_again_and_every_job_is_reported(tmp_path, fake_data):
    """hydra.sweep.subdir with a / (seed_${seed}/job_${hydra.job.num}, or ${hydra.job.override_dirname} with a value
    such as val/acc) puts the job folders deeper down: the same sweep again replaced every job's results without a
    word, the report said the folder holds no job folders, and lenet_exp.sweep returned no job."""
    import lenet_exp

    sweep = tmp_path / "nested"
    args = [*ONE_EPOCH, f"data.data_dir={fake_data}", "logger=none", f"hydra.sweep.dir={sweep}"]
    args.append("hydra.sweep.subdir=seed_${seed}/job_${hydra.job.num}")
    runs = lenet_exp.sweep(*args, "seed=2,1")
    assert [run.run_dir.relative_to(sweep).as_posix() for run in runs] == ["seed_2/job_0", "seed_1/job_1"]
    numbered = lenet_exp.sweep(
        *args[:-2], f"hydra.sweep.dir={tmp_path / 'by_seed'}", "hydra.sweep.subdir=${seed}", "seed=3,1"
    )
    assert [run.run_dir.name for run in numbered] == ["3", "1"]  # in job order, not by the folders' numbers
    before = (sweep / "seed_1" / "job_1" / "metrics.json").read_bytes()
    out = run_main("lenet_exp", "-m", *args, "seed=2,1")  # the same command again
    assert out.returncode == 1 and f"error: {sweep} holds the runs of an earlier sweep (2 job folders)" in out.stderr
    assert (sweep / "seed_1" / "job_1" / "metrics.json").read_bytes() == before
    report = run_main("lenet_exp.report", str(sweep))
    assert report.returncode == 0, report.stderr
    assert "seed_2/job_0" in report.stdout and "seed_1/job_1" in report.stdout, report.stdout
    # an interrupted job (its last.ckpt, no metrics.json): the refusal says how it goes on
    (sweep / "seed_1" / "job_1" / "metrics.json").unlink()
    out = run_main("lenet_exp", "-m", *args, "seed=2,1")
    said = "(1 of them unfinished: finish each with python -m lenet_exp.resume <its folder>, such as "
    assert f"{said}{sweep / 'seed_1' / 'job_1'}; the jobs without a folder" in out.stderr, out.stderr


@pytest.mark.slow  # several runs and sweeps, 3 s: make test runs it, make test-fast does not
def test_a_new_study_into_the_folder_of_another_is_refused_and_the_same_study_goes_on(tmp_path, fake_data):
    """A study's trials are numbered from 0 in each study: another study_name in the same sweep folder would write
    over the first study's job folders, while the same study given again adds trials after its own."""
    import lenet_exp

    sweep = tmp_path / "study"
    study = ["hparams_search=lenet_optuna", "hydra.sweeper.n_trials=1", *ONE_EPOCH, "data.val_size=16"]
    study += [f"data.data_dir={fake_data}", f"hydra.sweep.dir={sweep}"]
    lenet_exp.sweep(*study)
    overrides = (sweep / "0" / ".hydra" / "overrides.yaml").read_bytes()
    with pytest.raises(UserError, match="holds the runs of an earlier sweep \\(1 job folder\\)"):
        lenet_exp.sweep(*study, "hydra.sweeper.study_name=another")
    assert (sweep / "0" / ".hydra" / "overrides.yaml").read_bytes() == overrides
    # a study of the same name in another storage is another study (it wrote over the first one's trial folders)
    with pytest.raises(UserError, match="holds the runs of an earlier sweep \\(1 job folder\\)"):
        lenet_exp.sweep(*study, f"hydra.sweeper.storage=sqlite:///{tmp_path / 'other.db'}")
    # the same study, to 2 trials in all (n_trials counts the study's): trial 1 is added beside trial 0
    assert [run.run_dir.name for run in lenet_exp.sweep(*study, "hydra.sweeper.n_trials=2")] == ["0", "1"]
    assert (sweep / "0" / ".hydra" / "overrides.yaml").read_bytes() == overrides
    out = run_main("lenet_exp", *study, "hydra.sweeper.n_trials=2")  # the same again: hydra-optuna-sweeper adds 2
    said = "the study's 2 trials have all been taken, so this worker runs none; hydra.sweeper.n_trials is the "
    said += "study's total: give hydra.sweeper.n_trials=4 for 2 more"
    assert out.returncode == 0 and said in out.stdout + out.stderr, out
    assert not (sweep / "2").exists()


def test_the_check_of_a_sweep_folder_imports_nothing_an_earlier_job_names(tmp_path, monkeypatch):
    """A job folder is data: the sweeper class its .hydra/hydra.yaml names is compared as a name, never imported
    (only this sweep's own class says where its study is stored)."""
    from omegaconf import OmegaConf

    from lenet_exp.runtime.hydra_callbacks import check_no_earlier_sweep

    (tmp_path / "planted.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\nclass Sweeper: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / "metrics.json").write_text("{}")
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  sweeper:\n    _target_: planted.Sweeper\n")
    sweeper = {"_target_": "hydra_plugins.lenet_exp_optuna.sweeper.OptunaSweeper", "study_name": "lenet"}
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(job.parent)}, "sweeper": sweeper}})
    config.hydra.runtime = {"cwd": str(tmp_path)}
    with pytest.raises(UserError, match="holds the runs of an earlier sweep"):
        check_no_earlier_sweep(config)
    assert not (tmp_path / "ran").exists()


def test_a_grid_sweep_into_a_folder_whose_job_started_and_wrote_nothing_else_is_refused(tmp_path):
    """A job still running in its first epoch, or interrupted there (Ctrl-C), holds only Hydra's files of its
    settings: a second sweep into the folder went on, rewrote them (the running job's metrics.json then said
    seed 1 beside a config of seed 3) and replaced multirun.yaml, whose overrides are how the rest is rerun."""
    from omegaconf import OmegaConf

    from lenet_exp.runtime.hydra_callbacks import check_no_earlier_sweep

    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "0" / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n"
    )
    (sweep / "0" / "lenet_exp.log").write_text("")
    grid = {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"}
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "sweeper": grid}})
    config.hydra.runtime = {"cwd": str(tmp_path)}
    with pytest.raises(UserError, match=r"holds the runs of an earlier sweep \(1 job folder\)"):
        check_no_earlier_sweep(config)


def test_a_job_killed_while_hydra_wrote_its_settings_holds_nothing_a_sweep_could_replace(tmp_path):
    """A study's worker killed as its job began: the job's .hydra/hydra.yaml half written, nothing else. Read as
    another sweep's job, it refused the study's next worker ("holds the runs of an earlier sweep")."""
    from omegaconf import OmegaConf

    from lenet_exp.runtime.hydra_callbacks import check_no_earlier_sweep

    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "0" / ".hydra" / "hydra.yaml").write_text("hydra:\n  sweeper:\n    _target_: [hydra_plugins.lenet_e")
    sweeper = {"_target_": "hydra_plugins.lenet_exp_optuna.sweeper.OptunaSweeper", "study_name": "lenet"}
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "sweeper": sweeper}})
    config.hydra.runtime = {"cwd": str(tmp_path)}
    check_no_earlier_sweep(config)  # not refused
    (sweep / "0" / "metrics.json").write_text("{}")  # a job that ran, its settings unreadable: still refused
    with pytest.raises(UserError, match=r"holds the runs of an earlier sweep \(1 job folder\)"):
        check_no_earlier_sweep(config)


@pytest.mark.slow  # two studies of one trial, 3 s
def test_a_relative_storage_means_the_folder_the_command_started_in_for_every_job(tmp_path, fake_data, monkeypatch):
    """sqlite:///study.db typed in one folder is that folder's file, for the sweep's check of its folder and for
    each job, also with hydra.job.chdir=true (the jobs then run in their own folders, where it opened empty
    databases: no trial reached its study, so none was pruned)."""
    import optuna

    import lenet_exp

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sweep = tmp_path / "study"
    study = ["hparams_search=lenet_optuna", "hydra.sweeper.n_trials=1", *ONE_EPOCH, "data.val_size=16"]
    study += [f"data.data_dir={fake_data}", f"hydra.sweep.dir={sweep}", "hydra.sweeper.storage=sqlite:///study.db"]
    monkeypatch.chdir(tmp_path / "a")
    lenet_exp.sweep(*study, "hydra.job.chdir=true")
    assert not list(sweep.rglob("study.db"))
    trials = optuna.load_study(study_name="lenet", storage=f"sqlite:///{tmp_path / 'a' / 'study.db'}").trials
    assert trials[0].intermediate_values == {1: pytest.approx(trials[0].value)}  # the job reported its epoch
    monkeypatch.chdir(tmp_path / "b")  # the same words from another folder: another file, another study
    with pytest.raises(UserError, match="holds the runs of an earlier sweep \\(1 job folder\\)"):
        lenet_exp.sweep(*study)
    assert not (tmp_path / "b" / "study.db").exists()


# A primary config of the user's own that picks lenet_exp's groups, as Hydra's docs write one, but not its Hydra
# settings (the callbacks that refuse a folder holding a run).
OWN_PRIMARY = """defaults:
  - data: fashion_mnist
  - model: lenet
  - trainer: auto
  - logger: tensorboard
  - callbacks: default
  - _self_
seed: 42
run_dir: ${hydra:runtime.output_dir}
ckpt_path: null
test_on: null
optimized_metric: null
threads: null
trusted_targets: []
steps_per_call: auto
"""


@pytest.mark.slow
def test_a_primary_config_of_ones_own_without_lenet_exps_hydra_settings_is_refused_before_hydra_writes(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "plain.yaml").write_text(OWN_PRIMARY)
    run = tmp_path / "earlier"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")  # an earlier run's stored settings
    own = ["-cd", str(tmp_path / "configs"), "-cn", "plain", *ONE_EPOCH, "trainer.limit_train_batches=1"]
    out = run_cli(*own, f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip() == (
        "error: the config plain leaves out lenet_exp's Hydra settings (hydra/default.yaml), whose checks keep a run "
        "from writing over another run's files; add - hydra: default to its defaults list, or build it on "
        "lenet_exp's config (defaults: [config, _self_])."
    )
    assert (run / ".hydra" / "config.yaml").read_text() == "seed: 1\n" and not (run / "lenet_exp.log").exists()
    # with them, or built on lenet_exp's config, the check lets it through (and the callbacks do theirs)
    from lenet_exp.__main__ import check_own_configs

    (tmp_path / "configs" / "with.yaml").write_text(OWN_PRIMARY.replace("  - _self_", "  - hydra: default\n  - _self_"))
    (tmp_path / "configs" / "built.yaml").write_text("defaults:\n  - config\n  - _self_\nseed: 3\n")
    for name in ("with", "built"):
        check_own_configs(["-cd", str(tmp_path / "configs"), "-cn", name, "-m", "seed=1,2"])
