"""The built wheel: it carries conf/, and once installed every command runs from any folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow
SCRIPTS = ("lenet-exp", "lenet-exp-eval", "lenet-exp-predict", "lenet-exp-resume", "lenet-exp-report")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the folder it is installed into without dependencies), inside a git repository of
    its own, as a project's .venv would be."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"  # a copy, so that building leaves no build/ folder in the checkout
    for name in ("lenet_exp", "hydra_plugins", "conf"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", source], check=True)
    (wheel,) = (tmp / "dist").glob("lenet_exp-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", tmp / "site", wheel], check=True)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q", tmp], check=True)
    subprocess.run([*git, "-C", tmp, "commit", "-q", "--allow-empty", "-m", "a project"], check=True)
    return wheel, tmp / "site"


def run_installed(site: Path, cwd: Path, *command: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    """``command`` in ``cwd`` with the installed copy first on the path (the rest: this environment's packages)."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 or not check, out.stdout + out.stderr
    return out


def test_the_wheel_holds_every_module_every_config_and_the_console_scripts(installed):
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    configs = {f"lenet_exp/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    modules = {p.relative_to(ROOT).as_posix() for d in ("lenet_exp", "hydra_plugins") for p in (ROOT / d).rglob("*.py")}
    assert "lenet_exp/conf/config.yaml" in configs and "lenet_exp/conf/hydra/default.yaml" in configs
    assert configs <= names and modules <= names
    assert all(f"{script} = " in entry_points for script in SCRIPTS)


def test_the_installed_copy_trains_evaluates_and_resumes_from_an_unrelated_folder(installed, tmp_path, fake_data):
    _, site = installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    python = sys.executable
    # which lenet_exp is imported, and that Hydra finds the installed copy's Optuna sweeper (hparams_search=
    # lenet_optuna needs nothing else): one process
    show = "import lenet_exp.__main__ as m; print(m.__file__, m.CONF_DIR); "
    show += "from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; import sys; "
    show += "print(*(sys.modules[p.__module__].__file__ for p in Plugins.instance().discover(Sweeper)))"
    where, sweepers = run_installed(site, elsewhere, python, "-c", show).stdout.splitlines()
    assert where.split() == [str(site / "lenet_exp" / "__main__.py"), str(site / "lenet_exp" / "conf")]
    assert str(site / "hydra_plugins" / "lenet_exp_optuna" / "sweeper.py") in sweepers.split()

    overrides = ["debug=limit", "trainer=cpu", f"data.data_dir={fake_data}", "data.verify_md5=false"]
    run_installed(site, elsewhere, python, "-m", "lenet_exp", *overrides, "data.batch_size=16")
    (run,) = (elsewhere / "outputs").glob("*/*")  # ./outputs of the working directory
    sources = OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.runtime.config_sources
    assert {"path": str(site / "lenet_exp" / "conf"), "schema": "file", "provider": "main"} in sources
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["git_rev"] == "unknown"  # not the enclosing repository's commit

    ckpt = run / "checkpoints" / "last.ckpt"
    run_installed(site, elsewhere, site / "bin" / "lenet-exp-eval", f"ckpt_path={ckpt}", "accelerator=cpu")
    evaluation = json.loads((run / "evaluations.jsonl").read_text())
    assert evaluation["test_acc"] == pytest.approx(metrics["test_acc"])

    (run / "metrics.json").unlink()  # as if stopped before its final test
    resumed = run_installed(site, elsewhere, site / "bin" / "lenet-exp-resume", run)
    assert f"run folder {run}" in resumed.stdout and (run / "metrics.json").is_file()
    assert list((elsewhere / "outputs").glob("*/*")) == [run]


def test_the_installed_copy_runs_a_study_a_sweep_and_lenet_exp_sweep_from_an_unrelated_folder(
    installed, tmp_path, fake_data
):
    _, site = installed
    python, data = sys.executable, ["trainer=cpu", "data.verify_md5=false", "data.batch_size=16"]
    data.append(f"data.data_dir={fake_data}")
    study = ["hparams_search=lenet_optuna", "hydra.sweeper.n_trials=2", "debug=limit", "data.val_size=16", *data]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_installed(site, elsewhere, python, "-m", "lenet_exp", *study)
    (sweep_dir,) = (elsewhere / "outputs" / "multirun").glob("*/*")
    assert (sweep_dir / "optuna.db").is_file() and sorted(p.name for p in sweep_dir.glob("[0-9]*")) == ["0", "1"]
    assert all((sweep_dir / job / "metrics.json").is_file() for job in ("0", "1"))

    grid = tmp_path / "grid"
    run_installed(
        site, elsewhere, python, "-m", "lenet_exp", "-m", *data, "debug=limit", "seed=1,2", f"hydra.sweep.dir={grid}"
    )
    assert [json.loads((grid / job / "metrics.json").read_text())["seed"] for job in ("0", "1")] == [1, 2]

    notebook = tmp_path / "notebook"
    notebook.mkdir()
    code = f"import lenet_exp; jobs = lenet_exp.sweep(*{study!r}); "
    code += "print('trials', *(job.metrics['trial']['number'] for job in jobs))"
    assert "trials 0 1" in run_installed(site, notebook, python, "-c", code).stdout


# lenet-exp-eval and lenet-exp-resume run for real in the test above
@pytest.mark.parametrize("script", [s for s in SCRIPTS if s not in ("lenet-exp-eval", "lenet-exp-resume")])
def test_every_console_script_of_the_installed_copy_starts(installed, tmp_path, script):
    _, site = installed
    out = run_installed(site, tmp_path, site / "bin" / script, "--help", check=False)
    assert "Traceback" not in out.stderr and out.returncode == 0, out.stderr
    if script == "lenet-exp":
        assert "Config groups" in out.stdout
    else:  # the command's docstring: its usage, then what it does
        assert out.stdout.startswith(f"python -m lenet_exp.{script.removeprefix('lenet-exp-')} "), out.stdout


def test_the_packages_make_setup_installs_leave_scipy_out():
    """Where SciPy is installed, torchmetrics (which Lightning imports) imports scipy.signal at the start of every
    process: 0.8 s of a tiny run's 6 s, and the suite starts some 200 processes. So neither lenet_exp nor the
    extras make setup installs may require it, however indirectly (the full mlflow package does, through
    scikit-learn: the tests' `mlflow server` lives in a virtual environment of its own)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    extras = re.search(r"-e '\.\[([a-z,]+)\]'", (ROOT / "Makefile").read_text()).group(1).split(",")
    wanted, seen, path = [("lenet_exp", tuple(extras), ("lenet_exp",))], set(), {}
    while wanted:
        name, with_extras, chain = wanted.pop()
        if (key := (name.lower().replace("_", "-"), with_extras)) in seen:
            continue
        seen.add(key)
        path[key[0]] = chain
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (a platform's package): its own requirements are not known
        for line in requires:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in with_extras] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                wanted.append((requirement.name, tuple(sorted(requirement.extras)), (*chain, requirement.name)))
    assert "scipy" not in path, " -> ".join(path["scipy"])
    assert "torchmetrics" in path and "mlflow-skinny" in path  # the walk reached Lightning's and the extras' own


def test_make_setup_hands_pips_indexes_trusted_hosts_and_ca_bundle_on_to_uv(tmp_path):
    """uv does not read pip's configuration. Behind a company proxy, pip is set up with an index, a trusted host
    and a CA bundle: make setup must hand uv pip's effective values (an environment variable over the [install]
    section over [global]), each single-valued option once (uv refuses --cert or --index-url twice)."""
    (tmp_path / "pip.conf").write_text(
        "[global]\nindex-url = https://global.example/simple\ntrusted-host = a.example b.example\n"
        "cert = /etc/ssl/global.pem\n[install]\nindex-url = https://install.example/simple\n"
        "[download]\ncert = /etc/ssl/download-only.pem\n"
    )
    env = {**os.environ, "PIP_CONFIG_FILE": str(tmp_path / "pip.conf"), "PIP_CERT": str(tmp_path / "proxy.pem")}
    show = ["make", "-s", "--no-print-directory", "--eval", "show-uv-sources: ; @echo $(UV_SOURCES)", "show-uv-sources"]
    out = subprocess.run(show, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    words = out.stdout.split()
    options = [(words[i], words[i + 1]) for i in range(0, len(words), 2)]
    assert ("--cert", str(tmp_path / "proxy.pem")) in options and words.count("--cert") == 1, out.stdout
    assert ("--index-url", "https://install.example/simple") in options and words.count("--index-url") == 1
    assert ("--allow-insecure-host", "a.example") in options and ("--allow-insecure-host", "b.example") in options
