"""``python -m lenet_exp.report <sweep folder>``: one row per job, and every job's curve in one plot.

Writes ``summary.csv``, ``summary.md`` and ``summary.png`` into the sweep folder and prints the
table. A job that failed is a row with its error; one that never finished says so.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lenet_exp.errors import UserError, exit_on_user_error

COLUMNS = ["job", "overrides", "test_acc", "val_acc", "train_loss", "seconds_per_epoch", "status"]


def job_folders(sweep: Path) -> list[Path]:
    """The sweep's job folders (those with a .hydra/ folder), in job-number order."""
    jobs = [d for d in sweep.iterdir() if d.is_dir() and (d / ".hydra").is_dir()]
    return sorted(jobs, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else d.name))


def eval_curve(job: Path, epochs: int | None) -> tuple[str, list[float]]:
    """The per-epoch evaluation accuracy (val/acc, or test/acc in the book's protocol) of a job.

    In the book's protocol the final test logs test/acc once more after the last epoch; only the
    first ``epochs`` points are the per-epoch curve.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for folder in sorted({p.parent for p in (job / "tensorboard").rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        events.Reload()
        tags = events.Tags()["scalars"]
        for tag in ("val/acc", "test/acc"):
            if tag in tags:
                values = [event.value for event in sorted(events.Scalars(tag), key=lambda e: (e.step, e.wall_time))]
                return tag, values[:epochs] if epochs else values
    return "", []


def summarize(sweep: Path) -> list[dict[str, Any]]:
    rows = []
    for job in job_folders(sweep):
        overrides = " ".join(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        row: dict[str, Any] = {"job": job.name, "overrides": overrides}
        metrics = json.loads((job / "metrics.json").read_text()) if (job / "metrics.json").is_file() else {}
        if metrics:
            row.update({key: metrics.get(key) for key in COLUMNS[2:6]})
            row["status"] = "ok"
        elif (job / "error.txt").is_file():
            row["status"] = "failed: " + (job / "error.txt").read_text().strip()
        else:
            row["status"] = "incomplete (no metrics.json and no error.txt: still running, or killed)"
        row["curve_tag"], row["curve"] = eval_curve(job, metrics.get("epochs"))
        rows.append(row)
    return rows


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(sweep: str | Path) -> list[dict[str, Any]]:
    from lenet_exp import drawing

    sweep = Path(sweep)
    if not sweep.is_dir():
        raise UserError(f"{sweep} is not a folder; give a sweep folder such as outputs/multirun/<date>/<time>.")
    rows = summarize(sweep)
    if not rows:
        raise UserError(f"{sweep} holds no job folders (none has a .hydra/ folder); give a sweep folder.")
    with open(sweep / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (sweep / "summary.md").write_text(f"# Sweep {sweep}\n\n" + markdown(rows))
    tags = {row["curve_tag"] for row in rows if row["curve"]}
    label = " or ".join(sorted(tags)) or "no evaluation logged"
    series = {f"{row['job']}: {row['overrides']}": row["curve"] for row in rows if row["curve"]}
    drawing.line_plot(series, title="evaluation accuracy per epoch", ylabel=label).save(sweep / "summary.png")
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.exit("usage: python -m lenet_exp.report <sweep folder>   (such as outputs/multirun/<date>/<time>)")
    rows = exit_on_user_error(lambda: write_report(argv[0]))
    print(markdown(rows))
    print(f"wrote summary.csv, summary.md and summary.png in {argv[0]}")


if __name__ == "__main__":
    main()
