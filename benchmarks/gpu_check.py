"""``make gpu-check`` (``python benchmarks/gpu_check.py``): lenet_exp on a CUDA GPU, checked and measured.

One script, each step under its own time limit (together 7.5 minutes at most on one GPU):

  1. the GPU-marked tests (``pytest -m gpu``);
  2. the book's experiment with ``trainer.accelerator=gpu``, 5 epochs: test accuracy must be >= 0.70;
  3. the benchmark, interleaved: the bare eager loop; lenet_exp with one Lightning step per batch
     (``steps_per_call=1``, lenet_exp before steps_per_call); lenet_exp with a whole epoch per Lightning
     step, each optimizer step a replayed CUDA graph (``epoch``, what ``auto`` becomes on CUDA once measured)
     and eagerly (``epoch_eager``, ``model.cuda_graph=false``);
  4. a sweep of 4 short jobs on one GPU, first one job at a time (Hydra's basic launcher, one process),
     then 4 at once (``hydra/launcher=joblib hydra.launcher.n_jobs=4``): jobs per minute of each;
  5. ``trainer=ddp`` on every GPU, when there are two or more.

Everything measured, with the device facts, goes to ``gpu_check.json`` and ``gpu_check.md`` in
``--out`` (default: ``$OUT`` when set, else ``outputs/gpu_check/<date>_<time>``).

``--device cpu`` runs the same steps in a reduced form on the CPU (1 short epoch, one repeat, the
benchmark's lenet_exp runs on 512 training images, DDP over two CPU processes): a dry run, so that
the script cannot rot. Without CUDA, the default
``--device cuda`` says so in one line and exits 1.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout this script belongs to (it is not installed)
BENCH = ROOT / "benchmarks" / "bench.py"
NO_GPU_HINT = "run on a GPU machine, or `make gpu-check DEVICE=cpu` for a dry run."
ACCURACY_BAND = 0.70  # the book's 5 epochs reach 0.75-0.77 on any device
# The dry run on the CPU: one epoch of 4 batches, 2 of validation and test (the steps run, not measure).
TRIMMED = {"train": 4, "val": 2, "test": 2}
DRY_RUN_NOTE = (
    "A dry run on the CPU: each step cut short to check that it runs (the bare loop tests on all 10,000 images, "
    "lenet_exp on 2 batches), so its seconds, ratios and accuracies measure nothing."
)
HELD_IN = 512  # the training images of the dry run's benchmark (of Fashion-MNIST's 60,000)


def save(out: Path, results: dict, repeats: int) -> None:
    """Write gpu_check.json and gpu_check.md as they stand (after every step, so that a check cut
    short by its caller's time limit still leaves what it measured)."""
    results["bench"] = {}
    for name in ("bench",):
        if (out / f"{name}.json").is_file():
            results["bench"].update(json.loads((out / f"{name}.json").read_text())["summary"])
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(results, repeats))


def run(step: str, command: list[str], limit: int, log: Path) -> dict:
    """Run one step as a child process under a time limit; its output goes to ``log``."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        try:
            code = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=limit, env=env)
            status = "ok" if code.returncode == 0 else f"failed (exit {code.returncode})"
        except subprocess.TimeoutExpired:
            status = f"failed (over its {limit} s limit)"
    seconds = time.perf_counter() - started
    tail = log.read_text().strip().splitlines()[-1:] or [""]
    print(f"{step:10} {status:28} {seconds:6.1f} s   {tail[0][:100]}", flush=True)
    return {"step": step, "status": status, "seconds": round(seconds, 1), "command": " ".join(command[1:])}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json, gpu_check.md and the logs")
    parser.add_argument("--repeats", type=int, help="benchmark runs per variant (default 2; 1 with --device cpu)")
    args = parser.parse_args(argv)

    import torch

    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        sys.exit(f"error: PyTorch finds no CUDA GPU here; {NO_GPU_HINT}")

    from lenet_exp.runtime.results import environment  # Lightning's seconds of loading, only when needed

    out = args.out or Path(os.environ.get("OUT") or ROOT / "outputs" / "gpu_check" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    out.mkdir(parents=True, exist_ok=True)
    # The runs' own folders (checkpoints, TensorBoard) are scratch, removed when the script exits, failed or not;
    # what it measured, and each step's log, are in out.
    scratch = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    gpus = torch.cuda.device_count() if gpu else 0
    facts = {**environment("cuda" if gpu else "cpu"), "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"gpu-check on {facts.get('gpu', facts['cpu'])} ({args.device}), results in {out}", flush=True)
    accelerator = "gpu" if gpu else "cpu"
    reduced = [] if gpu else ["trainer.max_epochs=1", *(f"trainer.limit_{s}_batches={n}" for s, n in TRIMMED.items())]
    python = sys.executable
    repeats = args.repeats or (2 if gpu else 1)

    def limit(seconds: int) -> int:
        """A step's time limit: on one GPU they add up to 7.5 minutes; a slow 2-core CPU's dry run gets 4x."""
        return seconds if gpu else 4 * seconds

    steps: list[dict] = []
    results = {"device": facts, "steps": steps, "book": {}, "bench": {}}

    # 1. the GPU tests (on the CPU they are collected and skipped)
    steps.append(
        run(
            "gpu tests",
            [python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"],
            limit(100),
            out / "tests.log",
        )
    )

    # 2. the book's experiment
    book_dir = scratch / "book"
    overrides = [f"trainer.accelerator={accelerator}", *reduced, f"hydra.run.dir={book_dir}"]
    steps.append(run("book", [python, "-m", "lenet_exp", *overrides], limit(45), out / "book.log"))
    book = json.loads((book_dir / "metrics.json").read_text()) if (book_dir / "metrics.json").is_file() else {}
    results["book"] = book
    if book:
        steps[-1].update(test_acc=book["test_acc"], seconds_per_epoch=book["seconds_per_epoch"])
        if gpu and book["test_acc"] < ACCURACY_BAND:
            steps[-1]["status"] = f"failed (test acc {book['test_acc']:.3f} < {ACCURACY_BAND})"

    # 3. the benchmark, interleaved (3 epochs: the median epoch is past cuDNN's autotuning and the capture)
    save(out, results, repeats)
    bench = [python, str(BENCH), "--device", args.device, "--repeats", str(repeats)]
    bench += ["--epochs", "3"] if gpu else ["--epochs", "1", "--train-batches", str(TRIMMED["train"])]
    if not gpu:  # epoch trains all of an epoch whatever --train-batches says (an explicit steps_per_call counts
        # calls): the dry run holds out all but HELD_IN training images, 2 batches, validates one batch of them
        # and tests as many batches as the book's step
        held_out = f"data.val_size={60_000 - HELD_IN} trainer.limit_val_batches=1"
        bench += ["--lenet-args", f"{held_out} trainer.limit_test_batches={TRIMMED['test']}"]
    # On the CPU the graph is not captured, so epoch_eager would repeat epoch: the dry run leaves it out.
    variants = "bare,steps_1,epoch,epoch_eager" if gpu else "bare,steps_1,epoch"
    steps.append(
        run("bench", [*bench, "--variants", variants, "--json", str(out / "bench.json")], limit(200), out / "bench.log")
    )
    save(out, results, repeats)

    # 4. a sweep packed onto one GPU vs one job at a time
    jobs = 4 if gpu else 2
    seeds = ",".join(str(i) for i in range(1, jobs + 1))
    sweep = [f"trainer.accelerator={accelerator}", "logger=none", f"seed={seeds}"]
    sweep += ["trainer.max_epochs=2"] if gpu else reduced
    packed = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
    for name, launcher, seconds in (("sweep 1x", [], 50), (f"sweep {jobs}x", packed, 45)):
        folder = scratch / name.replace(" ", "_")
        command = [python, "-m", "lenet_exp", "-m", *sweep, *launcher, f"hydra.sweep.dir={folder}"]
        steps.append(run(name, command, limit(seconds), out / f"{name.replace(' ', '_')}.log"))
        done = len(list(folder.glob("*/metrics.json")))
        steps[-1].update(jobs=done, jobs_per_minute=round(60 * done / steps[-1]["seconds"], 2))
        save(out, results, repeats)

    # 5. DDP over every GPU (over two CPU processes in the dry run)
    if gpu and gpus < 2:
        steps.append({"step": "ddp", "status": f"skipped ({gpus} GPU)", "seconds": 0})
        print(f"{'ddp':10} {steps[-1]['status']}", flush=True)
    else:
        ddp = ["trainer=ddp", f"trainer.devices={gpus}"] if gpu else ["trainer=ddp_cpu", *reduced]
        ddp_dir = scratch / "ddp"
        steps.append(run("ddp", [python, "-m", "lenet_exp", *ddp, f"hydra.run.dir={ddp_dir}"], 240, out / "ddp.log"))
        if (ddp_dir / "metrics.json").is_file():
            steps[-1]["test_acc"] = json.loads((ddp_dir / "metrics.json").read_text())["test_acc"]

    save(out, results, repeats)
    print("\n" + markdown(results, repeats), flush=True)
    return 0 if all(s["status"] == "ok" or s["status"].startswith("skipped") for s in steps) else 1


def markdown(results: dict, repeats: int) -> str:
    facts = results["device"]
    where = f"{facts['gpu']} x{facts['gpu_count']}, CUDA {facts['cuda']}" if "gpu" in facts else f"{facts['cpu']} (CPU)"
    lines = [
        f"gpu-check, {facts['date']}: {where}, torch {facts['torch']}, "
        f"pytorch-lightning {facts['pytorch-lightning']}, {facts['cpu_cores']} CPU cores",
        "",
    ]
    if facts["device"] == "cpu":
        lines += [DRY_RUN_NOTE, ""]
    lines += [
        f"| variant | s/epoch (median epoch) | runs (of {repeats}) | ratio to bare loop | test acc |",
        "|---|---|---|---|---|",
    ]
    for variant, s in results["bench"].items():
        bare = results["bench"].get("bare", {}).get("seconds_per_epoch")
        ratio = f"{s['seconds_per_epoch'] / bare:.2f}" if bare else ""
        row = f"| {variant} | {s['seconds_per_epoch']:.3f} | {s['runs']} | {ratio} | {s['test_acc']:.3f} |"
        lines.append(row)
    lines += ["", "| step | status | seconds | |", "|---|---|---|---|"]
    for s in results["steps"]:
        extra = ", ".join(f"{k} {s[k]:.3f}" for k in ("test_acc", "seconds_per_epoch", "jobs_per_minute") if k in s)
        lines.append(f"| {s['step']} | {s['status']} | {s['seconds']} | {extra} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
