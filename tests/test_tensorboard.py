"""A real TensorBoard server shows a run's scalars, HParams and images."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from conftest import ONE_EPOCH, ROOT, compose_config, event_dir, free_port, get, scalars

from lenet_exp.train import train

pytestmark = pytest.mark.slow  # every test here starts processes (sweeps, servers)


def test_a_real_tensorboard_server_shows_the_scalars_hparams_and_images_of_a_run(tmp_path, fake_data):
    """Beside it in the logdir, a run of the book's protocol, which has no val_acc and whose folder TensorBoard
    reads first: TensorBoard's HParams tab takes one run's list of metrics for all, which hid val_acc."""
    run = tmp_path / "run"
    metrics = train(
        compose_config(run, [*ONE_EPOCH, "trainer.max_epochs=2", "data.val_size=16", f"data.data_dir={fake_data}"])
    )
    book = train(compose_config(tmp_path / "a-book", [*ONE_EPOCH, f"data.data_dir={fake_data}"]))
    assert "val_acc" not in book
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                runs = get(f"{base}/data/runs")
                if len(runs) == 2:
                    break
            except OSError:
                pass
            assert time.time() < deadline and server.poll() is None, "TensorBoard did not start"
            time.sleep(0.5)
        name = f"run/tensorboard/{event_dir(run).name}"
        assert sorted(runs) == sorted([name, f"a-book/tensorboard/{event_dir(tmp_path / 'a-book').name}"])
        query = urllib.parse.urlencode({"run": name, "tag": "train/loss"})
        points = get(f"{base}/data/plugin/scalars/scalars?{query}")
        assert [value for _, _, value in points] == pytest.approx([v for _, v in scalars(run, "train/loss")])
        assert len(points) == 2
        experiment = get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        hparams = {h["name"] for h in experiment["hparamInfos"]}
        assert {"model.optimizer.lr", "data.batch_size", "model.net.activation", "seed"} <= hparams
        metric_tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert metric_tags == {f"hparams/{name}" for name in ("test_acc", "val_acc", "train_loss", "seconds_per_epoch")}
        groups = get(
            f"{base}/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "startIndex": 0,
                "sliceSize": 10,
                "colParams": [],
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            },
        )["sessionGroups"]
        (group,) = [g for g in groups if g["sessions"][0]["name"] == name]
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert values["hparams/val_acc"] == pytest.approx(metrics["val_acc"])
        assert values["hparams/test_acc"] == pytest.approx(metrics["test_acc"])
        images = get(f"{base}/data/plugin/images/tags")[name]
        assert {"test/confusion_matrix", "test/misclassified"} <= images.keys()
    finally:
        server.terminate()
        server.wait(timeout=30)
