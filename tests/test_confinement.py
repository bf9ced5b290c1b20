"""A run folder someone sent is data: resuming, evaluating or predicting from it writes only inside it,
follows no link planted in it, and contacts no server its config names."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ONE_EPOCH, run_cli, run_main, unfinished_copy, write_fake_fashion_mnist
from omegaconf import OmegaConf

import lenet_exp
from lenet_exp.errors import UserError
from lenet_exp.runtime.checkpoints import CONFIG_KEY
from lenet_exp.runtime.results import append_jsonl
from lenet_exp.runtime.stored_config import open_stored, read_run
from lenet_exp.runtime.writes import atomic_write

STORED = Path(__file__).resolve().parent / "data" / "run_f701b51"  # a run folder of an earlier commit


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished one-epoch run on synthetic data, with csv logging (its folder, checkpoint and .hydra/ files)."""
    folder = tmp_path_factory.mktemp("run")
    data = folder.with_name(folder.name + "-data")
    write_fake_fashion_mnist(data)
    # in this process, as python -m lenet_exp writes it (the tests of that command run it as a process)
    lenet_exp.run(*ONE_EPOCH, f"data.data_dir={data}", f"hydra.run.dir={folder}", "logger=csv")
    return folder


def precious(tmp_path: Path) -> Path:
    """A file outside every run folder that a planted link points at."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    target = tmp_path / "precious.txt"
    target.write_text("mine\n")
    return target


def test_a_link_at_the_temporary_path_is_replaced_not_followed(tmp_path):
    target = precious(tmp_path)
    (tmp_path / "metrics.json.tmp").symlink_to(target)
    atomic_write(tmp_path / "metrics.json", b"{}\n")
    assert (tmp_path / "metrics.json").read_bytes() == b"{}\n" and not (tmp_path / "metrics.json").is_symlink()
    assert target.read_text() == "mine\n" and not (tmp_path / "metrics.json.tmp").exists()


def test_a_link_at_the_target_itself_is_replaced_by_the_file(tmp_path):
    target = precious(tmp_path)
    (tmp_path / "summary.csv").symlink_to(target)
    atomic_write(tmp_path / "summary.csv", b"a,b\n")
    assert not (tmp_path / "summary.csv").is_symlink() and target.read_text() == "mine\n"


def test_an_append_refuses_a_planted_link(tmp_path):
    target = precious(tmp_path)
    (tmp_path / "evaluations.jsonl").symlink_to(target)
    with pytest.raises(UserError, match=r"evaluations.jsonl is a symbolic link; .* remove the link"):
        append_jsonl(tmp_path / "evaluations.jsonl", {"test_acc": 0.5})
    assert target.read_text() == "mine\n"
    (tmp_path / "evaluations.jsonl").unlink()
    append_jsonl(tmp_path / "evaluations.jsonl", {"test_acc": 0.5})
    append_jsonl(tmp_path / "evaluations.jsonl", {"test_acc": 0.6})
    lines = (tmp_path / "evaluations.jsonl").read_text().splitlines()
    assert [json.loads(line)["test_acc"] for line in lines] == [0.5, 0.6]
    # a line left half written (a killed process, a copy cut short): the next record is a line of its own
    with open(tmp_path / "evaluations.jsonl", "a") as f:
        f.write('{"test_acc": 0.7, "ckpt')
    append_jsonl(tmp_path / "evaluations.jsonl", {"test_acc": 0.8})
    lines = (tmp_path / "evaluations.jsonl").read_text().splitlines()
    assert lines[2] == '{"test_acc": 0.7, "ckpt' and json.loads(lines[3]) == {"test_acc": 0.8}


@pytest.mark.slow
def test_resume_writes_through_no_link_planted_in_the_folder(run, tmp_path):
    folder = unfinished_copy(run, tmp_path)
    (folder / "checkpoints" / "last.ckpt").unlink()  # nothing completed: resume trains the epoch again
    # (hparams.yaml: Lightning's writer opened it, so the settings went over the file its link named)
    planted = ("checkpoints/last.ckpt.tmp", "metrics.json.tmp", "csv/metrics.csv.tmp", "csv/hparams.yaml")
    targets = [precious(tmp_path / str(i)) for i in range(len(planted))]
    for path, target in zip(planted, targets, strict=True):
        (folder / path).unlink(missing_ok=True)
        (folder / path).symlink_to(target)
    out = run_main("lenet_exp.resume", str(folder))  # in this process, as the command runs
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(target.read_text() == "mine\n" for target in targets)
    assert (folder / "metrics.json").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    assert not list(folder.rglob("*.tmp"))
    hparams = folder / "csv" / "hparams.yaml"
    assert not hparams.is_symlink() and "seed: 42" in hparams.read_text()


@pytest.mark.slow
def test_resume_refuses_a_link_planted_in_the_runs_mlflow_store(tmp_path):
    """SQLite and MLflow wrote through a link at mlflow/mlflow.db (or artifacts/): the database, or the run's
    pictures, outside the folder."""
    data, run = tmp_path / "data", tmp_path / "run"
    write_fake_fashion_mnist(data)
    lenet_exp.run(*ONE_EPOCH, f"data.data_dir={data}", f"hydra.run.dir={run}", "logger=mlflow")
    for planted in ("mlflow.db", "artifacts"):
        folder = unfinished_copy(run, tmp_path / planted)
        outside = tmp_path / f"outside-{planted}"
        (folder / "mlflow" / planted).rename(outside)  # what it held, now where the link points
        (folder / "mlflow" / planted).symlink_to(outside)
        before = sorted((p.name, p.stat().st_mtime_ns) for p in [outside, *outside.rglob("*")])
        out = run_main("lenet_exp.resume", str(folder))
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        said = f"error: {folder / 'mlflow' / planted} is a symbolic link; a run's MLflow store is plain files in its"
        assert said in out.stderr, out.stderr
        assert sorted((p.name, p.stat().st_mtime_ns) for p in [outside, *outside.rglob("*")]) == before
        assert not (folder / "metrics.json").exists()


@pytest.mark.parametrize("name", ["../../escaped", "{tmp_path}/escaped"])
@pytest.mark.slow
def test_resume_appends_its_log_to_no_file_the_folders_job_name_points_outside(run, tmp_path, name):
    """The run's log file is named by hydra.job.name in the folder's .hydra/hydra.yaml, which whoever sent the
    folder could have written: a name that is not a plain file name is refused, and nothing is written."""
    folder, name = unfinished_copy(run, tmp_path / "sent" / "deep"), name.format(tmp_path=tmp_path)
    stored = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())
    stored["hydra"]["job"]["name"] = name
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(stored))
    before = sorted(tmp_path.rglob("*"))
    out = run_main("lenet_exp.resume", str(folder))  # in this process, as the command runs
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"{folder}/.hydra cannot be read (its hydra.job.name {name!r} is not a file name)" in out.stderr
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.slow
def test_resume_reads_the_checkpoint_once_and_lightning_restores_what_the_gate_checked(run, tmp_path, monkeypatch):
    """The gate reads last.ckpt (as data) and hands what it checked to Lightning's fit: the file is not read
    again, so a file changed in between could not be restored unchecked."""
    from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

    from lenet_exp.runtime import stored_config

    folder, reads = unfinished_copy(run, tmp_path), []
    gate, lightning = stored_config._read_checkpoint, TorchCheckpointIO.load_checkpoint
    monkeypatch.setattr(stored_config, "_read_checkpoint", lambda path: reads.append(("gate", path)) or gate(path))
    monkeypatch.setattr(
        TorchCheckpointIO,
        "load_checkpoint",
        lambda io, path, *a, **k: reads.append(("lightning", Path(path))) or lightning(io, path, *a, **k),
    )
    out = run_main("lenet_exp.resume", str(folder))  # its one epoch is done: the fit restores it, then tests
    assert out.returncode == 0, out.stdout + out.stderr
    assert [who for who, path in reads if path.name == "last.ckpt"] == ["gate"], reads
    assert (folder / "metrics.json").is_file()


def edit_config(folder: Path, edit) -> None:
    """Change the run's stored config (.hydra/config.yaml) as whoever sent the folder could."""
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    edit(config)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


OUT = "writes outside"  # a name joined onto a folder that leaves it


def stored_in(run: Path, config: dict) -> Path:
    """A checkpoint in ``run`` that stores ``config`` (beside the model part every checkpoint has; no weights)."""
    path = run / "checkpoints" / "sent.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, CONFIG_KEY: {"model": {}, **config}}, path)
    return path


@pytest.mark.parametrize(
    ("config", "key", "says"),
    [
        ({"callbacks": {"checkpoint": {"dirpath": "/tmp/x"}}}, "callbacks.checkpoint.dirpath", "writes into"),
        ({"logger": {"csv": {"save_dir": "relative/to/cwd"}}}, "logger.csv.save_dir", "writes into"),
        ({"trainer": {"default_root_dir": "/run/../elsewhere"}}, "trainer.default_root_dir", "writes into"),
        ({"data": {"data_dir": "/tmp/d", "download": True}}, "data.data_dir", "downloads into"),
        ({"logger": {"m": {"tracking_uri": "databricks"}}}, "logger.m.tracking_uri", "a server"),
        ({"logger": {"tb": {"save_dir": "s3://bucket/runs"}}}, "logger.tb.save_dir", "a server"),
        ({"callbacks": {"checkpoint": {"dirpath": None, "filename": "/tmp/x"}}}, "callbacks.checkpoint.filename", OUT),
        (
            {"callbacks": {"best": {"dirpath": "{run}/checkpoints", "filename": "../../x"}}},
            "callbacks.best.filename",
            OUT,
        ),
        ({"logger": {"tb": {"save_dir": "{run}", "name": "../x"}}}, "logger.tb.name", OUT),
        ({"logger": {"tb": {"save_dir": "{run}", "name": "tb", "version": "/tmp/x"}}}, "logger.tb.version", OUT),
        (
            {"logger": {"csv": {"save_dir": "{run}", "version": "a/../b", "sub_dir": "../../c"}}},
            "logger.csv.sub_dir",
            OUT,
        ),
    ],
)
def test_a_stored_path_outside_the_run_or_a_server_is_one_sentence_naming_the_key(config, key, says, tmp_path):
    config = json.loads(json.dumps(config).replace("{run}", str(tmp_path / "run")))
    path = stored_in(tmp_path / "run", config)
    with pytest.raises(UserError, match=rf"^ckpt_path={path} names {key}=.*{says}.*{key}=") as err:
        open_stored(path)  # a command that builds all of it
    assert "\n" not in str(err.value)
    value = OmegaConf.select(OmegaConf.create(config), key)
    open_stored(path, given=[f"{key}={value}"])  # the user named it: their choice


def test_paths_inside_the_run_and_a_data_folder_only_read_are_accepted(tmp_path):
    run = tmp_path / "run"
    inside = {
        "callbacks": {"checkpoint": {"dirpath": f"{run}/checkpoints", "filename": "best-{epoch}-{val/acc:.2f}"}},
        "logger": {"csv": {"save_dir": str(run), "name": "csv", "version": "a/../b", "sub_dir": None}},
        "model": {"name": "/not/a/file"},  # a name that is joined onto no folder
        "data": {"data_dir": "/usr/share/datasets/fashion-mnist", "download": False},
    }
    open_stored(stored_in(run, inside))


@pytest.mark.slow
def test_the_users_key_is_given_again_before_confinement_and_only_that_key(tmp_path):
    """The gate's order: the keys the user gives replace the stored ones before the stored config is confined,
    so naming a refused key again allows it (with the user's value), and nothing else."""
    folder = tmp_path / "run"
    shutil.copytree(STORED, folder)
    edit_config(folder, lambda c: c["logger"].__setitem__("mlflow", {"tracking_uri": "http://sent.example:5000"}))
    edit_config(folder, lambda c: c["callbacks"]["checkpoint"].__setitem__("dirpath", str(tmp_path / "outside")))
    server, mine = "logger.mlflow.tracking_uri", tmp_path / "mine"
    with pytest.raises(UserError, match="names callbacks.checkpoint.dirpath=.*outside, which writes into a folder"):
        open_stored(read_run(folder))
    with pytest.raises(UserError, match=f"names {server}=http://sent.example:5000, a server"):
        open_stored(read_run(folder), given=[f"callbacks.checkpoint.dirpath={mine}"])
    opened = open_stored(read_run(folder), given=[f"{server}=null", f"callbacks.checkpoint.dirpath={mine}"])
    assert opened.config.logger.mlflow.tracking_uri is None and opened.config.callbacks.checkpoint.dirpath == str(mine)
    assert opened.checkpoint["epoch"] == 1  # its last.ckpt, opened with it
    with pytest.raises(UserError, match="^trainer.max_epochs is not an argument of this command: of .*config.yaml"):
        open_stored(read_run(folder), given=["trainer.max_epochs=3"])


@pytest.mark.slow
def test_a_file_name_or_logger_folder_name_that_leaves_the_run_folder_is_refused_unless_i_give_it(tmp_path):
    """Lightning joins a checkpoint's filename and a logger's name and version onto their folders: an absolute
    value or one with '..' parts wrote there from a sent folder's config, past the confined folders."""
    folder = tmp_path / "run"
    shutil.copytree(STORED, folder)
    edit_config(folder, lambda c: c["callbacks"]["checkpoint"].__setitem__("filename", str(tmp_path / "x")))
    edit_config(folder, lambda c: c["logger"]["tensorboard"].__setitem__("name", "../../tb"))
    key = "callbacks.checkpoint.filename"
    with pytest.raises(UserError, match=f"names {key}={tmp_path / 'x'}, which writes outside the folder .*{key}="):
        open_stored(read_run(folder))
    with pytest.raises(UserError, match="names logger.tensorboard.name=../../tb, which writes outside"):
        open_stored(read_run(folder), given=[f"{key}=last"])
    opened = open_stored(read_run(folder), given=[f"{key}=last", "logger.tensorboard.name=../../tb"])
    assert opened.config.logger.tensorboard.name == "../../tb"  # the user named it: their choice


@pytest.mark.slow
def test_resume_writes_nowhere_outside_the_folder_unless_i_say_so(run, tmp_path):
    folder, outside = unfinished_copy(run, tmp_path), tmp_path / "outside"
    (folder / "checkpoints" / "last.ckpt").unlink()
    edit_config(folder, lambda c: c["callbacks"]["checkpoint"].__setitem__("dirpath", str(outside)))
    out = run_main("lenet_exp.resume", str(folder))  # refused in this process; the resume with my key as a command
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"names callbacks.checkpoint.dirpath={outside}, which writes into a folder outside" in out.stderr
    assert "Give callbacks.checkpoint.dirpath=<folder> on the command line" in out.stderr
    assert not outside.exists() and not (folder / "metrics.json").exists()
    mine = run_cli(str(folder), f"callbacks.checkpoint.dirpath={outside}", module="lenet_exp.resume")
    assert mine.returncode == 0, mine.stdout + mine.stderr
    assert (outside / "last.ckpt").is_file() and (folder / "metrics.json").is_file()


@pytest.mark.slow
def test_resume_contacts_no_server_the_folder_names(run, tmp_path):
    """A real listener on 127.0.0.1 stands for the server; it must see no connection at all."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        folder = unfinished_copy(run, tmp_path)
        mlflow = {"_target_": "pytorch_lightning.loggers.MLFlowLogger", "experiment_name": "x", "tracking_uri": uri}
        edit_config(folder, lambda c: c["logger"].__setitem__("mlflow", mlflow))
        out = run_main("lenet_exp.resume", str(folder))  # in this process: refused before Lightning loads
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"names logger.mlflow.tracking_uri={uri}, a server lenet_exp contacts only when you name it" in out.stderr
    assert f"Add logger.mlflow.tracking_uri={uri} to the command" in out.stderr


@pytest.mark.slow
def test_eval_downloads_into_no_folder_outside_the_run(run, tmp_path):
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    outside = tmp_path / "outside"
    checkpoint[CONFIG_KEY]["data"].update(data_dir=str(outside), download=True)
    sent = tmp_path / "sent"
    (sent / "checkpoints").mkdir(parents=True)
    ckpt = sent / "checkpoints" / "last.ckpt"
    torch.save(checkpoint, ckpt)
    out = run_main("lenet_exp.eval", f"ckpt_path={ckpt}", "accelerator=cpu")  # a traceback would raise here
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"names data.data_dir={outside}, which downloads into a folder outside the run folder {sent}" in (out.stderr)
    assert not outside.exists() and not (sent / "evaluations.jsonl").exists()


def test_the_resume_line_names_a_folder_given_relative_as_absolute_and_trusts_the_users_own_classes(
    tmp_path, monkeypatch
):
    """What a run's resume line must give again, so that it runs as printed from any folder: the sweep's MLflow
    store (given relative to the folder the sweep started in) as an absolute folder, and trust= of a class of
    the user's own, which resume builds only when trusted (docs/own-model.md)."""
    from lenet_exp.runtime.stored_config import resume_arguments

    monkeypatch.chdir(tmp_path)
    config = {
        "model": {"_target_": "lenet_exp.classifier.Classifier", "net": {"_target_": "my_models.SmallCNN"}},
        "logger": {"mlflow": {"_target_": "lenet_exp.loggers.RunMLFlowLogger", "save_dir": "sweep/mlflow"}},
    }
    assert resume_arguments(config, tmp_path / "sweep" / "0") == [
        f"logger.mlflow.save_dir={tmp_path / 'sweep' / 'mlflow'}",
        "trust=my_models.SmallCNN",
    ]
