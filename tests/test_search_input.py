"""Search input that cannot work (a search space Optuna would refuse, a storage that cannot be opened) is one
sentence before any trial: ``error: <sentence>`` as the last line, exit status 1, no traceback and no warning of
Hydra's about a callback, from the command line (started outside the checkout, as users do) and from
lenet_exp.sweep. Each refusal comes before torch loads, so a case costs one start of Python and Hydra."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import optuna
import pytest
from conftest import run_cli

import lenet_exp
from hydra_plugins.lenet_exp_optuna._storage import open_storage, storage_url
from lenet_exp.errors import UserError

STUDY = ["hparams_search=lenet_optuna", "hydra.sweeper.n_trials=2", "debug=limit"]
NOT_A_JOURNAL = "is not an Optuna journal (its first line is not an entry of one); name another file"

# name -> (the bad setting, what its sentence begins with, how it ends: what to do); {tmp} is the current folder.
CASES = {
    "bounds backwards": (
        "model.optimizer.lr=interval(0.01,0.001)",
        "model.optimizer.lr=interval(0.01,0.001): its low bound 0.01 is above its high bound 0.001",
        "give the low one first.",
    ),
    "an empty range": (
        "data.batch_size=range(512,64)",
        "data.batch_size=range(512,64) holds no value",
        "give start below stop and a step above 0, such as range(1, 10).",
    ),
    "a range with step 0": (
        "data.batch_size=range(64,512,0)",
        "data.batch_size=range(64,512,0) holds no value",
        "give start below stop and a step above 0, such as range(1, 10).",
    ),
    "a log interval from 0": (
        "model.optimizer.lr=tag(log,interval(0,0.1))",
        "model.optimizer.lr=tag(log,interval(0,0.1)): a log scale needs bounds above 0, not 0",
        "give a low bound such as 1e-05, or drop log.",
    ),
    "a log interval from below 0": (
        "model.optimizer.lr=tag(log,interval(-0.1,0.1))",
        "model.optimizer.lr=tag(log,interval(-0.1,0.1)): a log scale needs bounds above 0, not -0.1",
        "drop log.",
    ),
    "a choice of nothing": (  # as a config file's search space holds it (Hydra's parser refuses it on the command line)
        'hydra.sweeper.params={model.optimizer.lr:"choice()"}',
        "hydra.sweeper.params: model.optimizer.lr=choice() cannot be read (ValueError while evaluating 'choice()': "
        "empty choice is not legal)",
        "interval(low, high), tag(log, interval(low, high)) or tag(int, interval(low, high)).",
    ),
    "a tag that means nothing": (  # was taken as no tag: the log scale lost without a word
        "model.optimizer.lr=tag(lg,interval(0.0001,0.1))",
        "model.optimizer.lr=tag(lg,interval(0.0001,0.1)): the tag lg means nothing here; the tags are log",
        "as in tag(log, interval(0.0001, 0.1)) or tag(int, interval(16, 512)).",
    ),
    "whole numbers between bounds with decimals": (
        "data.batch_size=tag(int,interval(32.5,64))",
        "data.batch_size=tag(int,interval(32.5,64)): whole numbers need whole bounds",
        "such as tag(int, interval(16, 512)).",
    ),
    "a pruner's resource of 0": (  # Optuna took it, then divided by zero at each trial's first report: no pruning
        "hydra.sweeper={pruner:hyperband,pruner_options:{min_resource:0}}",
        "hydra.sweeper.pruner_options.min_resource=0 must be a positive whole number",
        "such as 1.",
    ),
    "no search space": (  # n identical trials, each with the same seed
        "hydra.sweeper.params=null",
        "the search space is empty, so every trial would train the same run",
        "or key=choice(a, b) on the command line.",
    ),
    "hydra-optuna-sweeper's class": (  # lightning-hydra-template's hparams_search files name it
        "hydra.sweeper._target_=hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
        "hydra.sweeper._target_=hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper cannot be imported;",
        "and Hydra's basic one (-m with key=a,b), chosen without a _target_.",
    ),
    "hydra-optuna-sweeper's sampler": (
        "+hydra.sweeper.sampler={_target_:optuna.samplers.TPESampler,seed:7}",
        "hydra.sweeper.sampler is a sampler's name here (tpe, random, gp, cmaes, qmc, nsga2), not hydra-optuna-",
        "give its seed as hydra.sweeper.seed and its other arguments as hydra.sweeper.sampler_options.",
    ),
    "an SQLite file in a folder that does not exist": (
        "hydra.sweeper.storage=sqlite:////no/such/dir/x.db",
        "hydra.sweeper.storage=sqlite:////no/such/dir/x.db: the folder /no/such/dir does not exist",
        "create it, or name a file in a folder that exists.",
    ),
    "an SQLite storage that is a folder": (
        "hydra.sweeper.storage=sqlite:///{tmp}",
        "hydra.sweeper.storage=sqlite:///{tmp} is a folder",
        "name a file in it (a new name starts a study).",
    ),
    "a file that is not an SQLite database": (
        "hydra.sweeper.storage=sqlite:///notes.txt",
        "hydra.sweeper.storage=sqlite:///{tmp}/notes.txt cannot be opened as an SQLite database (file is not a "
        "database)",
        "name another file (a new name starts a study), or a study's database file.",
    ),
    "a journal of random bytes": (
        "hydra.sweeper.storage=journal:random.bin",
        f"hydra.sweeper.storage=journal:{{tmp}}/random.bin {NOT_A_JOURNAL}",
        "(a new name starts a study), or a study's journal file.",
    ),
    "a journal that is another program's text": (
        "hydra.sweeper.storage=journal:notes.txt",
        f"hydra.sweeper.storage=journal:{{tmp}}/notes.txt {NOT_A_JOURNAL}",
        "(a new name starts a study), or a study's journal file.",
    ),
    "a journal that is another program's one line": (  # Optuna itself takes it for an entry being written
        "hydra.sweeper.storage=journal:one_line.txt",
        f"hydra.sweeper.storage=journal:{{tmp}}/one_line.txt {NOT_A_JOURNAL}",
        "or a study's journal file.",
    ),
    "a journal in a folder that does not exist": (
        "hydra.sweeper.storage=journal:/no/such/dir/study.log",
        "hydra.sweeper.storage=journal:/no/such/dir/study.log: the folder /no/such/dir does not exist",
        "create it, or name a file in a folder that exists.",
    ),
}


def other_programs_files(folder: Path) -> dict[str, bytes]:
    """Files that other programs wrote, named as the cases above name them, written into ``folder``."""
    files = {
        "notes.txt": b"2026-12-01 19:00:00 started\n2026-12-01 19:00:05 done\n",
        "one_line.txt": b"lr sweep: see the wiki\n",
        "random.bin": random.Random(0).randbytes(4096),
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return files


# Through the command line: one case of each kind (a start of python -m lenet_exp each, about 6 s); every case
# goes through the same check from lenet_exp.sweep below.
ON_THE_COMMAND_LINE = [
    "bounds backwards",
    "a log interval from 0",
    "a choice of nothing",
    "hydra-optuna-sweeper's class",  # Hydra makes the sweeper after lenet_exp's callback checks its class
    "an SQLite file in a folder that does not exist",
    "a journal of random bytes",
]


@pytest.mark.slow
@pytest.mark.parametrize("case", ON_THE_COMMAND_LINE)
def test_a_bad_search_setting_is_one_sentence_before_any_trial(case, tmp_path):
    setting, begins, to_do = (text.replace("{tmp}", str(tmp_path)) for text in CASES[case])
    files = other_programs_files(tmp_path)
    out = run_cli(*STUDY, setting, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=120)
    everything = out.stdout + out.stderr
    last = [line for line in out.stderr.splitlines() if line.strip()][-1]
    assert out.returncode == 1, everything
    assert last.startswith(f"error: {begins}") and last.endswith(f"{to_do} Nothing was run."), everything
    assert "Traceback" not in everything and "raised" not in everything, everything  # no Hydra callback warning
    assert "epoch" not in everything, everything  # nothing trained
    assert not (tmp_path / "sweep").exists()  # no job folder, no study in it
    assert {name: (tmp_path / name).read_bytes() for name in files} == files  # other programs' files untouched


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_the_python_api_raises_the_same_sentences(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the cases' relative paths, as from a notebook in this folder
    other_programs_files(tmp_path)
    for case, (setting, begins, to_do) in CASES.items():
        setting, begins, to_do = (text.replace("{tmp}", str(tmp_path)) for text in (setting, begins, to_do))
        with pytest.raises(UserError) as refused:
            lenet_exp.sweep(*STUDY, setting, f"hydra.sweep.dir={tmp_path / 'sweep'}")
        sentence = str(refused.value)
        assert sentence.startswith(begins) and sentence.endswith(to_do), (case, sentence)
        assert not (tmp_path / "sweep").exists(), case


def test_hydra_optuna_sweepers_int_tag_is_a_distribution_of_whole_numbers():
    """tag(int, interval(32, 64)) (hydra-optuna-sweeper's words) searched numbers with decimals: every trial of a
    batch size failed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.lenet_exp_optuna._plan import distribution

    def parsed(override):
        return distribution(OverridesParser.create().parse_override(override))

    assert parsed("data.batch_size=tag(int, interval(32, 64))") == optuna.distributions.IntDistribution(32, 64)
    assert parsed("data.batch_size=tag(int, log, interval(16, 512))") == optuna.distributions.IntDistribution(
        16, 512, log=True
    )


def needs_scipy(sampler: str) -> str:
    return (
        f"hydra.sweeper.sampler={sampler} needs SciPy, which is not installed here: pip install 'lenet_exp[samplers]' "
        "(or scipy), or choose one of tpe, random, cmaes, nsga2."
    )


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("scipy") is not None, reason="SciPy is installed (make setup leaves it out)"
)
def test_a_sampler_that_needs_scipy_is_one_sentence_where_it_is_not_installed(tmp_path):
    """gp and qmc are Optuna's samplers that compute with SciPy, an extra (lenet_exp[samplers]): without it, the
    study is refused before any trial, from the command line and from lenet_exp.sweep, not failed trial by trial."""
    out = run_cli(*STUDY, "hydra.sweeper.sampler=gp", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"error: {needs_scipy('gp')} Nothing was run."
    assert not (tmp_path / "sweep").exists()
    with pytest.raises(UserError) as refused:
        lenet_exp.sweep(*STUDY, "hydra.sweeper.sampler=qmc", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert str(refused.value) == needs_scipy("qmc") and not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_the_sweepers_own_refusal_is_one_line_without_a_traceback(tmp_path):
    """Without SweepChecks (or should a storage go away between the check and the study), the sweeper itself
    says the sentence; Hydra adds its hint about HYDRA_FULL_ERROR after it."""
    other_programs_files(tmp_path)
    out = run_cli(
        *STUDY,
        "~hydra.callbacks.sweep_checks",
        "hydra.sweeper.storage=journal:notes.txt",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        timeout=120,
    )
    everything = out.stdout + out.stderr
    assert out.returncode == 1, everything
    assert f"error: hydra.sweeper.storage=journal:{tmp_path}/notes.txt {NOT_A_JOURNAL}" in out.stderr, everything
    assert "Traceback" not in everything and "raised" not in everything, everything
    assert not any(p.is_dir() for p in (tmp_path / "sweep").iterdir())  # multirun.yaml only: no job ran


def test_journals_of_optuna_still_open_and_one_with_another_programs_lines_is_refused(tmp_path):
    """The journal check refuses only what is not Optuna's: a new file, an empty one, a study's journal and one
    whose first entry is still being written open; a study's journal with another program's lines appended is
    refused with Optuna's own reason."""
    journal = tmp_path / "study.log"
    open_storage(f"journal://{journal}")  # a new file
    optuna.create_study(study_name="lenet", storage=open_storage(f"journal://{journal}"))
    assert open_storage(f"journal://{journal}").get_all_studies()[0].study_name == "lenet"
    first = journal.read_bytes().split(b"\n")[0]
    assert "op_code" in json.loads(first)
    being_written = tmp_path / "being_written.log"
    being_written.write_bytes(first[:10])  # a writer's first entry, not yet whole
    open_storage(f"journal://{being_written}")
    with journal.open("ab") as file:
        file.write(b"appended by another program\nand more\n")
    with pytest.raises(UserError, match=r"is not an Optuna journal \(Expecting value: line 1 column 1"):
        open_storage(f"journal://{journal}")


@pytest.mark.slow  # three SQLite studies created, a second: make test runs it, make test-fast does not
def test_a_sweep_folder_named_with_url_characters_keeps_its_study_inside(tmp_path, monkeypatch):
    """SQLAlchemy reads ``?`` in a URL as the start of its query and ``#`` as its fragment: the study of a sweep
    folder so named is still the optuna.db inside it, and one named in another such folder stays apart from it."""
    monkeypatch.chdir(tmp_path)
    for name in ("my study?/a#b", "my study?/c%20d"):
        folder = tmp_path / name
        folder.mkdir(parents=True)
        url = storage_url(None, str(folder))
        optuna.create_study(study_name="lenet", storage=open_storage(url))
        assert (folder / "optuna.db").is_file(), url
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "my study?/a#b/optuna.db",
        "my study?/c%20d/optuna.db",
    ]
    given = storage_url("sqlite:///q?1.db", str(tmp_path))  # a file the user names, from the current folder
    open_storage(given)
    assert (tmp_path / "q?1.db").is_file()


def test_a_worker_stopped_by_an_interrupt_fails_its_trials_saying_so():
    from hydra_plugins.lenet_exp_optuna.sweeper import _why

    assert _why(KeyboardInterrupt()) == "interrupted: Ctrl-C" == _why(SystemExit(130))  # lenet_exp's run ends with 130
    assert _why(SystemExit(143)) == "interrupted: SIGTERM"
    assert _why(RuntimeError("the launcher broke")) == "RuntimeError: the launcher broke"


def test_an_interrupted_trial_says_that_a_resume_finishes_its_run_outside_the_study(caplog):
    """The resume line alone let a user resume a trial's folder and expect the study to count it; the study
    kept it failed (and its metrics.json had no trial)."""
    from types import SimpleNamespace

    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from hydra_plugins.lenet_exp_optuna._job import TrialHandoff
    from lenet_exp.trial import PruneTrial

    caplog.set_level("WARNING", logger="lenet_exp")
    callback = PruneTrial(TrialHandoff(trial_id=8, number=7), "val_acc", "lenet")
    for stop in (KeyboardInterrupt(), SIGTERMException()):
        callback.on_exception(SimpleNamespace(is_global_zero=True), None, stop)
    callback.on_exception(SimpleNamespace(is_global_zero=True), None, RuntimeError("a bug"))  # not an interrupt
    said = "trial 7 of study lenet is marked failed when its worker stops, unless SLURM requeues its job: resuming"
    assert caplog.text.count(said) == 2


def test_optimized_metric_names_none_one_or_several_metrics_and_nothing_else():
    from omegaconf import OmegaConf

    from lenet_exp.runtime.checks import objectives

    for none in (None, "", False, []):  # false: a switch written off, as before
        assert objectives(none) == []
    assert objectives("val_acc") == objectives(OmegaConf.create(["val_acc"])) == ["val_acc"]
    assert objectives(OmegaConf.create(["val_acc", "seconds_per_epoch"])) == ["val_acc", "seconds_per_epoch"]
    for wrong in (5, 0, True, {"a": 1}, ["val_acc", 1]):
        with pytest.raises(UserError, match=r"names no metric; give one of train_loss, .* for a Pareto front"):
            objectives(wrong)
