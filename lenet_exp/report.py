"""``python -m lenet_exp.report <sweep folder>``: a sweep's results, seeds averaged, in tables and one plot.

Jobs whose overrides differ only in ``seed`` form a group, shown as one row with the mean ± sample
standard deviation (n) of each metric. Overrides that Hydra leaves out of a job's name (where a run
is recorded or how many threads it used: conf/hydra/default.yaml) do not part a group either.
Writes into the sweep folder:

- ``summary.csv``: one row per job, as it finished (seed, machine, and the epoch and weights tested);
- ``summary_groups.csv``: one row per group, then one per failed or unfinished job;
- ``summary.md``: the grouped table, then the per-job one;
- ``summary.png``: each group's mean evaluation accuracy per epoch, in a band of ± one std (from the
  jobs' TensorBoard events, or their CSV files with ``logger=csv``).

Groups are sorted by mean val_acc, best first, when the jobs held out a validation set; otherwise they
keep job order. A failed, unfinished, damaged or pruned job is never averaged in: it is a row of its own, after
the groups. In an Optuna study's folder a column ``trial`` gives each trial's state (COMPLETE, PRUNED, FAIL),
the epochs it ran and those pruning saved, and a last line sums them up. A damaged job (files that are not
what a run writes: bad JSON or YAML, values of the wrong type, no test_acc, unreadable event files or CSV) is
the row ``damaged: <reason>``; the files are still written for the others, and the command exits with status 1.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenet_exp.errors import UserError, exit_on_user_error, fail, first_line
from lenet_exp.runtime.cli import answer_help, output_read_to_the_end
from lenet_exp.runtime.run_folder import (
    EVENT_FILES,
    MULTIRUN,
    OPTUNA_SWEEPER,
    REPORT_GROUPS,
    REPORT_JOBS,
    REPORT_PLOT,
    REPORT_TABLES,
    SUMMARY,
    TENSORBOARD,
    as_written,
    config_file,
    csv_metrics_file,
    error_file,
    hydra_settings_file,
    job_folders,
    metrics_file,
    overrides_file,
    value_at,
)
from lenet_exp.runtime.writes import WRITE_ERRORS, atomic_write

METRICS = list(SUMMARY)
# New columns go at the end, so that scripts reading the older summary.csv by position still work.
JOB_COLUMNS = ["job", "overrides", *METRICS, "status", "seed", "device", "machine", "best_epoch", "tested", "trial"]
GROUP_COLUMNS = [
    *["overrides", "n", "seeds", "jobs", *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")], "status", "trial"]
]
FILES = f"{REPORT_JOBS}, {REPORT_GROUPS}, {REPORT_TABLES} and {REPORT_PLOT}"


@dataclass
class Report:
    jobs: list[dict[str, Any]]  # one per job folder, in job order
    groups: list[dict[str, Any]]  # one per group of finished jobs, sorted; then each failed or unfinished job
    warning: str | None  # set when the finished jobs ran on different machines
    unwritten: str | None = None  # why the summary files could not be written (a read-only or full folder)


def eval_curve(job: Path, epochs: int | None) -> tuple[str, list[float]]:
    """The per-epoch evaluation accuracy (val/acc, or test/acc in the book's protocol) of a job, from its
    TensorBoard events, else from its CSV file (``logger=csv``); none with ``logger=none``.

    In the book's protocol the final test logs test/acc once more after the last epoch; only the
    first ``epochs`` points are the per-epoch curve.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for folder in sorted({plain_file(p, job).parent for p in (job / TENSORBOARD).rglob(EVENT_FILES)}):
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        events.Reload()
        try:
            events.FirstEventTimestamp()  # every event file TensorBoard writes starts with one
        except ValueError:
            raise ValueError(f"{folder.relative_to(job)} holds event files with no readable events") from None
        tags = events.Tags()["scalars"]
        for tag in ("val/acc", "test/acc"):
            if tag in tags:
                values = [event.value for event in sorted(events.Scalars(tag), key=lambda e: (e.step, e.wall_time))]
                return tag, values[:epochs] if epochs else values
    table = csv_metrics_file(job)  # one row per epoch, by epoch (the final test is not in it)
    if plain_file(table, job).is_file():
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
        for tag in ("val/acc", "test/acc"):
            values = [float(row[tag]) for row in rows if row.get(tag)]
            if values:
                return tag, values[:epochs] if epochs else values
    return "", []


def key(override: str) -> str:
    """The config key a Hydra override sets (``seed`` of ``seed=1``, ``+seed=1``, ``++seed=1``)."""
    return override.split("=", 1)[0].lstrip("+~")


def unnamed_keys(settings: Any) -> set[str]:
    """The keys Hydra left out of the job's name (``hydra.job.config.override_dirname.exclude_keys`` of the
    job's ``.hydra/hydra.yaml``, read)."""
    keys = value_at(settings, "hydra", "job", "config", "override_dirname", "exclude_keys")
    return {k for k in keys if isinstance(k, str)} if isinstance(keys, list) else set()


def machine(environment: dict[str, Any]) -> str:
    """What a run ran on, in words (``NVIDIA H200 cuda``, ``AMD EPYC 7B13 x2 AVX512 cpu``); empty for older runs.

    On a CPU the core count and the vector kernels torch used are part of it: the same model with fewer cores,
    or without AVX-512, is a slower machine (runs of earlier versions did not record the kernels).
    """
    if not environment:
        return ""
    if environment.get("device") == "cuda":
        return f"{environment.get('gpu') or 'unknown GPU'} cuda"
    cores, kernels = environment.get("cpu_cores"), environment.get("cpu_capability")
    return " ".join(filter(None, [environment.get("cpu") or "unknown CPU", cores and f"x{cores}", kernels, "cpu"]))


class Damaged(Exception):
    """A job folder whose files cannot be read as a run writes them; the message says which and why."""


def plain_file(path: Path, job: Path) -> Path:
    """``path``, a plain file in the folder of ``job``; a link on the way to it (whose file may lie outside the
    sweep, and would be copied into its summary) or a pipe (which would wait for a writer for ever) is a damaged
    job's."""
    for each in (path, *path.parents):
        if each == job:
            break
        if each.is_symlink():
            raise Damaged(f"{each.relative_to(job)} is a symbolic link, not a file the run wrote")
    if path.exists() and not path.is_file():
        raise Damaged(f"{path.parent.name}/{path.name} is not a plain file")
    return path


def present(path: Path) -> bool:
    """Whether anything is at ``path``: a file, or what ``read`` then calls damaged (a link, a pipe, a folder)."""
    return path.is_symlink() or path.exists()


def read(path: Path, parse: Any, job: Path) -> Any:
    """``parse(path)`` of a file of ``job``; a file that cannot be read or parsed makes the job damaged."""
    plain_file(path, job)
    try:
        return parse(path)
    except Exception as err:  # bad bytes, bad JSON/YAML, unreadable events: whatever the file makes the parser do
        raise Damaged(f"{path.parent.name}/{path.name} cannot be read ({first_line(err)})") from err


def number(value: Any) -> bool:
    """A finite number (JSON's NaN and Infinity, which Python reads, are in no finished run's metrics.json)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


# What a finished job's metrics.json must hold: key -> (test, what it should be); None is allowed where not required.
METRIC_TYPES = {
    **{metric: (number, "a number") for metric in METRICS},
    "best_epoch": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "epochs": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "tested": (lambda v: isinstance(v, str), "best or last"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "environment": (lambda v: isinstance(v, dict), "a mapping"),
    "trial": (lambda v: isinstance(v, dict) and whole_or_none(v.get("pruned_after")), "a trial record"),
}
REQUIRED = ("test_acc",)  # every finished run records its test accuracy


def checked_metrics(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        raise Damaged("metrics.json holds no mapping of metrics")
    for key in REQUIRED:
        if key not in metrics:
            raise Damaged(f"metrics.json has no {key}")
    for key, (test, what) in METRIC_TYPES.items():
        if metrics.get(key) is not None and not test(metrics[key]):
            raise Damaged(f"metrics.json has {key}={metrics[key]!r}, which should be {what}")
    return metrics


def summarize_job(job: Path) -> dict[str, Any]:
    """The row of one job folder: its overrides, seed, metrics, machine, status and evaluation curve."""
    overrides = read(overrides_file(job), as_written, job)
    if not isinstance(overrides, list):
        raise Damaged("overrides.yaml holds no list of overrides")
    overrides = [str(o) for o in overrides]
    if cut := next((o for o in overrides if "=" not in o and not o.startswith("~")), None):  # (~key removes one)
        raise Damaged(f"overrides.yaml holds {cut!r}, which is no override (key=value): the file was cut short")
    stored = read(config_file(job), as_written, job) if present(config_file(job)) else {}
    seed = value_at(stored, "seed")
    row: dict[str, Any] = {"job": job.name, "overrides": " ".join(overrides), "seed": seed}
    settings = read(hydra_settings_file(job), as_written, job) if present(hydra_settings_file(job)) else {}
    in_study = value_at(settings, "hydra", "sweeper", "_target_") == OPTUNA_SWEEPER  # a trial of lenet_exp's sweeper
    ignored = {"seed", *unnamed_keys(settings)}  # keys that do not set a group apart
    ignored.discard("ckpt_path")  # the weights a run starts from: left out of its name, not out of its result
    if value_at(stored, "data", "verify_md5") is False:  # files of one's own: another folder is other data
        ignored.discard("data.data_dir")
    row["group_overrides"] = [o for o in overrides if key(o) not in ignored]
    row["group"] = " ".join(row["group_overrides"])
    metrics = {}
    if present(metrics_file(job)):
        metrics = checked_metrics(read(metrics_file(job), lambda p: json.loads(p.read_text()), job))
    pruned_after = (metrics.get("trial") or {}).get("pruned_after")
    if pruned_after:  # a trial of a study, stopped by its pruner: its metrics are shown, never averaged in
        max_epochs = value_at(stored, "trainer", "max_epochs")
        saved = max_epochs - pruned_after if isinstance(max_epochs, int) else None
        row.update({key: metrics.get(key) for key in (*METRICS, "best_epoch", "tested")})
        row["status"] = f"pruned after epoch {pruned_after}" + (f" of {max_epochs}" if saved is not None else "")
        ran = f"{pruned_after} epoch{'s' * (pruned_after != 1)}"
        row["trial"], row["epochs_saved"] = f"PRUNED ({ran}, {saved} saved)", saved
    elif metrics:
        row.update({key: metrics.get(key) for key in (*METRICS, "best_epoch", "tested")})
        row["seed"] = metrics.get("seed", seed)
        environment = metrics.get("environment") or {}  # runs before it was recorded have none
        row["device"], row["machine"] = environment.get("device"), machine(environment)
        row["status"] = "ok"
        row["trial"] = f"COMPLETE ({metrics.get('epochs')} epochs)" if metrics.get("trial") else None
    elif present(error_file(job)):
        row["status"] = "failed: " + read(error_file(job), Path.read_text, job).strip()
        row["trial"] = "FAIL" if in_study else None
    else:
        row["status"] = "incomplete (no metrics.json and no error.txt: still running, or killed)"
        row["trial"] = "RUNNING or killed" if in_study else None
    try:
        row["curve_tag"], row["curve"] = eval_curve(job, metrics.get("epochs"))
    except Exception as err:  # damaged event files or CSV: the curve cannot be trusted
        raise Damaged(f"its evaluation curve cannot be read ({first_line(err)})") from err
    return row


def summarize(sweep: Path) -> list[dict[str, Any]]:
    """One row per job folder; a damaged job is a row ``damaged: <reason>``, never averaged in."""
    rows = []
    for job in job_folders(sweep):
        try:
            rows.append({**summarize_job(job), "job": str(job.relative_to(sweep))})  # seed_1/0: a nested subdir
        except Damaged as err:
            status = f"damaged: {err}"
            try:  # its overrides still name its row where they can be read
                shown = " ".join(str(o) for o in read(overrides_file(job), as_written, job))
            except Exception:
                shown = ""
            empty = {"group_overrides": [], "seed": None, "curve_tag": "", "curve": []}
            rows.append(
                {"job": str(job.relative_to(sweep)), "overrides": shown, "group": shown, **empty, "status": status}
            )
    return rows


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and the sample standard deviation (n - 1); the std of one value is None, not 0."""
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def group(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished jobs that differ only in seed, one row per group, best mean val_acc first when there is
    one (else in job order); then every failed or unfinished job as a row of its own."""
    members: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        if job["status"] == "ok":
            members.setdefault(job["group"], []).append(job)
    rows = []
    for key, same in members.items():
        row: dict[str, Any] = {"overrides": key, "n": len(same), "status": "ok"}
        row["override_list"] = same[0]["group_overrides"]
        row["seeds"] = " ".join(str(job["seed"]) for job in same if job["seed"] is not None)
        row["jobs"] = " ".join(job["job"] for job in same)
        row["trial"] = " ".join(job["trial"] for job in same if job.get("trial")) or None
        for metric in METRICS:
            values = [job[metric] for job in same if job.get(metric) is not None]
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(values)
            row[f"{metric}_n"] = len(values)
        curves = [job["curve"] for job in same if job["curve"]]
        row["curve_n"] = len(curves)  # the plot's n: a job run with logger=none has metrics but no curve
        row["curve_tag"] = next((job["curve_tag"] for job in same if job["curve"]), "")
        # Epoch by epoch over the seeds that reached it, so one shorter curve does not cut the others.
        points = [mean_std([c[i] for c in curves if i < len(c)]) for i in range(max(map(len, curves), default=0))]
        row["curve_mean"] = [m for m, _ in points]
        row["curve_std"] = [s or 0.0 for _, s in points]
        rows.append(row)
    # A stable sort: equal (or missing) validation accuracies keep job order.
    rows.sort(key=lambda r: (r["val_acc_mean"] is None, -(r["val_acc_mean"] or 0.0)))
    for job in jobs:
        if job["status"] != "ok":
            own = {"overrides": job["group"], "seeds": job["seed"], "jobs": job["job"], "status": job["status"]}
            for metric in METRICS:  # a pruned trial's last values; nothing for a failed job
                own[f"{metric}_mean"], own[f"{metric}_n"] = job.get(metric), int(job.get(metric) is not None)
            rows.append({**own, "trial": job.get("trial")})
    return rows


def machines_warning(jobs: list[dict[str, Any]]) -> str | None:
    """One sentence when the finished jobs ran on different machines, whose timings do not compare."""
    machines = list(dict.fromkeys(job["machine"] for job in jobs if job["status"] == "ok" and job.get("machine")))
    if len(machines) < 2:
        return None
    return (
        f"warning: these runs come from different machines ({', '.join(machines)}); "
        "compare seconds_per_epoch only within one machine."
    )


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def label(overrides: str) -> str:
    """How a group is named in tables and legends: its overrides, or ``(defaults)`` when there are none."""
    return overrides or "(defaults)"


def spread(row: dict[str, Any], metric: str) -> str:
    """``mean ± std (n=k)``; a single value has no spread, so it is ``value (n=1)``."""
    mean, std, n = row.get(f"{metric}_mean"), row.get(f"{metric}_std"), row.get(f"{metric}_n")
    if mean is None:
        return ""
    return f"{mean:.4f} ± {std:.4f} (n={n})" if std is not None else f"{mean:.4f} (n={n})"


def table(header: list[str], lines: list[list[str]]) -> str:
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(rows + ["| " + " | ".join(line) + " |" for line in lines]) + "\n"


def groups_markdown(groups: list[dict[str, Any]]) -> str:
    study = any(g.get("trial") for g in groups)  # the trial column only for a study's folder
    header = ["overrides (without seed)", "seeds", "jobs", *METRICS, "status", *(["trial"] if study else [])]
    lines = [
        [
            cell(label(g["overrides"])),
            cell(g["seeds"]),
            cell(g["jobs"]),
            *[spread(g, m) for m in METRICS],
            cell(g["status"]),
            *([cell(g.get("trial"))] if study else []),
        ]
        for g in groups
    ]
    return table(header, lines)


def jobs_markdown(jobs: list[dict[str, Any]]) -> str:
    columns = JOB_COLUMNS if any(job.get("trial") for job in jobs) else JOB_COLUMNS[:-1]
    return table(columns, [[cell(job.get(c)) for c in columns] for job in jobs])


def study_line(jobs: list[dict[str, Any]]) -> str | None:
    """``study: N trials here: a complete, b pruned (e epochs saved), c failed``, for a study's folder."""
    states = [str(job["trial"]).split()[0] for job in jobs if job.get("trial")]
    if not states:
        return None
    saved = sum(job.get("epochs_saved") or 0 for job in jobs)
    counts = {s: states.count(s) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    return (
        f"study: {len(states)} trials in this folder: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned "
        f"({saved} epochs saved), {counts['FAIL']} failed"
        + (f", {counts['RUNNING']} running or killed" if counts["RUNNING"] else "")
    )


def legend(override_lists: list[list[str]]) -> tuple[list[str], str]:
    """Each group named by the overrides that set it apart (wrapped to stay narrow), and those all share."""
    shared = (
        [o for o in override_lists[0] if all(o in each for each in override_lists)] if len(override_lists) > 1 else []
    )
    names = [textwrap.fill(label(" ".join(o for o in each if o not in shared)), 60) for each in override_lists]
    return names, " ".join(shared)


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, text.getvalue().encode())


def write_report(sweep: str | Path) -> Report:
    """Summarize the sweep folder ``sweep`` into its summary.* files; return what they hold (with why they could not
    be written, for a folder that is read-only or full)."""
    sweep = Path(sweep)
    if not sweep.is_dir():
        raise UserError(f"{sweep} is not a folder; give a sweep folder such as outputs/multirun/<date>/<time>.")
    jobs = summarize(sweep)
    if not jobs and config_file(sweep).is_file():  # a run, or one job of a sweep
        whose = f", such as {sweep.parent}" if (sweep.parent / MULTIRUN).is_file() else ""
        raise UserError(
            f"{sweep} is the folder of one run; a report compares the jobs of a sweep: give the sweep's folder{whose}."
        )
    if not jobs:
        raise UserError(f"{sweep} holds no job folders (none has a .hydra/ folder); give a sweep folder.")
    report = Report(jobs, group(jobs), machines_warning(jobs))
    try:
        write_files(sweep, report)
    except OSError as err:  # the tables are still printed: reading the sweep needs no write
        if err.errno not in WRITE_ERRORS:
            raise
        report.unwritten = WRITE_ERRORS[err.errno]
    return report


def write_files(sweep: Path, report: Report) -> None:
    """The report's tables and plot, each written whole, into the sweep folder."""
    from lenet_exp import drawing

    write_csv(sweep / REPORT_JOBS, JOB_COLUMNS, report.jobs)
    write_csv(sweep / REPORT_GROUPS, GROUP_COLUMNS, report.groups)
    note = f"{report.warning}\n\n" if report.warning else ""
    markdown = (
        f"# Sweep {sweep}\n\n{note}## Groups (mean ± std over seeds)\n\n{groups_markdown(report.groups)}"
        f"\n## Jobs\n\n{jobs_markdown(report.jobs)}"
    )
    atomic_write(sweep / REPORT_TABLES, markdown.encode())
    curves = [g for g in report.groups if g.get("curve_mean")]
    tags = sorted({g["curve_tag"] for g in curves})
    names, shared = legend([g["override_list"] for g in curves])
    counted = lambda g: f"n={g['curve_n']}" + (f" of {g['n']} jobs" if g["curve_n"] < g["n"] else "")  # noqa: E731
    series = {
        f"{name} ({counted(g)})": (g["curve_mean"], g["curve_std"]) for name, g in zip(names, curves, strict=True)
    }
    drawing.band_plot(
        series,
        sweep / REPORT_PLOT,
        title="evaluation accuracy per epoch, mean ± one std over seeds",
        ylabel=" or ".join(tags) or "accuracy",
        legend_title=textwrap.fill(f"all: {shared}", 60) if shared else "",
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    answer_help(argv, __doc__, __file__)
    usage = "usage: python -m lenet_exp.report <sweep folder> (such as outputs/multirun/<date>/<time>)"
    if wrong := next((arg for arg in argv if "=" in arg and not Path(arg).exists()), None):  # as the others say it
        fail(f"{wrong.split('=')[0]} is not an argument of this command; {usage}")
    if len(argv) != 1 or argv[0].startswith("-"):
        fail(f"give one sweep folder; {usage}")
    report = exit_on_user_error(lambda: write_report(argv[0]))
    stopped = None
    try:
        with output_read_to_the_end():  # report ... | head: the files are written already
            print(groups_markdown(report.groups))
            if line := study_line(report.jobs):
                print(line)
            if report.unwritten is None:
                print(f"wrote {FILES} in {argv[0]}")
    except SystemExit as early:  # the reader stopped early: what follows is said on stderr all the same
        stopped = early
    if report.warning:
        print(report.warning, file=sys.stderr)
    if report.unwritten is not None:
        fail(
            f"{FILES} could not be written in {argv[0]} ({report.unwritten}): the table above is the report; copy "
            "the folder to a writable place and report the copy for its files."
        )
    damaged = [f"job {job['job']} ({job['status']})" for job in report.jobs if job["status"].startswith("damaged:")]
    if damaged:  # the others are in the tables; the exit status says not every job is
        fail(f"{len(damaged)} job folder(s) are damaged and left out of the groups: {'; '.join(damaged)}")
    if stopped is not None:
        raise stopped


if __name__ == "__main__":
    main()
