"""README.md as a new user meets it: a short guide whose links lead to every docs/ page, and whose commands
run as written (the commands that read a run folder verbatim; those that train, with --cfg job)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ONE_EPOCH, ROOT, compose_config, run_cli, run_main
from PIL import Image

import lenet_exp

README = (ROOT / "README.md").read_text()
COMMANDS = [
    line.strip()
    for block in re.findall(r"```bash\n(.*?)```", README, re.S)
    for line in block.splitlines()
    if line.strip().startswith("python ")
]


def test_readme_is_a_short_guide_that_links_every_docs_page():
    assert len(README.splitlines()) <= 200
    linked = set(re.findall(r"\]\((docs/[^)#]+)", README))
    pages = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")}
    assert linked == pages, f"not linked: {sorted(pages - linked)}; missing: {sorted(linked - pages)}"


def test_docs_pages_link_only_to_pages_that_exist():
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to {target}"


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """``command`` through bash, as copied into a terminal, with this environment's python first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_readme_commands_run_as_written(tmp_path, fake_data):
    trains = [c for c in COMMANDS if re.match(r"python -m lenet_exp( |$)", c)]
    readers = [c for c in COMMANDS if c not in trains]
    assert len(trains) >= 5 and {c.split()[2] for c in readers} == {
        "lenet_exp.resume",
        "lenet_exp.eval",
        "lenet_exp.predict",
        "lenet_exp.report",
    }
    # Training takes minutes: each composes, as written, to a config (a sweep: its first job), in this process
    # (Hydra's compose of the same conf/; test_train.py runs `python -m lenet_exp --cfg job` as a command).
    for command in trains:
        single = command.split("#")[0].replace("python -m lenet_exp -m ", "python -m lenet_exp ")
        first_job = re.sub(r"=([^ ,]+),\S+", r"=\1", single)
        cfg = compose_config(tmp_path / "composed", shlex.split(first_job)[3:])
        assert "model" in cfg and "trainer" in cfg, command

    # The run and sweep folders README's commands name, made quickly on synthetic data, in this process (the
    # commands that train run as commands in the test below).
    quick = [*ONE_EPOCH, f"data.data_dir={fake_data}"]
    run = tmp_path / "outputs/2026-11-29/12-00-00"
    lenet_exp.run(*quick, f"hydra.run.dir={run}")
    lenet_exp.sweep(*quick, "seed=1,2", f"hydra.sweep.dir={tmp_path / 'outputs/multirun/2026-11-29/12-00-00'}")
    shoe = Image.new("L", (40, 60), 255)  # a dark object photographed on white
    shoe.paste(30, (10, 15, 30, 45))
    shoe.save(tmp_path / "shoe.jpg")
    for command in readers:
        out = shell(command, tmp_path)
        assert out.returncode == 0 and "error" not in out.stderr, f"{command}\n{out.stdout}\n{out.stderr}"
        # no library warning about what lenet_exp does on purpose (Lightning's "file.py:378: ..." lines)
        assert not re.search(r"\.py:\d+: ", out.stderr), f"{command}\n{out.stderr}"
    assert (tmp_path / "outputs/multirun/2026-11-29/12-00-00/summary.md").is_file()
    assert (run / "evaluations.jsonl").is_file()


def sweep_commands() -> list[str]:
    """README's and docs/'s commands that start a sweep or a study on this machine (the ones for other hosts,
    a cluster or a shared database, are tested against real servers in test_slurm.py and test_search.py)."""
    found = []
    for page in (ROOT / "README.md", ROOT / "docs" / "sweeps.md", ROOT / "docs" / "search.md"):
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                command = line.split("#")[0].strip()
                words = command.split()
                starts = words[:3] == ["python", "-m", "lenet_exp"] and (
                    "-m" in words[3:] or "hparams_search=" in command
                )
                if starts and "example.org" not in command and "slurm" not in command and command not in found:
                    found.append(command)
    return found


@pytest.mark.slow
def test_the_docs_sweep_and_study_commands_run_from_a_users_folder(tmp_path, fake_data, monkeypatch):
    commands = sweep_commands()
    assert len(commands) >= 4 and any("hparams_search=lenet_plus_optuna" in c for c in commands)
    small = [*ONE_EPOCH, f"data.data_dir={fake_data}", "debug=limit", "trainer.max_epochs=1"]
    small = [s for s in small if not s.startswith("data.batch_size")]  # the commands' own batch sizes stay
    for i, command in enumerate(commands):
        folder = tmp_path / f"user{i}"
        folder.mkdir()
        # as written, made small: one or two jobs (a sweep's first list keeps two values), one trial of a study
        words = command.split()[3:]
        first = next((w for w in words if "," in w), None)
        words = [w if w == first else re.sub(r"=([^,]+),.*", r"=\1", w) for w in words]
        words = [re.sub(r"=([^,]+),([^,]+),.*", r"=\1,\2", w) for w in words]
        study = ["hydra.sweeper.n_trials=1", "data.val_size=16"] if "hparams_search=" in command else []
        # the first, and joblib's (its worker processes, reused within a process, keep the folder they started
        # in), as commands from the user's folder; the others' main in this process, in the user's folder
        if i == 0 or "launcher=joblib" in command:
            out = run_cli(*words, *small, *study, cwd=folder)
        else:
            monkeypatch.chdir(folder)
            out = run_main("lenet_exp", *words, *small, *study)
        assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
        assert list((folder / "outputs" / "multirun").glob("*/*/0/metrics.json")), command
