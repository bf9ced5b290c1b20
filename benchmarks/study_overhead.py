"""The Optuna sweeper's own time per trial, without any training: what a study adds to each trial.

    python benchmarks/study_overhead.py                                    # SQLite in a temporary folder
    python benchmarks/study_overhead.py --storage postgresql+psycopg://postgres@127.0.0.1:5432/bench

Per trial it does what lenet_exp's sweeper and the trial's job do around the training: the worker claims a
queued trial, samples three parameters with the seeded TPE sampler and records two attributes; the job opens
the storage and its trial and reports ``--epochs`` values, asking the median pruner after each; the worker tells
the result and records two more attributes. Prints the median seconds per trial (and per reported epoch) and
writes them to --out as JSON. docs/search.md has the numbers and compares them with a one-epoch LeNet trial.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from hydra_plugins.lenet_exp_optuna._plan import make_pruner, make_sampler
from hydra_plugins.lenet_exp_optuna._storage import open_storage, shown
from hydra_plugins.lenet_exp_optuna._study import claim, queue_trials, worker_name


def one_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, url: str, epochs: int) -> tuple[float, float]:
    """(the worker's seconds, the job's seconds) for one trial."""
    start = time.perf_counter()
    trial, trial_id = claim(study, storage)
    trial.suggest_float("model.scheduler.max_lr", 0.002, 0.05, log=True)
    trial.suggest_float("model.optimizer.weight_decay", 0.001, 0.1, log=True)
    trial.suggest_float("model.label_smoothing", 0.0, 0.2)
    trial.set_user_attr("worker", worker_name())
    trial.set_user_attr("overrides", "model.scheduler.max_lr=...")
    asked = time.perf_counter()
    job_storage = open_storage(url, ready=True)  # the job's side, in the job's own process in a real study
    job_study = optuna.load_study(
        study_name=study.study_name,
        storage=job_storage,
        sampler=optuna.samplers.RandomSampler(),
        pruner=make_pruner("median", {}),
    )
    job_trial = optuna.Trial(job_study, trial_id)
    for epoch in range(1, epochs + 1):
        job_trial.report(0.8 + 0.01 * epoch, step=epoch)
        job_trial.should_prune()
    reported = time.perf_counter()
    trial.set_user_attr("job_folder", "/tmp/x")
    trial.set_user_attr("epochs", epochs)
    study.tell(trial, 0.8 + 0.01 * epochs)
    told = time.perf_counter()
    return (asked - start) + (told - reported), reported - asked


def measure(url: str, trials: int, epochs: int) -> dict[str, float]:
    storage = open_storage(url)
    study = optuna.create_study(
        storage=storage,
        study_name=f"overhead-{time.time_ns()}",
        sampler=make_sampler("tpe", {}, 123),
        direction="maximize",
    )
    queue_trials(study, trials, created=True)
    times = [one_trial(study, storage, url, epochs) for _ in range(trials)]
    worker, job = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
    return {"worker_s_per_trial": worker, "job_s_per_trial": job, "total_s_per_trial": worker + job}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", action="append", help="a storage URL (default: SQLite in a temporary folder)")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        urls = args.storage or [f"sqlite:///{tmp}/bench.db"]
        results = []
        for url in urls:
            for epochs in args.epochs:
                row = {
                    "storage": shown(url).split(":")[0],
                    "epochs": epochs,
                    **measure(url, args.trials, epochs),
                }
                results.append(row)
                print(
                    f"{row['storage']:<20} {epochs:>3} epochs: {row['total_s_per_trial'] * 1000:7.1f} ms per trial "
                    f"(worker {row['worker_s_per_trial'] * 1000:.1f} ms, job {row['job_s_per_trial'] * 1000:.1f} ms)"
                )
    if args.out:
        record = {"cpu": platform.processor() or platform.machine(), "optuna": optuna.__version__, "rows": results}
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
