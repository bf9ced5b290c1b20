"""Beyond the book: the lenet_modern experiment, batch augmentation, schedules, and predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import apply, compose_config, real_data, run_cli
from hydra.utils import instantiate
from PIL import Image

from lenet_exp.augment import BatchAugment
from lenet_exp.checkpoint import load_checkpoint
from lenet_exp.data import CLASSES, find_files, load_split
from lenet_exp.predict import to_fashion_mnist
from lenet_exp.train import train

TINY = ["trainer=cpu", "data.verify_md5=false", "data.batch_size=16"]


def test_lenet_modern_composes_from_small_options_under_100k_parameters(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=lenet_modern"])
    assert cfg.trainer.max_epochs <= 20
    module = instantiate(cfg.model)
    assert sum(p.numel() for p in module.parameters()) <= 100_000
    kinds = {type(m).__name__ for m in module.net.modules()}
    assert {"ReLU", "BatchNorm2d", "BatchNorm1d"} <= kinds and "Sigmoid" not in kinds
    assert isinstance(module.augment, BatchAugment) and module.label_smoothing == 0.1
    assert cfg.model.optimizer._target_ == "torch.optim.AdamW"


def test_lenet_modern_passes_a_fast_dev_run(tmp_path, fake_data):
    cfg = compose_config(tmp_path, ["experiment=lenet_modern", *TINY, f"data.data_dir={fake_data}",
                                    "+trainer.fast_dev_run=true"])  # fmt: skip
    assert 0.0 <= train(cfg)["test_acc"] <= 1.0


def test_the_one_cycle_schedule_spans_the_whole_run(tmp_path, fake_data):
    cfg = compose_config(tmp_path, ["experiment=lenet_modern", *TINY, "trainer.max_epochs=2",
                                    f"data.data_dir={fake_data}"])  # fmt: skip
    train(cfg)
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    (schedule,) = checkpoint["lr_schedulers"]
    assert schedule["total_steps"] == 2 * 4  # 64 images / 16 per batch, two epochs
    assert schedule["last_epoch"] == 8  # stepped after every optimizer step: the cycle is complete


def test_batch_augment_shifts_within_the_padding_and_flips_repeatably():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 4:8] = 1.0  # a bar left of centre
    augment = BatchAugment(crop_padding=2, flip=True)
    out = augment(x, step=7)
    assert out.shape == x.shape and torch.equal(out, augment(x, step=7))
    assert not torch.equal(out, augment(x, step=8))
    assert torch.equal(out.sum((1, 2, 3)), x.sum((1, 2, 3)))  # a shift of <= 2 px keeps the whole bar
    columns = out[:, 0].sum(1).nonzero()[:, 1].view(64, -1)
    lefts = columns.min(1).values
    assert set(lefts.tolist()) <= {2, 3, 4, 5, 6} | {18, 19, 20, 21, 22}  # shifted, or flipped and shifted
    assert (lefts >= 18).any() and (lefts <= 6).any()


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


def test_predict_without_a_checkpoint_is_one_sentence(tmp_path):
    out = run_cli(f"ckpt_path={tmp_path / 'none.ckpt'}", f"images={tmp_path}", module="lenet_exp.predict")
    assert out.returncode == 1 and "does not exist" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_compiled_bf16_training_keeps_plain_checkpoints(tmp_path, fake_data):
    cfg = compose_config(tmp_path, [*TINY, "trainer.max_epochs=1", f"data.data_dir={fake_data}",
                                    "model.compile=true", "trainer.precision=bf16-mixed"])  # fmt: skip
    assert 0.0 <= train(cfg)["test_acc"] <= 1.0
    keys = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"].keys()
    assert "net.features.0.weight" in keys and not any("_orig_mod" in k for k in keys)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_data_lives_there_and_bf16_with_augmentation_trains(tmp_path, fake_data, monkeypatch):
    from lenet_exp.data import FashionMNIST

    overrides = ["experiment=lenet_modern", "trainer=gpu", "trainer.precision=bf16-mixed", "trainer.max_epochs=1"]
    cfg = compose_config(tmp_path, [*overrides, "data.verify_md5=false", f"data.data_dir={fake_data}"])
    devices = []
    setup = FashionMNIST.setup

    def spy(self, stage=None):
        setup(self, stage)
        devices.append(self.splits["train"].images.device.type)

    monkeypatch.setattr(FashionMNIST, "setup", spy)
    assert 0.0 <= train(cfg)["test_acc"] <= 1.0
    assert devices and set(devices) == {"cuda"}
