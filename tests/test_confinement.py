"""A run folder someone sent is data: resuming, evaluating or predicting from it writes only inside it,
follows no link planted in it, and contacts no server its config names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ONE_EPOCH, run_cli, unfinished_copy, write_fake_fashion_mnist

from lenet_exp.errors import UserError
from lenet_exp.runtime.atomic import atomic_write
from lenet_exp.runtime.results import append_jsonl


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished one-epoch run on synthetic data, with csv logging (its folder, checkpoint and .hydra/ files)."""
    folder = tmp_path_factory.mktemp("run")
    data = folder.with_name(folder.name + "-data")
    write_fake_fashion_mnist(data)
    out = run_cli(*ONE_EPOCH, f"data.data_dir={data}", f"hydra.run.dir={folder}", "logger=csv")
    assert out.returncode == 0, out.stdout + out.stderr
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


@pytest.mark.slow
def test_resume_writes_through_no_link_planted_in_the_folder(run, tmp_path):
    folder = unfinished_copy(run, tmp_path)
    (folder / "checkpoints" / "last.ckpt").unlink()  # nothing completed: resume trains the epoch again
    planted = ("checkpoints/last.ckpt.tmp", "metrics.json.tmp", "csv/metrics.csv.tmp")
    targets = [precious(tmp_path / str(i)) for i in range(len(planted))]
    for path, target in zip(planted, targets, strict=True):
        (folder / path).symlink_to(target)
    out = run_cli(str(folder), module="lenet_exp.resume")
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(target.read_text() == "mine\n" for target in targets)
    assert (folder / "metrics.json").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    assert not list(folder.rglob("*.tmp"))
