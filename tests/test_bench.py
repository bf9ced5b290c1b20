"""The benchmark (benchmarks/bench.py): a smoke test on the real data, its paired variant, and its refusal."""

import json
from pathlib import Path

import pytest
import torch
from conftest import TIMING, TWO_EPOCHS, apply, compose_config, load_checkpoint, real_data, run_cli

from lenet_exp.train import train

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@apply(real_data)
def test_bench_prints_the_table_and_both_ratios(tmp_path):
    # The variants of both ratios (the paired one is tested below, in this process); the many-steps variants run
    # in the GPU check's dry run.
    variants = ["--variants", "book,bare,lenet_exp"]
    # 160 of an epoch's 235 batches (make bench measures whole epochs): the book's sigmoid LeNet leaves its
    # plateau after about 100 batches, and all three reach about 0.5 by 160
    out = run_cli(
        "--epochs",
        "1",
        "--repeats",
        "1",
        "--train-batches",
        "160",
        *variants,
        "--json",
        str(tmp_path / "bench.json"),
        module="benchmarks/bench.py",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for variant in ("book", "bare", "lenet_exp"):
        assert any(line.startswith(variant) for line in out.stdout.splitlines()), variant
    assert "c/b = lenet_exp / bare = " in out.stdout and "a/c = book / lenet_exp = " in out.stdout
    summary = json.loads((tmp_path / "bench.json").read_text())["summary"]
    for variant, figures in summary.items():
        assert figures["seconds_per_epoch"] > 0 and 0 < figures["start_to_first_step"] < 120
        assert figures["peak_rss_mb"] > 50 and 0.3 < figures["test_acc"] < 1.0, (variant, figures)


@apply(real_data)
def test_the_paired_bare_epochs_leave_the_run_as_it_was(tmp_path, fake_data, monkeypatch):
    """The paired variants' callback, given as the bench gives it: bare epochs (on the real data) interleaved with
    each epoch's calls and evaluation, or before each epoch, timed; and a run whose metrics and weights are those
    of the same run without them."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as the bench's PYTHONPATH does
    import bench

    runs, bare = {}, {}
    for name in ("plain", "interleaved", "before"):
        extra = []
        if name != "plain":
            extra = bench.paired_overrides(tmp_path / f"{name}.json", "cpu", 42, 2, interleave=name == "interleaved")
        metrics = train(compose_config(tmp_path / name, [*TWO_EPOCHS, f"data.data_dir={fake_data}", *extra]))
        # (the paired run's stored config names the bench's callback, which the gate allows only when told)
        last = tmp_path / name / "checkpoints" / "last.ckpt"
        checkpoint = load_checkpoint(last, trusted=["paired.BareEpochs"])
        weights, steps = checkpoint["state_dict"], checkpoint["global_step"]
        runs[name] = ({k: v for k, v in metrics.items() if k not in TIMING}, weights, metrics["epoch_seconds"], steps)
        if name != "plain":
            bare[name] = json.loads((tmp_path / f"{name}.json").read_text())
    plain, plain_weights, _, _ = runs["plain"]
    for name in ("interleaved", "before"):
        metrics, weights, seconds, run_steps = runs[name]
        assert metrics == plain
        assert weights.keys() == plain_weights.keys()
        assert all(torch.equal(weights[k], plain_weights[k]) for k in plain_weights)
        record = bare[name]
        assert all(s > 0 for s in record["epoch_seconds"])
        assert 0 <= record["test_acc"] <= 1  # 2 batches of training: near chance, but evaluated on all 10,000
        inside = record["inside"]
        if name == "before":  # all before the run's epoch timer starts, 2 steps each (the bench's --train-batches)
            assert inside == [0.0, 0.0] and record["steps"] == [2, 2]
        else:  # the steps and the evaluation, inside the run's epochs: all but the epoch's start
            assert all(0.9 * b < i <= b < s for i, s, b in zip(inside, seconds, record["epoch_seconds"], strict=True))
            # as many optimizer steps as the run's, whatever the bench's --train-batches (it counts the run's calls)
            assert record["steps"][0] == record["steps"][1] and sum(record["steps"]) == run_steps > 4


def test_the_paired_callback_leaves_steps_per_call_auto_at_the_cpu_default(tmp_path, monkeypatch):
    """Its batch hooks take a call's batches: a callback of one's own with such hooks makes auto 1, which would
    have measured the one-step path in the default's place (with the same weights, so no result shows it)."""
    import pytorch_lightning as pl

    from lenet_exp.many_steps import resolve
    from lenet_exp.steps_per_call import CPU_DEFAULT

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from paired import BareEpochs

    trainer = pl.Trainer(accelerator="cpu", logger=False, callbacks=[BareEpochs(str(tmp_path / "out.json"))])
    assert resolve("auto", trainer) == CPU_DEFAULT


def test_a_paired_runs_epochs_are_its_seconds_less_the_bare_pieces_inside_them(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench

    seconds, paired = bench.pairs([6.0, 5.0], {"epoch_seconds": [2.5, 2.0], "inside": [3.0, 2.5]})
    assert seconds == [3.0, 2.5] and paired == {"bare_epoch_seconds": [2.5, 2.0], "ratios": [1.2, 1.25]}
    seconds, paired = bench.pairs([3.0, 2.0], {"epoch_seconds": [2.5, 2.0], "inside": [0.0, 0.0]})
    assert seconds == [3.0, 2.0] and paired["ratios"] == [1.2, 1.0]


def test_the_paired_ratio_is_the_median_of_every_pair(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench

    figures = {"start_to_first_step": None, "peak_rss_mb": 900.0, "test_acc": 0.7}
    runs = [
        {"variant": "paired", "seconds_per_epoch": 3.0, "fastest_epoch": 2.9, "ratios": [1.0, 1.5, 0.9], **figures},
        {"variant": "paired", "seconds_per_epoch": 3.1, "fastest_epoch": 3.0, "ratios": [1.02, 1.04], **figures},
    ]
    text, summary = bench.table(runs)
    assert summary["paired"]["paired_ratio"] == 1.02 and summary["paired"]["start_to_first_step"] is None
    line = (
        "paired = lenet_exp / bare, epoch by epoch in one process, interleaved per call = 1.020 (median of 5 epochs, "
    )
    line += "0.900 to 1.500)"
    assert f"{line}   (target <= 1.03)" in text.splitlines()


@pytest.mark.slow
def test_bench_refuses_unknown_variants():
    out = run_cli("--variants", "bare,fast", module="benchmarks/bench.py")
    assert out.returncode == 1 and out.stderr.startswith("error: --variants takes names from book,bare,lenet_exp")


def test_a_failed_run_leaves_the_other_variants_measured_and_written(tmp_path, monkeypatch, capsys):
    """A variant whose run fails (the graph path on a GPU, say) is reported and not run again; the others are
    still measured and written to --json after every run, and the bench exits 1 naming the failed variant."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench

    figures = {"start_to_first_step": 5.0, "peak_rss_mb": 900.0, "test_acc": 0.7, "fastest_epoch": 1.0}
    measured = []

    def measure(variant, args, raw_root, scratch):
        measured.append(variant)
        if variant == "epoch":
            raise bench.RunFailed("error: the epoch run failed:\nCUDA error: operation not permitted")
        return {"variant": variant, "seconds_per_epoch": 1.0, "epoch_seconds": [1.0], **figures}

    monkeypatch.setattr(bench, "measure", measure)
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as ended:
        bench.main(["--variants", "bare,epoch,steps_1", "--repeats", "2", "--json", str(out)])
    assert ended.value.code == 1
    assert measured == ["bare", "epoch", "steps_1", "steps_1", "bare"]  # rotated; epoch not again
    assert sorted(json.loads(out.read_text())["summary"]) == ["bare", "steps_1"]
    err = capsys.readouterr().err
    assert "operation not permitted" in err
    assert err.rstrip().endswith("error: the epoch run failed (its error is above); the other variants were measured.")
