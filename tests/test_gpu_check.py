"""The GPU check (benchmarks/gpu_check.py): its dry run on the CPU, and its one line without a GPU."""

import json
import os

import pytest
import torch
from conftest import apply, real_data, run_cli


@apply([*real_data, pytest.mark.slow])
def test_gpu_check_dry_run_on_the_cpu_runs_every_step_and_writes_its_tables(tmp_path):
    folder, temp = tmp_path / "out", tmp_path / "temp"  # temp: the temporary folder the script and its runs see
    temp.mkdir()
    command = ["--device", "cpu", "--out", str(folder)]
    out = run_cli(*command, module="benchmarks/gpu_check.py", timeout=600, env={**os.environ, "TMPDIR": str(temp)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert not list(temp.glob("gpu-check-*"))  # the runs' folders are gone; what they measured is in folder
    results = json.loads((folder / "gpu_check.json").read_text())
    assert [s["step"] for s in results["steps"]] == ["gpu tests", "book", "bench", "sweep 1x", "sweep 2x", "ddp"]
    assert all(s["status"] == "ok" for s in results["steps"]), results["steps"]
    assert set(results["bench"]) == {"bare", "steps_1", "epoch"}  # epoch_eager: on a GPU only
    assert all(results["bench"][v]["ratio_to_bare"] > 0 for v in ("steps_1", "epoch"))
    assert [s["jobs"] for s in results["steps"][3:5]] == [2, 2] and results["steps"][4]["jobs_per_minute"] > 0
    assert results["device"]["device"] == "cpu" and results["device"]["cpu_cores"] >= 1
    table = (folder / "gpu_check.md").read_text()
    assert "| epoch |" in table and "| book | ok |" in table and "| sweep 2x | ok |" in table
    assert "A dry run on the CPU" in table.splitlines()[2]  # said before its figures, which measure nothing


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_without_cuda_says_so_in_one_line():
    out = run_cli(module="benchmarks/gpu_check.py")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        "error: PyTorch finds no CUDA GPU here; run on a GPU machine, or `make gpu-check DEVICE=cpu` for a dry run."
    )
