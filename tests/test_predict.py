"""lenet_exp.predict: pictures made like Fashion-MNIST's, labels for real test images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import apply, compose_config, real_data, run_cli
from PIL import Image

from lenet_exp.data import CLASSES, find_files, load_split
from lenet_exp.predict import to_fashion_mnist
from lenet_exp.train import train


def test_pictures_are_made_like_fashion_mnist_images():
    original = np.zeros((28, 28), dtype=np.uint8)
    original[6:22, 10:18] = 200  # a light object on black
    big_on_white = Image.fromarray(255 - original).resize((112, 112), Image.NEAREST)  # dark object on white
    made = to_fashion_mnist(big_on_white)
    assert made.shape == (28, 28) and made.dtype == np.float32
    assert np.abs(made - original / 255.0).mean() < 0.02
    bar = np.zeros((10, 40), dtype=np.uint8)
    bar[2:8, 2:38] = 255  # a light bar, 4 times wider than high, on black
    wide = to_fashion_mnist(Image.fromarray(bar).convert("RGB"))
    assert wide.shape == (28, 28)
    assert wide[:10].max() == 0.0 and wide[-10:].max() == 0.0  # aspect kept: black above and below, not stretched
    assert wide[12:15, 3:25].min() > 0.9  # the bar, scaled to 28 pixels wide, in the middle rows
    assert (
        to_fashion_mnist(Image.fromarray(np.full((10, 40), 255, dtype=np.uint8))).max() == 0.0
    )  # all white: background


@apply(real_data)
def test_predict_labels_real_test_images_and_names_an_unreadable_one(tmp_path):
    run = tmp_path / "run"
    train(compose_config(run, ["trainer=cpu", "trainer.max_epochs=1", "model.net.activation=relu"]))
    images, labels = load_split(find_files(Path("/nonexistent")), "test")
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(images[i].numpy()).save(folder / f"{i:02d}.png")
    (folder / "99-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    ckpt = run / "checkpoints" / "last.ckpt"

    out = run_cli(f"ckpt_path={ckpt}", f"images={folder}", module="lenet_exp.predict")
    assert out.returncode == 1  # one image could not be read
    assert f"{folder / '99-broken.png'} cannot be read: not a readable image" in out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 20 and all(line.count(",") == 2 for line in lines)  # top-3 each

    out = run_cli(f"ckpt_path={ckpt}", f"images={folder}", "format=json", module="lenet_exp.predict")
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(results) == 21 and "error" in results[-1]
    correct = sum(r["class"] == CLASSES[int(labels[i])] for i, r in enumerate(results[:20]))
    assert correct >= 12, correct
    first = results[0]["top"]
    assert len(first) == 3 and first[0]["probability"] >= first[1]["probability"] >= first[2]["probability"]
    assert sum(t["probability"] for t in first) <= 1.0001

    one = run_cli(f"ckpt_path={ckpt}", f"images={folder / '00.png'},{folder / '01.png'}", module="lenet_exp.predict")
    assert one.returncode == 0 and len(one.stdout.strip().splitlines()) == 2


@pytest.mark.slow
def test_predict_without_a_checkpoint_is_one_sentence(tmp_path):
    out = run_cli(f"ckpt_path={tmp_path / 'none.ckpt'}", f"images={tmp_path}", module="lenet_exp.predict")
    assert out.returncode == 1 and "does not exist" in out.stderr and "Traceback" not in out.stderr
