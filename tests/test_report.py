"""lenet_exp.report: seeds averaged into one row per setting, failed jobs listed, a band plot, machines compared."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from conftest import ONE_EPOCH, compose_config, run_cli, run_main, write_fake_fashion_mnist

import lenet_exp
from lenet_exp import drawing
from lenet_exp.errors import UserError
from lenet_exp.report import main, write_report
from lenet_exp.train import train

pytestmark = pytest.mark.slow  # most tests here share one real sweep of nine jobs


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory) -> tuple[Path, object]:
    """One real sweep for the tests below: 3 seeds x batch sizes 0 (every job fails), 8 and 16, with a validation
    hold-out, run in this process (test_sweeps.py runs a sweep with a failing job as a command); and the report
    command's output on it, as a command from a terminal."""
    root = tmp_path_factory.mktemp("report")
    write_fake_fashion_mnist(root / "data")
    folder = root / "sweep"
    args = ["seed=1,2,3", "data.batch_size=0,8,16", "data.val_size=16", "trainer.max_epochs=2"]
    with pytest.raises(UserError, match="data.batch_size=0 must be a positive"):  # those jobs failed; the others ran
        lenet_exp.sweep(*ONE_EPOCH, f"data.data_dir={root / 'data'}", f"hydra.sweep.dir={folder}", *args)
    printed = run_cli(str(folder), module="lenet_exp.report")
    assert printed.returncode == 0, printed.stderr
    return folder, printed


def metrics_of(folder: Path, jobs: str) -> list[dict]:
    return [json.loads((folder / job / "metrics.json").read_text()) for job in jobs.split()]


def test_seeds_of_one_setting_are_one_row_with_mean_and_sample_std(seed_sweep):
    folder, _ = seed_sweep
    groups = [g for g in write_report(folder).groups if g["status"] == "ok"]
    assert len(groups) == 2 and {g["n"] for g in groups} == {3} and {g["seeds"] for g in groups} == {"1 2 3"}
    sizes = [o for g in groups for o in g["overrides"].split() if o.startswith("data.batch_size=")]
    assert sorted(sizes) == ["data.batch_size=16", "data.batch_size=8"]
    assert not any("seed=" in g["overrides"] for g in groups)
    for g in groups:
        runs = metrics_of(folder, g["jobs"])
        assert {m["seed"] for m in runs} == {1, 2, 3}
        for key in ("test_acc", "val_acc", "seconds_per_epoch"):
            values = [m[key] for m in runs]
            assert g[f"{key}_mean"] == pytest.approx(statistics.mean(values))
            assert g[f"{key}_std"] == pytest.approx(statistics.stdev(values))
        assert g["curve_tag"] == "val/acc" and len(g["curve_mean"]) == len(g["curve_std"]) == 2
    # Sorted by the validation metric, best first.
    assert groups[0]["val_acc_mean"] >= groups[1]["val_acc_mean"]


def test_report_lists_every_job_including_the_failed_one(seed_sweep):
    folder, printed = seed_sweep
    report = write_report(folder)
    assert [r["status"] for r in report.groups][:2] == ["ok", "ok"]
    failed = report.groups[2:]  # after the groups, one row each, never averaged
    assert len(failed) == 3 and sorted(r["seeds"] for r in failed) == [1, 2, 3]
    assert all(r["status"].startswith("failed: data.batch_size=0 must be a positive whole number") for r in failed)
    assert all(r.get("n") is None and r.get("test_acc_mean") is None for r in failed)
    assert "failed: data.batch_size=0" in printed.stdout
    assert "failed: data.batch_size=0" in (folder / "summary.csv").read_text()


def test_tables_files_and_plot(seed_sweep):
    folder, printed = seed_sweep
    with open(folder / "summary.csv") as f:
        jobs = list(csv.DictReader(f))
    assert len(jobs) == 9 and [j["job"] for j in jobs] == [str(k) for k in range(9)]
    assert list(jobs[0]) == [
        *("job", "overrides", "test_acc", "val_acc", "train_loss", "seconds_per_epoch", "status"),
        *("seed", "device", "machine", "best_epoch", "tested", "trial"),  # trial: a study's state, else empty
    ]
    assert sorted(j["seed"] for j in jobs) == sorted(["1", "2", "3"] * 3)
    finished = [j for j in jobs if j["status"] == "ok"]  # tested on the epoch with the best val/acc
    assert len(finished) == 6 and all(j["tested"] == "best" and j["best_epoch"] in ("1", "2") for j in finished)
    for job in finished:
        assert int(job["best_epoch"]) == json.loads((folder / job["job"] / "metrics.json").read_text())["best_epoch"]
    with open(folder / "summary_groups.csv") as f:
        groups = list(csv.DictReader(f))
    assert [g["n"] for g in groups] == ["3", "3", "", "", ""]
    md = (folder / "summary.md").read_text()
    assert md.count("(n=3)") == 2 * 4 and "## Jobs" in md  # four metrics in each of the two groups
    # The printed table is the grouped one: 2 groups and 3 failed jobs, not 9 jobs.
    table = [line for line in printed.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 5 and " ± " in table[1] and "(n=3)" in table[1]
    png = (folder / "summary.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20000


def fake_job(sweep: Path, number: int, overrides: list[str], metrics: dict | None = None, error: str = "") -> None:
    """A job folder as Hydra and train.py leave it, without training: .hydra/overrides.yaml and the outcome."""
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps({"seconds_per_epoch": 2.0, "test_acc": 0.7, **metrics}))
    if error:
        (job / "error.txt").write_text(error)


def test_groups_are_sorted_by_validation_accuracy_else_kept_in_job_order(tmp_path):
    for number, (lr, seed, val_acc) in enumerate([(1, 1, 0.5), (1, 2, 0.6), (2, 1, 0.9), (3, 1, 0.7), (3, 2, 0.8)]):
        fake_job(tmp_path, number, [f"seed={seed}", f"lr={lr}"], {"seed": seed, "val_acc": val_acc})
    fake_job(tmp_path, 5, ["seed=2", "lr=2"], error="loss is NaN")
    fake_job(tmp_path, 6, ["seed=3", "lr=2"])  # still running
    rows = write_report(tmp_path).groups
    assert [(r["overrides"], r["n"]) for r in rows[:3]] == [("lr=2", 1), ("lr=3", 2), ("lr=1", 2)]
    assert rows[0]["val_acc_std"] is None and rows[1]["val_acc_mean"] == pytest.approx(0.75)
    assert [(r["jobs"], r["status"][:10]) for r in rows[3:]] == [("5", "failed: lo"), ("6", "incomplete")]
    assert "| lr=2 | 1 | 2 | 0.7000 (n=1) | 0.9000 (n=1) |" in (tmp_path / "summary.md").read_text()

    book = tmp_path / "book"  # no validation hold-out: job order
    for number, (lr, test_acc) in enumerate([(1, 0.5), (2, 0.9), (3, 0.7)]):
        fake_job(book, number, [f"lr={lr}"], {"test_acc": test_acc})
    assert [r["overrides"] for r in write_report(book).groups] == ["lr=1", "lr=2", "lr=3"]


def test_seeds_run_with_other_threads_or_loggers_are_still_one_group(seed_sweep, tmp_path):
    real_settings = (seed_sweep[0] / "0" / ".hydra" / "hydra.yaml").read_text()  # as Hydra wrote it
    jobs = [["seed=1", "lr=1"], ["seed=2", "lr=1", "threads=1"], ["seed=3", "lr=1", "logger=csv"], ["seed=1", "lr=2"]]
    for number, overrides in enumerate(jobs):
        fake_job(tmp_path, number, overrides, {"seed": number, "val_acc": 0.5})
        (tmp_path / str(number) / ".hydra" / "hydra.yaml").write_text(real_settings)
    rows = write_report(tmp_path).groups
    assert [(r["overrides"], r["n"]) for r in rows] == [("lr=1", 3), ("lr=2", 1)]
    assert [job["overrides"] for job in write_report(tmp_path).jobs][1] == "seed=2 lr=1 threads=1"  # kept per job


def test_jobs_started_from_other_checkpoints_or_on_data_of_ones_own_elsewhere_are_other_groups(seed_sweep, tmp_path):
    """ckpt_path and data.data_dir are left out of a job's name, but another checkpoint starts from other weights,
    and another folder of files of one's own (data.verify_md5=false) is other data: the report averaged them as
    seeds of one setting (a folder of the published files, checked by their MD5s, is the same data)."""
    real_settings = (seed_sweep[0] / "0" / ".hydra" / "hydra.yaml").read_text()
    jobs = [["seed=1", "ckpt_path=a.ckpt"], ["seed=2", "ckpt_path=b.ckpt"], ["data.data_dir=x"], ["data.data_dir=y"]]
    for number, overrides in enumerate(jobs):
        fake_job(tmp_path, number, overrides, {"seed": number, "val_acc": 0.5})
        (tmp_path / str(number) / ".hydra" / "hydra.yaml").write_text(real_settings)
        own = {"data": {"verify_md5": number != 2 and number != 3}}
        (tmp_path / str(number) / ".hydra" / "config.yaml").write_text(yaml.safe_dump(own))
    assert [r["n"] for r in write_report(tmp_path).groups] == [1, 1, 1, 1]
    (tmp_path / "3" / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"verify_md5": True}}))
    (tmp_path / "2" / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"verify_md5": True}}))
    assert [r["n"] for r in write_report(tmp_path).groups] == [1, 1, 2]  # Fashion-MNIST in two folders


def test_a_studys_failed_and_unfinished_trials_are_named_so_and_a_grids_are_not(seed_sweep, tmp_path):
    """The trial column comes from each job's .hydra/hydra.yaml: lenet_exp's Optuna sweeper, or another."""
    from lenet_exp.report import summarize
    from lenet_exp.runtime.run_folder import OPTUNA_SWEEPER

    grid = (seed_sweep[0] / "0" / ".hydra" / "hydra.yaml").read_text()  # a job of batch size 0: it failed
    study = yaml.safe_load(grid)
    study["hydra"]["sweeper"] = {"_target_": OPTUNA_SWEEPER}
    for number, (settings, error) in enumerate([(study, True), (study, False), (grid, True), (grid, False)]):
        fake_job(tmp_path, number, [f"seed={number}"], None)
        text = settings if isinstance(settings, str) else yaml.safe_dump(settings)
        (tmp_path / str(number) / ".hydra" / "hydra.yaml").write_text(text)
        if error:
            (tmp_path / str(number) / "error.txt").write_text("data.batch_size=0 must be a positive whole number\n")
    rows = {r["job"]: (r["trial"], r["status"].split(" ")[0]) for r in summarize(tmp_path)}
    assert rows == {
        **{"0": ("FAIL", "failed:"), "1": ("RUNNING or killed", "incomplete")},
        **{"2": (None, "failed:"), "3": (None, "incomplete")},
    }


def test_curves_come_from_the_csv_file_of_a_job_run_without_tensorboard(tmp_path, fake_data, monkeypatch, seed_sweep):
    real_settings = (seed_sweep[0] / "0" / ".hydra" / "hydra.yaml").read_text()
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["logger=csv"])
    overrides = [*ONE_EPOCH, "trainer.max_epochs=2", "data.val_size=16", "logger=csv", f"data.data_dir={fake_data}"]
    train(compose_config(sweep / "0", overrides))
    with open(sweep / "0" / "csv" / "metrics.csv", newline="") as f:
        written = [float(row["val/acc"]) for row in csv.DictReader(f)]
    (job,) = write_report(sweep).jobs
    assert job["curve_tag"] == "val/acc" and job["curve"] == written and len(written) == 2
    # a second seed of the same settings run without any logger: a row in the table, no curve in the plot
    fake_job(sweep, 1, ["logger=none", "seed=2"], {"seed": 2, "val_acc": 0.5})
    for number in (0, 1):  # Hydra's settings as a sweep writes them, which name the keys that set no group apart
        (sweep / str(number) / ".hydra" / "hydra.yaml").write_text(real_settings)
    drawn = {}
    monkeypatch.setattr(drawing, "band_plot", lambda series, *args, **kwargs: drawn.update(series))
    (row,) = write_report(sweep).groups
    assert row["n"] == 2 and list(drawn) == ["(defaults) (n=1 of 2 jobs)"]  # the plot's mean is of one curve


def test_jobs_from_different_machines_bring_one_warning(tmp_path, capsys):
    cpu = {"device": "cpu", "cpu": "AMD EPYC 7B13", "cpu_cores": 2, "torch_threads": 2}
    gpu = {"device": "cuda", "cpu": "Intel Xeon", "cpu_cores": 16, "gpu": "NVIDIA H200", "gpu_count": 1}
    fake_job(tmp_path, 0, ["seed=1"], {"environment": cpu})
    fake_job(tmp_path, 1, ["seed=2"], {"environment": gpu})
    fake_job(tmp_path, 2, ["seed=3"], {})  # an older run: no environment recorded
    fake_job(tmp_path, 3, ["seed=4"], error="killed")
    main([str(tmp_path)])  # in this process: the command line itself is run on the real sweep above
    out = capsys.readouterr()
    warnings = [line for line in (out.out + out.err).splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: these runs come from different machines (AMD EPYC 7B13 x2 cpu, NVIDIA H200 cuda); "
        "compare seconds_per_epoch only within one machine."
    ]
    with open(tmp_path / "summary.csv") as f:
        assert [row["device"] for row in csv.DictReader(f)] == ["cpu", "cuda", "", ""]
    assert "warning: these runs come from different machines" in (tmp_path / "summary.md").read_text()

    def ran_on(job: str, environment: dict) -> None:
        (tmp_path / job / "metrics.json").write_text(
            json.dumps({"seconds_per_epoch": 2.0, "test_acc": 0.7, "environment": environment})
        )

    ran_on("1", cpu)
    report = write_report(tmp_path)
    assert [job["status"] for job in report.jobs][:2] == ["ok", "ok"] and report.warning is None
    # one model name, two kinds of CPU: with AVX-512 and without (the kernels torch ran, which runs now record)
    ran_on("0", {**cpu, "cpu_capability": "AVX512"})
    ran_on("1", {**cpu, "cpu_capability": "AVX2"})
    assert write_report(tmp_path).warning == (
        "warning: these runs come from different machines (AMD EPYC 7B13 x2 AVX512 cpu, AMD EPYC 7B13 x2 AVX2 cpu); "
        "compare seconds_per_epoch only within one machine."
    )


@pytest.mark.slow
def test_a_received_sweep_folder_cannot_put_this_machines_environment_into_the_report(tmp_path, monkeypatch):
    """A job's stored files are data: an interpolation in them is shown as written, never resolved."""
    monkeypatch.setenv("LENET_EXP_SECRET", "s3cret-value")
    fake_job(tmp_path, 0, ["seed=1", "lr=1"], {"seed": 1, "val_acc": 0.5})
    fake_job(tmp_path, 1, ["seed=2", "lr=1"])  # still running: its seed is read from its config
    (tmp_path / "1" / ".hydra" / "config.yaml").write_text("seed: ${oc.env:LENET_EXP_SECRET}\n")
    write_report(tmp_path)
    for name in ("summary.csv", "summary_groups.csv", "summary.md"):
        text = (tmp_path / name).read_text()
        assert "s3cret-value" not in text and "LENET_EXP_SECRET" in (tmp_path / "summary.csv").read_text(), name


def test_report_refuses_a_folder_that_is_not_a_sweep(tmp_path):
    out = run_main("lenet_exp.report", str(tmp_path))  # the command itself: seed_sweep and test_errors.py
    assert out.returncode == 1 and "holds no job folders" in out.stderr


@pytest.mark.parametrize("epochs", [1, 3, 20])
def test_the_plot_marks_whole_epochs_only(tmp_path, epochs):
    figure = drawing.band_plot({"a": ([0.5] * epochs, [0.0] * epochs)}, tmp_path / "p.png", "t", "acc")
    low, high = figure.axes[0].get_xlim()
    ticks = [t for t in figure.axes[0].get_xticks() if low <= t <= high]
    assert ticks and all(t == int(t) and 1 <= t <= epochs for t in ticks)


def secret(folder: Path) -> Path:
    """A file outside the sweep folder, which no summary may show."""
    path = folder / "secret.yaml"
    path.write_text("- password=hunter2\n")
    return path


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda job: (job / "metrics.json").write_text("{not json"), "0/metrics.json cannot be read (Expecting"),
        (
            lambda job: (job / "metrics.json").write_text(json.dumps({"test_acc": "0.9", "seconds_per_epoch": 1})),
            "metrics.json has test_acc='0.9', which should be a number",
        ),
        (lambda job: (job / "metrics.json").write_text(json.dumps({"val_acc": 0.9})), "metrics.json has no test_acc"),
        (
            lambda job: (job / "metrics.json").write_text(
                '{"test_acc": 0.9, "train_loss": NaN, "seconds_per_epoch": 1}'
            ),
            "metrics.json has train_loss=nan, which should be a number",
        ),
        (lambda job: (job / ".hydra" / "overrides.yaml").write_text("a: [b"), ".hydra/overrides.yaml cannot be read"),
        (
            lambda job: (
                (job / "tensorboard" / "x").mkdir(parents=True)
                or (job / "tensorboard" / "x" / "events.out.tfevents.1.host").write_bytes(bytes(range(256)) * 4)
            ),
            "its evaluation curve cannot be read (tensorboard/x holds event files with no readable events)",
        ),
        (
            lambda job: (job / "csv").mkdir() or (job / "csv" / "metrics.csv").write_text("epoch,val/acc\n0,high\n"),
            "its evaluation curve cannot be read (could not convert string to float",
        ),
        (  # a link to a file outside the sweep: its lines were copied into the summary
            lambda job: (
                (job / ".hydra" / "overrides.yaml").unlink()
                or (job / ".hydra" / "overrides.yaml").symlink_to(secret(job.parent.parent))
            ),
            ".hydra/overrides.yaml is a symbolic link, not a file the run wrote",
        ),
        (  # a link on the way: the job's .hydra folder, with the file outside the sweep
            lambda job: (
                shutil.rmtree(job / ".hydra")
                or (job / ".hydra").symlink_to(secret(job.parent.parent).parent / "outside", target_is_directory=True)
                or (job.parent.parent / "outside").mkdir()
                or (job.parent.parent / "outside" / "overrides.yaml").write_text("- password=hunter2\n")
            ),
            ".hydra is a symbolic link, not a file the run wrote",
        ),
        (  # a file cut short that is still YAML: its last override became a group of its own
            lambda job: (job / ".hydra" / "overrides.yaml").write_text("- seed=1\n- lr"),
            "overrides.yaml holds 'lr', which is no override (key=value): the file was cut short",
        ),
        (  # a pipe: the report waited for a writer for ever
            lambda job: (job / "metrics.json").unlink() or os.mkfifo(job / "metrics.json"),
            "0/metrics.json is not a plain file",
        ),
        (  # (in the job's settings, read to order the jobs, too)
            lambda job: os.mkfifo(job / ".hydra" / "hydra.yaml"),
            ".hydra/hydra.yaml is not a plain file",
        ),
    ],
    ids=[
        "bad json",
        "wrong type",
        "missing key",
        "nan",
        "bad overrides",
        "damaged events",
        "damaged csv",
        "link",
        "linked folder",
        "cut short",
        "pipe",
        "pipe of settings",
    ],
)
def test_a_damaged_job_is_one_row_and_the_others_are_still_reported(tmp_path, damage, reason):
    tmp_path = tmp_path / "sweep"
    for number, seed in enumerate([1, 2, 3]):
        fake_job(tmp_path, number, [f"seed={seed}", "lr=1"], {"seed": seed, "val_acc": 0.5 + seed / 10})
    damage(tmp_path / "0")
    # through the command's main in this process (seed_sweep runs it from a terminal, test_errors.py its errors)
    out = run_main("lenet_exp.report", str(tmp_path))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: 1 job folder(s) are damaged") and reason in out.stderr, out.stderr
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["status"].startswith("damaged: ") and reason in rows[0]["status"]
    assert [row["status"] for row in rows[1:]] == ["ok", "ok"]
    groups = write_report(tmp_path).groups
    assert (groups[0]["overrides"], groups[0]["n"], groups[0]["val_acc_mean"]) == ("lr=1", 2, pytest.approx(0.75))
    assert groups[1]["status"].startswith("damaged: ")
    if "overrides" not in reason and ".hydra is" not in reason:  # named by its overrides where they can be read
        assert groups[1]["overrides"] == "seed=1 lr=1", groups[1]
    assert (tmp_path / "summary.png").read_bytes().startswith(b"\x89PNG") and "damaged: " in (
        tmp_path / "summary.md"
    ).read_text()
    assert not any("hunter2" in (tmp_path / name).read_text() for name in ("summary.md", "summary.csv"))


def test_a_read_only_sweep_folder_still_prints_its_table_then_says_why_no_file_was_written(tmp_path):
    """A sweep folder on a read-only mount (a received copy, an archive): the report ended in a double traceback
    from its first file, and printed nothing."""
    import os
    import shutil
    import subprocess

    sweep, mount = tmp_path / "sweep", tmp_path / "read-only"
    for number, seed in enumerate([1, 2]):
        fake_job(sweep, number, [f"seed={seed}", "lr=1"], {"seed": seed, "val_acc": 0.5 + seed / 10})
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a read-only bind mount needs root")
    bound = subprocess.run(["mount", "--bind", "-o", "ro", str(sweep), str(mount)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"a read-only bind mount is not allowed here: {bound.stderr.strip()}")
    try:
        out = run_main("lenet_exp.report", str(mount))
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "| lr=1 | 1 2 | 0 1 |" in out.stdout and "wrote " not in out.stdout, out.stdout
    assert out.stderr.strip() == (
        f"error: summary.csv, summary_groups.csv, summary.md and summary.png could not be written in {mount} (the file "
        "system is read-only): the table above is the report; copy the folder to a writable place and report the "
        "copy for its files."
    )
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1"]


def test_a_reader_that_stops_early_still_leaves_the_damaged_jobs_sentence(tmp_path):
    """``report <sweep> | head -1``: the reader gone, the command ended with 141 before it said that a job folder
    is damaged, as a sweep with every job intact would end."""
    import subprocess
    import sys

    for number, seed in enumerate([1, 2]):
        fake_job(tmp_path, number, [f"seed={seed}", "lr=1"], {"seed": seed, "val_acc": 0.5 + seed / 10})
    (tmp_path / "1" / "metrics.json").write_text("{not json")
    process = subprocess.Popen(
        [sys.executable, "-m", "lenet_exp.report", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # the reader is gone before the table is printed
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith("error: 1 job folder(s) are damaged and left out of the groups: job 1 (damaged: ")


def test_job_folders_named_by_their_overrides_keep_the_sweeps_job_order(tmp_path):
    """hydra.sweep.subdir=${hydra.job.override_dirname} names job folders by their overrides: their order was the
    names' (epoch before step), not the jobs' (as in the book's protocol the rows keep it)."""
    for number, interval in enumerate(["step", "epoch"]):
        job = tmp_path / f"logging_interval={interval}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"logging_interval={interval}"]))
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": number}}}))
        (job / "metrics.json").write_text(json.dumps({"seconds_per_epoch": 2.0, "test_acc": 0.7}))
    report = write_report(tmp_path)
    assert [row["overrides"] for row in report.groups] == ["logging_interval=step", "logging_interval=epoch"]
    assert [job["job"] for job in report.jobs] == ["logging_interval=step", "logging_interval=epoch"]
