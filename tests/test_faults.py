"""Faults of the machine during a run: a full disk, a read-only folder, a DDP rank that dies, a
SIGKILL at any moment. Each ends in one sentence (or none, for SIGKILL), and what was written
stays loadable and resumes to the same result as an uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import (
    ONE_EPOCH,
    ROOT,
    TIMING,
    TINY,
    compose_config,
    load_checkpoint,
    run_cli,
    run_main,
    write_fake_fashion_mnist,
)
from pytorch_lightning.callbacks import Callback

from lenet_exp.errors import UserError
from lenet_exp.resume import resume
from lenet_exp.runtime import atomic
from lenet_exp.train import train


def same(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in (*TIMING, "environment")}


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.ENOSPC, "no space left on the device"), (errno.EROFS, "the file system is read-only")],
)
def test_a_failed_checkpoint_write_is_one_sentence_and_the_last_checkpoint_still_resumes(
    tmp_path, fake_data, monkeypatch, code, reason
):
    overrides = [*TINY, "trainer.max_epochs=3", f"data.data_dir={fake_data}"]
    full = train(compose_config(tmp_path / "full", overrides))
    save, calls = atomic.torch.save, []

    def fails_on_the_second(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"PK half a checkpoint")
            raise OSError(code, os.strerror(code))
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(atomic.torch, "save", fails_on_the_second)
    run = tmp_path / "run"
    with pytest.raises(UserError) as err:
        train(compose_config(run, overrides))
    message = str(err.value)
    assert message == (
        f"writing into {run} failed ({reason}); free some space or make the folder writable; "
        f"{run}/checkpoints/last.ckpt holds the last completed epoch; resume with: python -m lenet_exp.resume {run}"
    )
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0  # epoch 1, intact
    assert not list(run.rglob("*.tmp")) and not (run / "metrics.json").exists()
    monkeypatch.undo()
    resumed = train(compose_config(run, [*overrides, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"]))
    assert same(resumed) == same(full)
    assert_same_weights(run, tmp_path / "full")


def test_a_failed_metrics_write_is_one_sentence(tmp_path, fake_data, monkeypatch):
    import lenet_exp.train as train_module

    def read_only(path, record):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(train_module, "write_json", read_only)
    with pytest.raises(UserError, match=r"writing into .* failed \(the file system is read-only\)"):
        train(compose_config(tmp_path, [*ONE_EPOCH, f"data.data_dir={fake_data}"]))


class AllocatesTooMuch(Callback):
    """Asks torch's CPU allocator for an exabyte as epoch 2 starts: the allocator's own failure, as a batch size
    too large for the machine (or a lower ``ulimit -v``) meets it."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            torch.empty(1 << 60, dtype=torch.uint8)


@pytest.mark.slow
def test_memory_running_out_is_one_sentence_naming_what_to_lower_and_what_is_kept(tmp_path, fake_data):
    """It was torch's RuntimeError (``DefaultCPUAllocator: can't allocate memory``) and a hundred lines of
    traceback inside Hydra's report."""
    run = tmp_path / "run"
    overrides = [*TINY, "trainer.max_epochs=2", f"data.data_dir={fake_data}"]
    with pytest.raises(UserError) as err:
        train(compose_config(run, [*overrides, "+callbacks.oom._target_=test_faults.AllocatesTooMuch"]))
    assert str(err.value) == (
        "the run ran out of memory (it asked for 1152921504606846976 bytes more); lower data.batch_size or "
        f"data.eval_batch_size, or free the memory other processes hold; {run}/checkpoints/last.ckpt holds the last "
        f"completed epoch; resume with: python -m lenet_exp.resume {run} trust=test_faults.AllocatesTooMuch"
    )
    assert load_checkpoint(run / "checkpoints" / "last.ckpt", ["test_faults.AllocatesTooMuch"])["epoch"] == 0


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs in the test's folder: room for one checkpoint, not for the next one beside it."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if out.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here: {out.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(path: Path) -> None:
    """Write ``path`` until its file system has no room left."""
    with open(path, "wb", buffering=0) as f:  # unbuffered: no write is left for the close
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err


@pytest.mark.slow
def test_a_really_full_disk_mid_run_is_one_sentence_and_the_run_resumes_elsewhere(tmp_path, fake_data, small_tmpfs):
    args = [*TINY, "trainer.max_epochs=3", f"data.data_dir={fake_data}", "logger=none"]
    run = small_tmpfs / "run"
    out = run_cli(*args, f"hydra.run.dir={run}")
    output = out.stdout + out.stderr
    assert out.returncode == 1 and "Traceback" not in output, output
    assert f"error: writing into {run} failed (" in output and "python -m lenet_exp.resume" in output, output
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] >= 0  # what was saved still loads
    assert not (run / "metrics.json").exists()
    fill(small_tmpfs / "fill")  # resumed where there is no room at all: the sentence alone, no thread's traceback
    again = run_main("lenet_exp.resume", str(run))  # (TensorBoard's writer thread, the log file's flush)
    said = again.stdout + again.stderr
    assert again.returncode == 1 and "Traceback" not in said and "Logging error" not in said, said[-3000:]
    assert f"error: writing into {run} failed (no space left on the device)" in again.stderr
    moved = tmp_path / "moved"  # where there is room: copy the folder and finish it there
    shutil.copytree(run, moved, ignore=shutil.ignore_patterns("*.tmp"))
    resumed = run_main("lenet_exp.resume", str(moved))  # in this process, as the command runs
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    full = tmp_path / "full"  # the uninterrupted run, in this process
    train(compose_config(full, args))
    assert same(json.loads((moved / "metrics.json").read_text())) == same(
        json.loads((full / "metrics.json").read_text())
    )
    assert_same_weights(moved, full)


@pytest.fixture
def read_only(tmp_path):
    """``read_only(folder)``: ``folder`` seen read-only at a path of its own (a bind mount), as on a read-only share;
    root can write anywhere else, permissions or not."""
    mounts = []

    def mount(folder: Path) -> Path:
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("a read-only bind mount needs root")
        view = tmp_path / f"read-only-{len(mounts)}"
        view.mkdir()
        for command in (["mount", "--bind", str(folder), str(view)], ["mount", "-o", "remount,ro,bind", str(view)]):
            out = subprocess.run(command, capture_output=True)
            if out.returncode != 0:
                subprocess.run(["umount", "-l", str(view)], capture_output=True)
                pytest.skip(f"a read-only bind mount is not allowed here: {out.stderr.decode().strip()}")
        mounts.append(view)
        return view

    yield mount
    for view in mounts:
        subprocess.run(["umount", "-l", str(view)], capture_output=True)


@pytest.mark.slow
def test_a_read_only_run_folder_is_one_sentence_for_eval_and_resume_and_eval_still_says_its_result(
    tmp_path, fake_data, read_only
):
    """eval ran the whole test, then lost its result to an OSError traceback when evaluations.jsonl could not be
    written; resume failed on its lock file with a traceback."""
    run = tmp_path / "run"
    assert run_main("lenet_exp", *ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.run.dir={run}").returncode == 0
    (run / "metrics.json").unlink()  # stopped before its end: there is something to resume
    view = read_only(run)
    evaluated = run_main("lenet_exp.eval", f"ckpt_path={view / 'checkpoints' / 'last.ckpt'}")
    output = evaluated.stdout + evaluated.stderr
    assert evaluated.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert (
        "test acc 0." in output
        and f"error: the result above was not recorded in {view}/evaluations.jsonl (the file" in output
    )
    resumed = run_main("lenet_exp.resume", str(view))
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    assert f"error: {view} cannot be written (the file system is read-only)" in resumed.stderr


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace") and int(cmdline.parent.name) != os.getpid():
                found.append(int(cmdline.parent.name))
        except (OSError, ValueError):
            pass
    return found


def start_lenet_exp(args: list[str]) -> subprocess.Popen:
    """``python -m lenet_exp args`` from the repository root, its output (stdout and stderr) unbuffered in a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "lenet_exp", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.slow
def test_when_a_ddp_rank_is_killed_every_rank_stops_naming_it_and_the_run_resumes(tmp_path):
    data = tmp_path / "data"
    write_fake_fashion_mnist(data, n_train=512, n_test=64)  # 32 steps a rank an epoch: killed during epoch 2
    run = tmp_path / "run"
    args = ["trainer=ddp_cpu", "data.verify_md5=false", "data.batch_size=8", "trainer.max_epochs=3"]
    proc = start_lenet_exp([*args, f"data.data_dir={data}", f"hydra.run.dir={run}"])
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 1,"):
            break
    rank1 = children(proc.pid)
    assert rank1, "".join(seen)
    os.kill(rank1[0], signal.SIGKILL)
    started = time.monotonic()
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert time.monotonic() - started < 60
    assert proc.returncode == 1 and "Traceback" not in output, output
    assert f"error: DDP rank 1 (PID {rank1[0]}) was killed by signal 9" in output
    time.sleep(1)
    assert not processes_mentioning(str(run)), "a rank was left behind"
    resumed = run_cli(str(run), module="lenet_exp.resume", timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3


@pytest.mark.slow
def test_lightnings_own_watcher_of_the_ranks_is_ended_so_it_kills_no_run_before_the_dead_rank_is_named():
    """Lightning watches the ranks it started too, every 5 s, and on a death SIGKILLs every process, the run's
    own included: RankWatch ends that watcher (else it would win the race against a collective that hangs, and
    the run would end unexplained, as the test above once saw on a loaded machine)."""
    from lightning_fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

    from lenet_exp.runtime.distributed import end_lightnings_watcher

    run, rank = subprocess.Popen(["sleep", "60"]), subprocess.Popen(["sh", "-c", "exit 3"])  # the run; a rank that died
    try:
        rank.wait()
        watcher = _ChildProcessObserver(main_pid=run.pid, child_processes=[rank], sleep_period=0.3)
        watcher.start()
        end_lightnings_watcher()
        watcher.join(timeout=5)
        assert not watcher.is_alive()  # it ended
        with pytest.raises(subprocess.TimeoutExpired):
            run.wait(timeout=1)  # and killed nothing
    finally:
        run.kill()
        run.wait()


def start_until_first_line(args: list[str]) -> tuple[subprocess.Popen, float]:
    """Start ``python -m lenet_exp args``; return it once it printed its first line (Lightning's "GPU
    available", after the imports and after Hydra wrote the run folder), with the seconds that took."""
    started = time.monotonic()
    proc = start_lenet_exp(args)
    proc.stdout.readline()
    return proc, time.monotonic() - started


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_a_folder_that_resumes_to_the_uninterrupted_result(tmp_path):
    data = tmp_path / "data"
    write_fake_fashion_mnist(data, n_train=512, n_test=128)
    args = [*TINY, "trainer.max_epochs=3", f"data.data_dir={data}", "logger=none"]
    full = tmp_path / "full"  # the uninterrupted run, in this process: the result, and how long training takes
    started = time.monotonic()
    train(compose_config(full, args))
    training = time.monotonic() - started  # epochs, checkpoints, the test
    expected = same(json.loads((full / "metrics.json").read_text()))
    # Three kills spread over training, which is where files are written (early, mid-way, late: each epoch
    # writes the same files), each timed from the process's first line (Lightning's "GPU available", after
    # the imports and after Hydra wrote the run folder) so that slow imports do not shift it; then one during
    # start-up (the imports), at half the time the others took to their first line.
    moments = [("training", training * f) for f in (0.15, 0.5, 0.85)] + [("start-up", None)]
    start_ups = []
    for i, (phase, moment) in enumerate(moments):
        run = tmp_path / f"killed-{i}"
        if phase == "start-up":
            moment = min(start_ups) / 2
            command = [sys.executable, "-m", "lenet_exp", *args, f"hydra.run.dir={run}"]
            proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            proc, start_up = start_until_first_line([*args, f"hydra.run.dir={run}"])
            start_ups.append(start_up)
        time.sleep(moment)
        proc.kill()
        proc.communicate()
        if not (run / ".hydra" / "config.yaml").is_file():
            assert phase == "start-up", "the run folder is written before training starts"
            continue  # killed before Hydra wrote anything: there is no run to resume, nothing to lose
        resume(run)  # in this process: the same code as python -m lenet_exp.resume, without its start-up
        where = f"killed {moment:.2f} s into {phase}"
        assert same(json.loads((run / "metrics.json").read_text())) == expected, where
        assert_same_weights(run, full)


@pytest.mark.slow  # an eval of a few seconds: make test runs it, make test-fast does not
def test_ctrl_c_during_eval_exits_130_and_records_nothing(two_epochs_run, tmp_path, monkeypatch):
    """Lightning answers Ctrl-C in the test loop with its own line and exit status 1; eval says what was kept and
    exits 130, as training does. The interrupt is raised where Ctrl-C lands: inside the loop's test step."""
    from lenet_exp.classifier import Classifier

    run = tmp_path / "run"
    shutil.copytree(two_epochs_run[0], run)

    def interrupted(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(Classifier, "test_step", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    try:
        out = run_main("lenet_exp.eval", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "accelerator=cpu")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C once it has answered one
    assert out.returncode == 130, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last == f"interrupted before the test ended; nothing was recorded in {run / 'evaluations.jsonl'}"
    assert not (run / "evaluations.jsonl").exists()


@pytest.mark.slow
def test_a_command_started_with_stderr_closed_runs_and_resumes(tmp_path, fake_data):
    """``2>&-`` (a service or cron line that closes stderr): Python's sys.stderr is None, and the progress bar's
    check of it ended the run and resume in a traceback that nobody saw (Hydra's report failed in turn)."""

    def closed_stderr(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", *args]
        return subprocess.run(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(2))

    run = tmp_path / "run"
    trained = closed_stderr("lenet_exp", *ONE_EPOCH, f"data.data_dir={fake_data}", f"hydra.run.dir={run}")
    assert trained.returncode == 0 and "Traceback" not in trained.stdout, trained.stdout[-3000:]
    assert "epoch 1, loss" in trained.stdout and (run / "metrics.json").is_file()
    (run / "metrics.json").unlink()  # as if stopped before its final test's record
    resumed = closed_stderr("lenet_exp.resume", str(run))
    assert resumed.returncode == 0 and "Traceback" not in resumed.stdout, resumed.stdout[-3000:]
    assert (run / "metrics.json").is_file()


def stopped_run(tmp_path: Path, fake_data: Path, *overrides: str) -> Path:
    """A tiny run whose metrics.json is removed, as if it stopped before its end: resume has its final test to do."""
    run = tmp_path / "run"
    made = run_main("lenet_exp", *ONE_EPOCH, f"data.data_dir={fake_data}", *overrides, f"hydra.run.dir={run}")
    assert made.returncode == 0, made.stderr
    (run / "metrics.json").unlink()
    return run


@pytest.mark.slow
def test_a_folder_where_the_run_writes_a_file_is_one_sentence_naming_it_and_what_to_do(tmp_path, fake_data):
    """A folder at checkpoints/last.ckpt (a copy gone wrong): the resumed run's first checkpoint ended in
    IsADirectoryError's traceback."""
    run = stopped_run(tmp_path, fake_data, "logger=none")
    (run / "checkpoints" / "last.ckpt").unlink()
    (run / "checkpoints" / "last.ckpt").mkdir()
    out = run_main("lenet_exp.resume", str(run))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    said = f"error: writing into {run} failed (a folder is where a file belongs: {run / 'checkpoints' / 'last.ckpt'})"
    assert f"{said}; move what is in the way out of the folder;" in out.stderr, out.stderr
    assert (run / "checkpoints" / "last.ckpt").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["checkpoints", "csv", "tensorboard"])
def test_a_file_where_the_run_writes_a_folder_is_one_sentence_naming_it_and_what_to_do(tmp_path, fake_data, folder):
    """A file at checkpoints/, csv/ or tensorboard/ (a copy gone wrong): resume ended in FileExistsError's traceback,
    the run's checkpoint and CSV writers' after training the epochs, TensorBoard's before."""
    run = stopped_run(tmp_path, fake_data, "logger=[tensorboard,csv]")
    shutil.rmtree(run / folder)
    (run / folder).write_text("in the way\n")
    out = run_main("lenet_exp.resume", str(run))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    said = f"error: writing into {run} failed (a file is where a folder belongs: {run / folder})"
    assert f"{said}; move what is in the way out of the folder;" in out.stderr, out.stderr
    assert (run / folder).read_text() == "in the way\n"


@pytest.mark.slow
def test_a_folder_where_eval_records_its_result_is_one_sentence_saying_to_move_it(tmp_path, fake_data):
    """A folder at evaluations.jsonl: eval said its result, then told to make the folder writable or free space."""
    run = stopped_run(tmp_path, fake_data, "logger=none")
    (run / "evaluations.jsonl").mkdir()
    evaluated = run_main("lenet_exp.eval", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    output = evaluated.stdout + evaluated.stderr
    assert evaluated.returncode == 1 and "Traceback" not in output and "test acc 0." in output, output[-3000:]
    record = run / "evaluations.jsonl"
    assert (
        f"error: the result above was not recorded in {record} (a folder is where a file belongs: {record}); move "
        "what is in the way out of the folder to keep it there." in output
    ), output[-3000:]
    assert record.is_dir()


@pytest.mark.slow
def test_a_log_file_that_resume_cannot_append_to_is_one_sentence_before_anything_changes(tmp_path, fake_data):
    """A folder at lenet_exp.log (or the file made immutable): resume ended in IsADirectoryError's (or
    PermissionError's) traceback, from the handler that appends the resumed run's lines."""
    run = stopped_run(tmp_path, fake_data, "logger=none")
    (run / "lenet_exp.log").unlink()
    (run / "lenet_exp.log").mkdir()
    before = {path: path.stat().st_mtime_ns for path in run.rglob("*") if path.name != ".lock"}
    out = run_main("lenet_exp.resume", str(run))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip() == (
        f"error: {run / 'lenet_exp.log'} cannot be appended to (a folder is where a file belongs: "
        f"{run / 'lenet_exp.log'}), and resume keeps the run's log there; move what is in the way out of the folder, "
        f"then resume again (nothing in {run} was changed)."
    )
    assert {path: path.stat().st_mtime_ns for path in run.rglob("*") if path.name != ".lock"} == before
