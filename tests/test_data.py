"""The Fashion-MNIST files and the DataModule, on tiny synthetic IDX files."""

import gzip
import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import idx_bytes, write_fake_fashion_mnist, write_idx

from lenet_exp import data
from lenet_exp.data import FashionMNIST, find_files, load_split, read_idx
from lenet_exp.errors import UserError


def make_dm(directory, **kwargs) -> FashionMNIST:
    dm = FashionMNIST(data_dir=str(directory), verify_md5=False, **kwargs)
    dm.setup("fit")
    return dm


def test_discovery_prefers_data_dir_then_torchvision_layout_then_debian(tmp_path, no_debian_data):
    data_dir = tmp_path / "mine"
    write_fake_fashion_mnist(no_debian_data)
    assert set(find_files(data_dir).values()) <= set(no_debian_data.iterdir())
    write_fake_fashion_mnist(data_dir / "FashionMNIST" / "raw")
    assert find_files(data_dir)["t10k-images-idx3-ubyte"].parent == data_dir / "FashionMNIST" / "raw"
    write_fake_fashion_mnist(data_dir, gz=False)
    found = find_files(data_dir)
    assert all(path.parent == data_dir and path.suffix != ".gz" for path in found.values())


def test_a_directory_with_only_some_files_is_skipped(tmp_path, no_debian_data):
    files = write_fake_fashion_mnist(tmp_path / "partial")
    files["t10k-labels-idx1-ubyte"].unlink()
    write_fake_fashion_mnist(no_debian_data)
    assert find_files(tmp_path / "partial")["train-images-idx3-ubyte"].parent == no_debian_data


def test_missing_data_names_every_place_searched_and_how_to_get_it(tmp_path, no_debian_data):
    with pytest.raises(UserError) as err:
        find_files(tmp_path / "nowhere")
    message = str(err.value)
    for place in (tmp_path / "nowhere", tmp_path / "nowhere" / "FashionMNIST" / "raw", no_debian_data):
        assert str(place) in message
    assert "make data" in message and "data.download=true" in message


def test_a_failed_download_is_one_sentence(tmp_path, no_debian_data, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):  # what torchvision raises when no mirror can be reached
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried http://example/, got:\n"
            "<urlopen error [Errno -2] Name or service not known>\n"
        )

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(UserError) as err:
        find_files(tmp_path / "nowhere", download=True)
    message = str(err.value)
    assert (
        "\n" not in message and "the download failed (<urlopen error [Errno -2] Name or service not known>)" in message
    )
    assert str(no_debian_data) in message and "make data" in message


def test_md5_of_decompressed_bytes_is_verified(fake_data):
    path = fake_data / "train-labels-idx1-ubyte.gz"
    with pytest.raises(UserError, match="is not the published Fashion-MNIST file .* if it is a file of your own, set "):
        read_idx(path, ndim=1, verify_md5=True)  # (files of one's own: data.verify_md5=false, not deleted)
    assert read_idx(path, ndim=1, verify_md5=False).shape == (64,)


def test_md5_matches_whoever_gzipped_the_file(tmp_path, monkeypatch):
    raw = idx_bytes(torch.arange(10, dtype=torch.uint8))
    import hashlib

    monkeypatch.setitem(data.MD5, "t10k-labels-idx1-ubyte", hashlib.md5(raw).hexdigest())
    plain = tmp_path / "t10k-labels-idx1-ubyte"
    plain.write_bytes(raw)
    zipped = tmp_path / "z" / "t10k-labels-idx1-ubyte.gz"
    zipped.parent.mkdir()
    zipped.write_bytes(gzip.compress(raw, compresslevel=1))
    assert torch.equal(read_idx(plain, 1), read_idx(zipped, 1))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda raw: raw[:-5], "truncated or corrupt"),
        (lambda raw: b"\x00\x00\x08\x01" + raw[4:], "magic number 0x801, expected 0x803"),
        (lambda raw: b"", "magic number None"),
    ],
)
def test_broken_idx_files_get_one_clear_sentence(tmp_path, corrupt, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(idx_bytes(torch.zeros(4, 28, 28, dtype=torch.uint8))))
    with pytest.raises(UserError, match=message):
        read_idx(path, ndim=3, verify_md5=False)


def test_image_and_label_counts_must_agree(fake_data):
    write_idx(fake_data / "t10k-labels-idx1-ubyte", torch.zeros(31, dtype=torch.uint8))
    with pytest.raises(UserError, match="has 32 images but .* has 31 labels"):
        load_split(find_files(fake_data), "test", verify_md5=False)


def test_a_set_of_no_images_is_one_sentence(fake_data):
    """A valid header that says 0 images (gzipped or not) ended in torch.frombuffer's ValueError."""
    write_idx(fake_data / "t10k-images-idx3-ubyte", torch.zeros(0, 28, 28, dtype=torch.uint8))
    write_idx(fake_data / "t10k-labels-idx1-ubyte", torch.zeros(0, dtype=torch.uint8))
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte(\.gz)? holds no images \(its header says 0\); the"):
        load_split(find_files(fake_data), "test", verify_md5=False)


def test_labels_must_be_classes(fake_data):
    write_idx(fake_data / "t10k-labels-idx1-ubyte", torch.full((32,), 10, dtype=torch.uint8))
    with pytest.raises(UserError, match="has label 10, outside 0..9"):
        load_split(find_files(fake_data), "test", verify_md5=False)


def test_batches_are_float_images_scaled_like_to_tensor(fake_data):
    dm = make_dm(fake_data, batch_size=16)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.int64
    images, labels = load_split(find_files(fake_data), "train", verify_md5=False)
    # ToTensor: uint8 -> float32 / 255. Each served (image, label) is one of the file's, scaled so.
    expected = {(bytes((img.float() / 255).numpy()), int(label)) for img, label in zip(images, labels, strict=True)}
    batches = list(dm.train_dataloader())
    served = [(bytes(img[0].numpy()), int(label)) for xb, yb in batches for img, label in zip(xb, yb, strict=True)]
    assert len(served) == 64 and set(served) == expected
    assert x.max() == 1.0 and x.min() >= 0.0


def test_every_training_image_once_per_epoch_in_a_seeded_order(fake_data):
    dm = make_dm(fake_data, batch_size=10, seed=3)
    loader = dm.train_dataloader()
    sizes = [len(y) for _, y in loader]
    assert sizes == [10] * 6 + [4]  # no drop_last: all 64 images
    first = list(loader.sampler)
    assert sorted(first) == list(range(64))
    assert first == list(make_dm(fake_data, batch_size=10, seed=3).train_dataloader().sampler)  # same seed, epoch
    loader.sampler.set_epoch(1)  # what Lightning does before every epoch
    assert list(loader.sampler) != first  # next epoch: another order
    assert list(make_dm(fake_data, batch_size=10, seed=4).train_dataloader().sampler) != first  # other seed


def test_book_protocol_evaluates_the_test_set_every_epoch(fake_data):
    dm = make_dm(fake_data)
    assert dm.eval_split == "test"
    assert len(dm.val_dataloader().dataset) == 32 and len(dm.train_dataloader().dataset) == 64


def test_validation_split_is_seeded_disjoint_and_from_training_images(fake_data):
    dm = make_dm(fake_data, val_size=16, seed=7)
    assert dm.eval_split == "val"
    train, val = dm.splits["train"], dm.splits["val"]
    assert (len(train), len(val), len(dm.splits["test"])) == (48, 16, 32)
    images, _ = load_split(find_files(fake_data), "train", verify_md5=False)
    rows = {bytes(img.numpy()) for img in images}
    train_rows = {bytes(img.numpy()) for img in train.images}
    val_rows = {bytes(img.numpy()) for img in val.images}
    assert not train_rows & val_rows and train_rows | val_rows == rows
    assert torch.equal(make_dm(fake_data, val_size=16, seed=7).splits["val"].images, val.images)
    assert not torch.equal(make_dm(fake_data, val_size=16, seed=8).splits["val"].images, val.images)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": -2}, {"batch_size": 2.5}, {"val_size": -1}])
def test_bad_sizes_are_refused(kwargs):
    with pytest.raises(UserError, match="must be"):
        FashionMNIST(**kwargs)


def test_val_size_must_leave_training_images(fake_data):
    with pytest.raises(UserError, match=r"data.val_size=64 leaves no training images .* such as 5\."):
        make_dm(fake_data, val_size=64)


def test_a_validation_split_smaller_than_the_processes_is_refused_once_they_are_known(fake_data):
    """Under DDP started from outside (torchrun, SLURM) the processes are known only to the Trainer: the data
    module refuses what the config check could not see, before any process evaluates an empty part."""
    dm = FashionMNIST(data_dir=str(fake_data), val_size=3, verify_md5=False)
    dm.trainer = SimpleNamespace(world_size=4, global_rank=0)
    with pytest.raises(UserError, match=r"^data.val_size=3 leaves some of the 4 training processes without a"):
        dm.setup("validate")
    dm.trainer = SimpleNamespace(world_size=3, global_rank=0, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    dm.setup("validate")  # one image each
    assert len(dm.val_dataloader().dataset) == 3


@pytest.mark.slow
def test_without_a_home_folder_the_default_folder_is_passed_over_and_a_download_is_one_sentence(
    tmp_path, fake_data, monkeypatch
):
    """A container started as a bare user ID (``docker run -u 12345``: HOME unset, no passwd entry) has no home
    folder for the default data.data_dir, ~/.cache/lenet_exp: training ended in pathlib's RuntimeError inside
    Hydra's report. The search goes on to Debian's copy; a download into the home folder is one sentence."""
    import pwd

    from conftest import ONE_EPOCH, compose_config

    from lenet_exp.train import train

    def no_entry(uid):
        raise KeyError(uid)

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(RuntimeError, match="Could not determine home directory"):
        Path("~").expanduser()  # the machine this test stands for
    monkeypatch.setattr(data, "DEBIAN_DIR", fake_data)  # the synthetic files stand for Debian's published ones
    published = {
        f.name.removesuffix(".gz"): hashlib.md5(gzip.decompress(f.read_bytes())).hexdigest()
        for f in fake_data.iterdir()
    }
    monkeypatch.setattr(data, "MD5", published)
    metrics = train(compose_config(tmp_path / "run", [*ONE_EPOCH, "data.verify_md5=true"]))  # data_dir as it is
    assert metrics["epochs"] == 1 and (tmp_path / "run" / "metrics.json").is_file()
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")  # nothing found: a download is asked for
    with pytest.raises(UserError, match=r"^data.data_dir=~/.cache/lenet_exp is in the home folder, and this process"):
        FashionMNIST(download=True, verify_md5=False).prepare_data()
    assert not list(Path.cwd().glob("~"))  # no folder named ~ made where the command ran
