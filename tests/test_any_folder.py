"""Studies and sweeps from the folders users work in, with the environment `make setup` builds (lenet_exp
installed editable): Hydra must find lenet_exp's Optuna sweeper wherever the current folder is, not only
in the checkout. (tests/test_packaging.py does the same with the installed wheel.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, TINY, run_cli

pytestmark = pytest.mark.slow  # each test starts a whole study or sweep

# The Done-when command of a study, shrunk to seconds: the synthetic files, a validation split they can hold.
STUDY = ["hparams_search=lenet_optuna", "hydra.sweeper.n_trials=2", "debug=limit", "data.val_size=16"]
# Nothing on PYTHONPATH: what is found is what the installed environment finds.
CLEAN = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my_experiments"
    folder.mkdir()
    assert ROOT not in folder.parents and folder != ROOT
    return folder


def finished_jobs(sweep_dir: Path) -> list[dict]:
    """metrics.json of every job folder of a sweep (named 0, 1, ...)."""
    return [json.loads((job / "metrics.json").read_text()) for job in sorted(sweep_dir.glob("[0-9]*"))]


def the_sweep(folder: Path) -> Path:
    """The one sweep folder a command made under ``folder``'s own outputs/multirun/<date>/<time>/."""
    (sweep_dir,) = (folder / "outputs" / "multirun").glob("*/*")
    return sweep_dir


def test_hydra_finds_the_optuna_sweeper_from_any_folder(tmp_path):
    folder = user_folder(tmp_path)
    scan = "import hydra_plugins, pkgutil; print(*sorted(m.name for m in pkgutil.iter_modules(hydra_plugins.__path__)))"
    out = subprocess.run(
        [sys.executable, "-c", scan], cwd=folder, env=CLEAN, capture_output=True, text=True, timeout=60
    )
    assert "lenet_exp_optuna" in out.stdout.split(), out.stdout + out.stderr


def test_a_study_runs_from_a_folder_outside_the_checkout(tmp_path, fake_data):
    # (a grid sweep from a user's folder: test_docs.py runs README's, as a command)
    folder = user_folder(tmp_path)
    data = [*TINY, f"data.data_dir={fake_data}"]
    study = run_cli(*STUDY, *data, cwd=folder, env=CLEAN)
    assert study.returncode == 0, study.stdout + study.stderr
    sweep_dir = the_sweep(folder)
    assert (sweep_dir / "optuna.db").is_file()
    assert [m["trial"]["number"] for m in finished_jobs(sweep_dir)] == [0, 1]


def test_lenet_exp_sweep_runs_a_study_from_a_notebooks_folder(tmp_path, fake_data):
    folder = user_folder(tmp_path)
    same = "data.eval_batch_size=${data.batch_size}"  # an interpolation: each job's overrides keep it as typed
    notebook = f"""
        import lenet_exp
        jobs = lenet_exp.sweep(*{[*STUDY, *TINY, f"data.data_dir={fake_data}", same]!r})
        print("trials", *(job.metrics["trial"]["number"] for job in jobs), "errors", *(job.error for job in jobs))
        print("as typed:", all({same!r} in job.overrides for job in jobs))
        """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(notebook)],
        cwd=folder,
        env=CLEAN,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "trials 0 1 errors None None" in out.stdout and "as typed: True" in out.stdout
    assert (the_sweep(folder) / "optuna.db").is_file()
