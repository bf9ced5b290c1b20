"""Fashion-MNIST: find the IDX files, verify and decode them once, serve whole batches from memory."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zlib
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lenet_exp import many_steps
from lenet_exp.arguments import check_data, check_split
from lenet_exp.errors import UserError
from lenet_exp.steps_per_call import check as check_steps_per_call

log = logging.getLogger(__name__)

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {  # split -> (images, labels), the names upstream and Debian use (optionally + ".gz")
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MD5 = {  # of the decompressed bytes: the same whoever gzipped the files
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
DEFAULT_DATA_DIR = "~/.cache/lenet_exp"  # data.data_dir's default: independent of any working directory
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
IDX_MAGIC = {1: 0x0801, 3: 0x0803}  # ndim -> magic number of an unsigned-byte IDX file
HOW_TO_GET = (
    "run `make data` (installs Debian's dataset-fashion-mnist), set data.download=true on a machine "
    "with internet access, or copy the four IDX files (gzipped or not) into data.data_dir"
)


def candidate_dirs(data_dir: Path, published: bool = True) -> list[Path]:
    """Where the files are looked for, in order (torchvision's download puts them in FashionMNIST/raw). Debian's
    folder only for the published files (``data.verify_md5``): it holds those, not files of one's own, which a
    run (or a resume after its folder moved) would otherwise train on in their place without a word."""
    return [data_dir, data_dir / "FashionMNIST" / "raw", *([DEBIAN_DIR] if published else [])]


def _readable(directory: Path) -> bool:
    """False only for a folder that exists (or may exist) but cannot be listed and read."""
    try:
        return not directory.is_dir() or os.access(directory, os.R_OK | os.X_OK)
    except PermissionError:  # a parent folder cannot be searched
        return False


def _file_in(directory: Path, name: str) -> Path | None:
    for path in (directory / name, directory / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def find_files(data_dir: Path, download: bool = False, published: bool = True) -> dict[str, Path]:
    """Map each of the four IDX names to the first directory that holds all four (``published``: the files are
    checked against Fashion-MNIST's published MD5s, and Debian's copy may serve them).

    Falls back to torchvision's download into ``data_dir`` when ``download`` is true.
    """
    names = [name for pair in FILES.values() for name in pair]
    for directory in candidate_dirs(data_dir, published):
        if not _readable(directory):
            raise UserError(
                f"{directory} cannot be read (permission denied); fix its permissions or point "
                "data.data_dir at a readable folder."
            )
        found = {name: _file_in(directory, name) for name in names}
        if all(found.values()):
            return found  # type: ignore[return-value]
    searched = ", ".join(str(d) for d in candidate_dirs(data_dir, published))
    if download and str(data_dir).startswith("~"):  # no home folder to expand it to (HOME unset, a bare user ID)
        raise UserError(
            f"data.data_dir={data_dir} is in the home folder, and this process has none (HOME is not set); give "
            "data.data_dir=<folder> to download into."
        )
    if download:
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

        try:
            for train in (True, False):
                TorchvisionFashionMNIST(str(data_dir), train=train, download=True)
        except Exception as err:  # URLError, socket errors, checksum errors: all mean "no data"
            reason = (str(err).strip().splitlines() or [type(err).__name__])[-1]  # torchvision's last line
            raise UserError(
                f"Fashion-MNIST was not found in {searched} and the download failed ({reason}); {HOW_TO_GET}."
            ) from err
        return find_files(data_dir, download=False)
    if not published:  # files of one's own: Debian's Fashion-MNIST is not used in their place
        raise UserError(
            f"the four IDX files were not found in {searched}; with data.verify_md5=false they are files of your "
            f"own, so Debian's Fashion-MNIST is not used in their place: give data.data_dir=<the folder that holds "
            "them> (to lenet_exp.resume and lenet_exp.eval too, once the files have moved)."
        )
    raise UserError(f"Fashion-MNIST was not found in {searched}; {HOW_TO_GET}.")


def read_decompressed(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when it is gzipped (whatever its name)."""
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def read_idx(path: Path, ndim: int, verify_md5: bool = True) -> Tensor:
    """Decode an unsigned-byte IDX file (gzipped or not) to a uint8 tensor of ``ndim`` dimensions."""
    try:
        raw = read_decompressed(path)
    except (OSError, EOFError, zlib.error) as err:  # gzip's header, stream or trailer damaged; unreadable
        raise UserError(f"{path} cannot be read ({err}); {HOW_TO_GET}.") from err
    name = path.name.removesuffix(".gz")
    if verify_md5 and name in MD5 and hashlib.md5(raw).hexdigest() != MD5[name]:
        raise UserError(
            f"{path} is not the published Fashion-MNIST file (MD5 of its decompressed bytes differs); if it is a "
            f"file of your own, set data.verify_md5=false, else delete it and {HOW_TO_GET}."
        )
    header = 4 + 4 * ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != IDX_MAGIC[ndim]:
        raise UserError(
            f"{path} is not an IDX file of {ndim}-dimensional unsigned bytes (magic number "
            f"{magic if magic is None else hex(magic)}, expected {hex(IDX_MAGIC[ndim])}); {HOW_TO_GET}."
        )
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + torch.Size(shape).numel()
    if len(raw) != expected:
        raise UserError(
            f"{path} holds {len(raw)} bytes but its header {shape} needs {expected} "
            f"(truncated or corrupt); {HOW_TO_GET}."
        )
    if expected == header:  # a header of 0 items (torch.frombuffer refuses an empty buffer)
        return torch.zeros(shape, dtype=torch.uint8)
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(shape)


def load_split(files: dict[str, Path], split: str, verify_md5: bool = True) -> tuple[Tensor, Tensor]:
    """Images (N,28,28) uint8 and labels (N,) int64 of ``split`` ("train" or "test")."""
    images_name, labels_name = FILES[split]
    images = read_idx(files[images_name], ndim=3, verify_md5=verify_md5)
    if tuple(images.shape[1:]) != (28, 28):  # LeNet's layers fit 28 x 28 images only
        raise UserError(
            f"{files[images_name]} holds images of {images.shape[1]} x {images.shape[2]} pixels, and Fashion-MNIST's "
            f"are 28 x 28; it is not a Fashion-MNIST image file."
        )
    if not len(images):
        raise UserError(f"{files[images_name]} holds no images (its header says 0); the {split} set needs some.")
    labels = read_idx(files[labels_name], ndim=1, verify_md5=verify_md5).long()
    if len(images) != len(labels):
        raise UserError(
            f"{files[images_name]} has {len(images)} images but {files[labels_name]} has "
            f"{len(labels)} labels; the two files must come from the same release."
        )
    if len(labels) and int(labels.max()) >= len(CLASSES):
        raise UserError(
            f"{files[labels_name]} has label {int(labels.max())}, outside 0..{len(CLASSES) - 1}; "
            f"it is not a Fashion-MNIST label file."
        )
    return images, labels


class InMemoryImages(Dataset):
    """uint8 images (N,28,28) and int64 labels (N,) that hand out a whole batch per list of indices.

    ``DataLoader`` calls ``__getitems__`` with a batch's indices, so a batch is one
    indexing operation, not N Python calls and a collate. Pixels become float32 in [0, 1]
    exactly as torchvision's ``ToTensor`` makes them (x / 255). A (K,B) tensor of indices
    (lenet_exp.many_steps.BatchGroups) gives K batches at once: (K,B,1,28,28) images and (K,B) labels.
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def __getitems__(self, indices: list[int] | Tensor) -> tuple[Tensor, Tensor]:
        # Built on the CPU, then copied without waiting for the device (a blocking copy would sync
        # the GPU once per step); the source is pageable, so the copy is staged before this returns.
        idx = torch.as_tensor(indices).to(self.images.device, non_blocking=True)
        return self.images[idx].unsqueeze(-3).float().div_(255), self.labels[idx]

    def to(self, device: torch.device) -> InMemoryImages:
        return InMemoryImages(self.images.to(device), self.labels.to(device))


def _whole_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The collate function: ``__getitems__`` already returns a collated batch."""
    return batch


class FashionMNIST(pl.LightningDataModule):
    """Fashion-MNIST held in memory (on the GPU when training there), served in whole batches.

    With ``val_size=0`` (the book's protocol) the 10,000 test images are evaluated after every
    epoch. With ``val_size=N`` a seeded hold-out of N training images is evaluated instead, and
    the test set is used only once, at the end. ``steps_per_call`` (resolved once per fit, by
    lenet_exp.many_steps.resolve, into ``steps_per_item``) other than 1 makes each training item that
    many batches, stacked (K,B,...), in the same order (lenet_exp.many_steps.BatchGroups); the model
    then takes as many optimizer steps per training step.
    """

    classes = CLASSES

    def __init__(
        self,
        data_dir: str = DEFAULT_DATA_DIR,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        val_size: int = 0,
        seed: int = 0,
        download: bool = False,
        verify_md5: bool = True,
        steps_per_call: int | str = 1,
    ) -> None:
        super().__init__()
        check_data(batch_size, eval_batch_size, val_size, download, verify_md5)
        self.data_dir = Path(os.path.expanduser(data_dir))
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.seed = val_size, seed
        self.download, self.verify_md5 = download, verify_md5
        check_steps_per_call(steps_per_call)  # again when the fit resolves it (lenet_exp.many_steps.resolve)
        self.steps_per_call = steps_per_call
        self.steps_per_item: int | None = 1  # this fit's batches per training item (None: all of an epoch's)
        self.splits: dict[str, InMemoryImages] = {}

    @property
    def eval_split(self) -> str:
        """The name of what is evaluated after every epoch: "test" (book protocol) or "val"."""
        return "val" if self.val_size else "test"

    def prepare_data(self) -> None:
        find_files(self.data_dir, self.download, self.verify_md5)  # downloads, on one process, when asked to

    def setup(self, stage: str | None = None) -> None:
        if stage == "fit" and self.trainer is not None:
            self.steps_per_item = many_steps.resolve(self.steps_per_call, self.trainer)
        if not self.splits:
            self.splits = self._load()
        world = self.trainer.world_size if self.trainer is not None else 1
        check_split(self.val_size, world)
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.splits["test"].images.device != device:  # upload once; batches never cross PCIe again
            self.splits = {name: split.to(device) for name, split in self.splits.items()}

    def _load(self) -> dict[str, InMemoryImages]:
        files = find_files(self.data_dir, download=False, published=self.verify_md5)
        log.info("Fashion-MNIST from %s", files[FILES["train"][0]].parent)
        train_x, train_y = load_split(files, "train", self.verify_md5)
        test_x, test_y = load_split(files, "test", self.verify_md5)
        splits = {"test": InMemoryImages(test_x, test_y)}
        if self.val_size >= len(train_y):
            raise UserError(
                f"data.val_size={self.val_size} leaves no training images (the training set has "
                f"{len(train_y)}); choose a smaller value, such as {max(len(train_y) // 12, 1)}."
            )
        if self.val_size:  # a seeded hold-out from the training set; the test set stays untouched
            order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(self.seed))
            val, train = order[: self.val_size], order[self.val_size :]
            splits["val"] = InMemoryImages(train_x[val], train_y[val])
            splits["train"] = InMemoryImages(train_x[train], train_y[train])
        else:
            splits["train"] = InMemoryImages(train_x, train_y)
        return splits

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches whose order is a function of (seed, epoch) only (Lightning calls
        ``set_epoch``), so a resumed run sees what an uninterrupted one would. Under DDP each
        process gets its own shard of every epoch: PyTorch's DistributedSampler, told this
        process's rank by the trainer."""
        dataset = self.splits["train"]
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        if self.steps_per_item == 1:
            return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=_whole_batch)
        groups = many_steps.BatchGroups(sampler, self.batch_size, self.steps_per_item)
        return DataLoader(dataset, batch_sampler=groups, collate_fn=_whole_batch)

    def _eval_loader(self, split: str) -> DataLoader:
        """In order. Under DDP each process evaluates its own part, and no image twice (Lightning's
        own DistributedSampler would repeat some to even out the parts), so the reduced metrics
        are exactly those of the whole split."""
        dataset = self.splits[split]
        world = self.trainer.world_size if self.trainer is not None else 1
        sampler = (
            UnrepeatedDistributedSampler(dataset, world, self.trainer.global_rank, shuffle=False) if world > 1 else None
        )
        return DataLoader(dataset, batch_size=self.eval_batch_size, sampler=sampler, collate_fn=_whole_batch)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.eval_split)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
