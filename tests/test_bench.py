"""The benchmark (benchmarks/bench.py): a smoke test on the real data, and its refusal."""

import json

import pytest
from conftest import apply, real_data, run_cli


@apply(real_data)
def test_bench_prints_the_table_and_both_ratios(tmp_path):
    # The variants of the three ratios; the many-steps variants run in the GPU check's dry run.
    variants = ["--variants", "book,bare,lenet_exp,paired"]
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
    for variant in ("book", "bare", "lenet_exp", "paired"):
        assert any(line.startswith(variant) for line in out.stdout.splitlines()), variant
    assert "c/b = lenet_exp / bare = " in out.stdout and "a/c = book / lenet_exp = " in out.stdout
    assert "paired = lenet_exp / bare, epoch by epoch in one process = " in out.stdout
    summary = json.loads((tmp_path / "bench.json").read_text())["summary"]
    for variant, figures in summary.items():
        assert figures["seconds_per_epoch"] > 0 and figures["peak_rss_mb"] > 50, (variant, figures)
        assert 0.3 < figures["test_acc"] < 1.0, (variant, figures)
        if variant != "paired":  # its first step comes after a bare epoch
            assert 0 < figures["start_to_first_step"] < 120, (variant, figures)
    # the bare epochs between its epochs leave the run as it was: the same weights, so the same accuracy
    assert summary["paired"]["test_acc"] == summary["lenet_exp"]["test_acc"]
    assert 0.3 < summary["paired"]["paired_ratio"] < 3 and len(summary["paired"]["paired_ratios"]) == 1


@pytest.mark.slow
def test_bench_refuses_unknown_variants():
    out = run_cli("--variants", "bare,fast", module="benchmarks/bench.py")
    assert out.returncode == 1 and out.stderr.startswith("error: --variants takes names from book,bare,lenet_exp")
