"""lenet_exp.predict: pictures made like Fashion-MNIST's, labels for real test images."""

from __future__ import annotations

import json
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, apply, compose_config, real_data, run_main
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from lenet_exp import load
from lenet_exp.data import CLASSES, find_files, load_split
from lenet_exp.errors import UserError
from lenet_exp.predict import MAX_PIXELS, as_batch, blank, image_paths, main, read_image, to_fashion_mnist
from lenet_exp.runtime.checkpoints import CONFIG_KEY
from lenet_exp.train import train


def test_pictures_are_made_like_fashion_mnist_images():
    original = np.zeros((28, 28), dtype=np.uint8)
    original[2:26, 8:20] = 200  # a light object on black, its longer side 24 pixels
    assert np.abs(to_fashion_mnist(Image.fromarray(original)) * 255 - original).max() < 1e-3  # 28x28: as it is
    framed = np.full((160, 200), 255, dtype=np.uint8)  # a dark object photographed on white, with wide margins
    framed[20:116, 50:98] = 255 - 200
    made = to_fashion_mnist(Image.fromarray(framed))
    filled = np.zeros((28, 28), dtype=np.uint8)
    filled[:, 7:21] = 200  # trimmed to the object, its longer side scaled to 28 pixels, centred
    assert made.shape == (28, 28) and made.dtype == np.float32
    assert np.abs(made - filled / 255.0).mean() < 0.02
    bar = np.zeros((10, 40), dtype=np.uint8)
    bar[2:8, 2:38] = 255  # a light bar on black, 6 times wider than high
    wide = to_fashion_mnist(Image.fromarray(bar).convert("RGB"))
    assert wide.shape == (28, 28)
    assert wide[:10].max() == 0.0 and wide[-10:].max() == 0.0  # aspect kept: black above and below, not stretched
    assert wide[12:16, 1:27].min() > 0.9  # the bar, scaled to 28 pixels wide, in the middle rows
    white = to_fashion_mnist(Image.fromarray(np.full((10, 40), 255, dtype=np.uint8)))
    assert white.max() == 0.0 and blank(white)  # all white: background, said to be blank


@pytest.mark.parametrize("shade", [230, 200, 150, 110])
def test_a_background_of_any_shade_becomes_black_and_a_darker_object_light(shade):
    """A photo on grey, not white: its background is black in Fashion-MNIST's form, the object as light as on
    white, also where the grey is darker than mid-grey (the object is still darker than it)."""
    original = np.zeros((28, 28), dtype=np.uint8)
    original[:, 10:18], original[8:16, 2:26] = 255, 255  # a light cross on black, 28 pixels high
    on_grey = np.rint(shade * (1 - original / 255.0)).astype(np.uint8)  # the object black, the background grey
    made = to_fashion_mnist(Image.fromarray(on_grey).resize((84, 84), Image.NEAREST))
    assert np.abs(made - original / 255.0).mean() < 0.02, shade
    assert not blank(made)


@pytest.mark.parametrize("kind", ["16-bit", "32-bit", "float"])
def test_grayscale_pictures_with_wider_values_are_made_as_their_8_bit_version(tmp_path, kind):
    """PIL clips such modes when it converts them to 8 bits: a 16-bit scan came out all white, a float image
    in [0, 1] all black. Read from a file, as predict reads them, they give the 8-bit picture's input."""
    shape = np.zeros((28, 28), dtype=np.uint8)
    shape[6:22, 10:18], shape[10:14, 4:24] = 200, 120  # a light object on black, in two shades
    wide = {"16-bit": shape.astype(np.uint16) * 257, "32-bit": shape.astype(np.int32) * 1000}
    wide["float"] = shape.astype(np.float32) / 200.0  # 0 to 1
    path = tmp_path / ("shape.png" if kind == "16-bit" else "shape.tiff")
    Image.fromarray(wide[kind]).save(path)
    with Image.open(path) as image:
        assert image.mode in ("I;16", "I", "F"), image.mode  # as a scanner or a numpy array leaves them
        made = to_fashion_mnist(image)
    expected = to_fashion_mnist(Image.fromarray(shape if kind == "16-bit" else (shape / 200 * 255).astype(np.uint8)))
    assert np.abs(made - expected).max() <= 1.5 / 255, kind


def test_a_cut_out_with_a_transparent_background_is_made_as_the_object_on_white(tmp_path):
    """A product cut-out: a dark object, opaque, on a transparent background whose hidden colour is black. Its
    hidden colours are not the picture: it is made as the same object photographed on white."""
    on_white = np.full((40, 40, 3), 255, dtype=np.uint8)
    on_white[8:32, 14:26] = 30  # a dark object
    cut_out = np.zeros((40, 40, 4), dtype=np.uint8)  # transparent black everywhere...
    cut_out[8:32, 14:26] = (30, 30, 30, 255)  # ...but the object
    Image.fromarray(cut_out).save(tmp_path / "cut_out.png")
    with Image.open(tmp_path / "cut_out.png") as image:
        made = to_fashion_mnist(image)
    expected = to_fashion_mnist(Image.fromarray(on_white))
    assert expected.max() > 0.8 and np.abs(made - expected).max() <= 1 / 255


def test_a_light_cut_out_is_put_on_black_and_a_16_bit_one_keeps_its_transparent_value(tmp_path):
    """A white garment cut out on transparency: on white it would vanish (all black, predicted as nothing), so
    it is put on black. A 16-bit picture with a transparent value gives its 8-bit version's input."""
    shape = np.zeros((40, 40), dtype=np.uint8)
    shape[8:32, 14:26] = 255
    white_cut_out = np.zeros((40, 40, 4), dtype=np.uint8)
    white_cut_out[..., :3], white_cut_out[..., 3] = 255, shape  # white everywhere, opaque only in the object
    expected = to_fashion_mnist(Image.fromarray(shape))
    made = to_fashion_mnist(Image.fromarray(white_cut_out))
    assert expected.max() > 0.9 and np.abs(made - expected).max() <= 1 / 255
    grey = np.where(shape > 0, 180, 0).astype(np.uint8)  # a light object, its background transparent black
    Image.fromarray(grey).save(tmp_path / "eight.png", transparency=0)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "sixteen.png", transparency=0)
    with Image.open(tmp_path / "eight.png") as eight, Image.open(tmp_path / "sixteen.png") as sixteen:
        assert sixteen.mode == "I;16" and sixteen.info["transparency"] == 0
        made8, made16 = to_fashion_mnist(eight), to_fashion_mnist(sixteen)
    assert made16.max() > 0.6 and np.abs(made16 - made8).max() <= 1 / 255  # 180 / 255


def test_pictures_that_cannot_be_made_are_one_sentence_naming_why(tmp_path, caplog):
    """Each file's reason, and the same sentence from Python for PIL images and paths (never a traceback)."""
    Image.fromarray(np.full((28, 28), np.nan, dtype=np.float32)).save(tmp_path / "nan.tiff")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    np.save(tmp_path / "arrays.npy", np.zeros((2, 28, 28), dtype=np.uint8))
    reasons = {
        "nan.tiff": "it holds values that are not numbers (NaN) or infinite",
        "loop1": "a loop of symbolic links",
        "missing.png": "no such file",
        "arrays.npy": "it is a NumPy file, not a picture; give its array to lenet_exp.load(<checkpoint>).predict(",
    }
    for name, reason in reasons.items():
        with pytest.raises(UserError) as refused:
            read_image(tmp_path / name)
        assert str(refused.value).startswith(f"{tmp_path / name} cannot be read: {reason}"), name
    closed = Image.fromarray(np.zeros((28, 28), dtype=np.uint8))
    closed.close()
    pictures = [
        (Image.new("LAB", (30, 30)), "its colour mode LAB cannot be made grayscale; save it as RGB or grayscale"),
        (Image.new("L", (0, 0)), "it has no pixels (0 x 0)"),
        (closed, "Operation on closed image"),
    ]
    for picture, reason in pictures:
        with pytest.raises(UserError, match=re.escape(f"a PIL image cannot be read: {reason}")):
            as_batch(picture)
    # a Path is a file, a folder or a pattern (never a comma list), and a folder's hidden files are left out
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(folder / "._a.png")  # macOS's companion file
    for given in (folder, str(folder), folder / "*.png", f"{folder}/*.png"):
        assert as_batch(given).shape == (1, 1, 28, 28), given
    assert "a.png shows nothing but its background" in caplog.text  # an all-black picture: said, from Python too
    # a read-only memory map, as np.load(..., mmap_mode="r") gives, without torch's warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert as_batch(np.load(tmp_path / "arrays.npy", mmap_mode="r")).shape == (2, 1, 28, 28)


def predicted(capsys, *argv: str) -> tuple[int, str]:
    """``python -m lenet_exp.predict <argv>`` run in this process: its exit status and what it printed."""
    with pytest.raises(SystemExit) as ended:
        main([*argv])
        raise SystemExit(0)
    return ended.value.code, capsys.readouterr().out


@apply(real_data)
def test_predict_labels_real_test_images_and_names_an_unreadable_one(tmp_path, capsys):
    run = tmp_path / "run"
    # 100 of the epoch's 235 batches: enough to label most of these 20 images (15 here), in a sixth of the time;
    # the run's own final test on one batch (what predict labels does not depend on it)
    relu = ["trainer=cpu", "trainer.max_epochs=1", "model.net.activation=relu", "trainer.limit_train_batches=100"]
    relu += ["trainer.limit_test_batches=1"]
    train(compose_config(run, relu))
    images, labels = load_split(find_files(Path("/nonexistent")), "test")
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(images[i].numpy()).save(folder / f"{i:02d}.png")
    (folder / "99-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    ckpt = run / "checkpoints" / "last.ckpt"

    # in this process: test_api.py and test_errors.py run the predict command itself
    out = run_main("lenet_exp.predict", f"ckpt_path={ckpt}", f"images={folder}")
    assert out.returncode == 1  # one image could not be read
    assert f"{folder / '99-broken.png'} cannot be read: not an image PIL can decode" in out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 20 and all(line.count(",") == 2 for line in lines)  # top-3 each

    # Its formats and arguments.
    code, printed = predicted(capsys, f"ckpt_path={ckpt}", f"images={folder}", "format=json")
    results = [json.loads(line) for line in printed.splitlines()]
    assert code == 1
    assert len(results) == 21 and "error" in results[-1]
    correct = sum(r["class"] == CLASSES[int(labels[i])] for i, r in enumerate(results[:20]))
    assert correct >= 12, correct
    first = results[0]["top"]
    assert len(first) == 3 and first[0]["probability"] >= first[1]["probability"] >= first[2]["probability"]
    assert sum(t["probability"] for t in first) <= 1.0001

    code, printed = predicted(capsys, f"ckpt_path={ckpt}", f"images={folder / '00.png'},{folder / '01.png'}")
    assert code == 0 and len(printed.strip().splitlines()) == 2

    # The same garments photographed dark on white, small in a wide frame: trimmed to the garment, as
    # Fashion-MNIST's conversion did, they mostly get the classes their 28x28 images get (with the whole
    # frame scaled to 28 pixels, 3 of these 20 did).
    framed = []
    for i in range(20):
        photo = Image.new("L", (200, 160), 255)
        photo.paste(Image.fromarray(255 - images[i].numpy()).resize((80, 80), Image.LANCZOS), (30, 40))
        framed.append(photo)
    model = load(ckpt)
    alike = sum(a == b for a, b in zip(model.predict(framed).classes, model.predict(images[:20]).classes, strict=True))
    assert alike >= 15, alike


@pytest.mark.slow
def test_predict_without_a_checkpoint_is_one_sentence(tmp_path):
    out = run_main("lenet_exp.predict", f"ckpt_path={tmp_path / 'none.ckpt'}", f"images={tmp_path}")
    assert out.returncode == 1 and "does not exist" in out.stderr and "Traceback" not in out.stderr


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header (and one tiny compressed row) that claims ``width`` x ``height`` gray pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def untrained_checkpoint(tmp_path: Path) -> Path:
    """A lenet_exp checkpoint (weights and stored config) of an untrained model: predict needs no accuracy here."""
    cfg = compose_config(tmp_path / "run", TINY)
    module = instantiate(cfg.model)
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(
        {"state_dict": module.state_dict(), "epoch": 0, CONFIG_KEY: OmegaConf.to_container(cfg, resolve=True)}, path
    )
    return path


@pytest.mark.slow
def test_bombs_truncated_undecodable_and_huge_images_are_errors_of_their_own(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.fromarray(np.full((28, 28), 200, dtype=np.uint8)).save(folder / "0-good.png")
    (folder / "1-bomb.png").write_bytes(png_claiming(14_000, 14_000))  # 196 megapixels from ~100 bytes
    side = int(MAX_PIXELS**0.5) + 1
    (folder / "2-huge.png").write_bytes(png_claiming(side, side))  # above our limit, below PIL's
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    noise.save(folder / "3-whole.png")
    whole = (folder / "3-whole.png").read_bytes()
    (folder / "3-whole.png").unlink()
    (folder / "4-truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "5-garbage.jpg").write_bytes(b"\xff\xd8\xff not a jpeg at all" * 10)
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(folder / "6-good.png")

    # in this process (test_api.py and test_errors.py run the predict command itself)
    out = run_main(
        "lenet_exp.predict", f"ckpt_path={untrained_checkpoint(tmp_path)}", f"images={folder}", "format=json"
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    results = {Path(r["image"]).name: r for r in map(json.loads, out.stdout.splitlines())}
    assert list(results) == ["0-good.png", "1-bomb.png", "2-huge.png", "4-truncated.png", "5-garbage.jpg", "6-good.png"]
    assert results["0-good.png"]["class"] in CLASSES and results["6-good.png"]["class"] in CLASSES
    errors = {name: r["error"] for name, r in results.items() if "error" in r}
    assert errors["1-bomb.png"].startswith(f"{folder / '1-bomb.png'} cannot be read: it claims more pixels than PIL")
    assert f"it is {side} x {side} pixels, above predict's limit of {MAX_PIXELS:,} pixels" in errors["2-huge.png"]
    assert "cannot be read: a damaged image (OSError" in errors["4-truncated.png"]
    assert errors["5-garbage.jpg"].endswith("cannot be read: not an image PIL can decode")


def test_images_takes_a_pattern_and_hydras_list_as_well_as_a_comma_list(tmp_path, capsys, monkeypatch):
    """``images=*.png`` reaches the command as it is typed (no file's name begins with ``images=``), and Hydra's
    users write a list as ``[a,b]``: both name the files a comma-separated list names."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("b.png", "a.png", "c.jpg"):
        Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    listed = [folder / "a.png", folder / "b.png"]
    assert image_paths(f"{folder}/*.png") == listed  # sorted, as a folder's files are
    assert image_paths(f"[{folder / 'a.png'},{folder / 'b.png'}]") == listed
    assert image_paths(f"{folder}/*.png,{folder}/*.jpg") == [*listed, folder / "c.jpg"]
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "shoe, left.png")
    assert image_paths(str(tmp_path / "shoe, left.png")) == [tmp_path / "shoe, left.png"]  # a name with a comma
    monkeypatch.chdir(folder)  # a folder of images, as a user's current folder may be
    assert image_paths(f"{folder / 'a.png'},") == listed[:1]  # a trailing comma adds no entry, not the current folder
    for empty in ("", " ", ","):
        with pytest.raises(UserError, match=r"names no image files"):
            image_paths(empty)
    with pytest.raises(UserError, match=r"names no image files; give a file, a comma-separated list, a folder or a"):
        image_paths(f"{folder}/*.gif")
    code, printed = predicted(capsys, f"ckpt_path={untrained_checkpoint(tmp_path)}", f"images={folder}/*.png")
    assert code == 0 and [line.split(":")[0] for line in printed.splitlines()] == [str(p) for p in listed]
