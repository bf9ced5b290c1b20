"""lenet_exp.report: one row per job of a sweep, failed jobs included."""

from __future__ import annotations

from conftest import run_cli, sweep

from lenet_exp.report import write_report


def test_report_lists_every_job_including_the_failed_one(tmp_path, fake_data):
    out, folder = sweep(tmp_path, fake_data, "data.batch_size=0,16", "trainer.max_epochs=2")
    assert out.returncode != 0  # one job failed; the other one ran
    printed = run_cli(str(folder), module="lenet_exp.report")
    assert printed.returncode == 0, printed.stderr
    rows = write_report(folder)
    assert [r["job"] for r in rows] == ["0", "1"]
    assert rows[0]["status"].startswith("failed: data.batch_size=0 must be a positive whole number")
    assert rows[1]["status"] == "ok" and rows[1]["test_acc"] is not None and len(rows[1]["curve"]) == 2
    csv_text = (folder / "summary.csv").read_text()
    assert csv_text.splitlines()[0] == "job,overrides,test_acc,val_acc,train_loss,seconds_per_epoch,status"
    assert "failed: data.batch_size=0" in csv_text and "failed: data.batch_size=0" in printed.stdout
    assert "| 1 | " in (folder / "summary.md").read_text() and "| 1 | " in printed.stdout
    png = (folder / "summary.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_report_refuses_a_folder_that_is_not_a_sweep(tmp_path):
    out = run_cli(str(tmp_path), module="lenet_exp.report")
    assert out.returncode == 1 and "holds no job folders" in out.stderr
