"""``MNISTDataModule``: the original MNIST idx files, plain or gzipped, in torchvision's layout.

The idx format (http://yann.lecun.com/exdb/mnist/): a big-endian 4-byte magic number whose third
byte is the element type (0x08 = unsigned byte) and fourth the number of dimensions, then one
big-endian uint32 per dimension, then the raw values. Images are 2051 (N, 28, 28), labels 2049 (N,).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_gen.data.base import ImageDataModule, UInt8ImageDataset, download_with_torchvision, split_indices
from lit_gen.errors import DataError
from lit_gen.signatures import forward

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

#: split -> (image file, label file), names without the optional ".gz".
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_ALL_FILES = [name for pair in FILES.values() for name in pair]


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        # A cut-off download ends in EOFError; a damaged one in BadGzipFile (an OSError) or zlib.error.
        raise DataError(f"{path}: cannot read this file ({type(exc).__name__}: {exc}); it is truncated "
                        f"or corrupt. Replace it with a fresh copy.") from exc


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array stored in one idx file of unsigned bytes, after checking its magic number and size.

    Raises:
        DataError: naming ``path`` when the magic number is not ``magic`` or the file is shorter or
            longer than its header says.
    """
    raw = _read_bytes(path)
    kind = "image" if magic == IMAGES_MAGIC else "label"
    if len(raw) < 4:
        raise DataError(f"{path}: truncated file: {len(raw)} bytes, shorter than the 4-byte idx header. "
                        "Replace it with a fresh copy.")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: bad magic number {found} (expected {magic} for an idx {kind} file). "
                        f"This is not an MNIST {kind} file, or it is corrupt; replace it with a fresh copy.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated file: {len(raw)} bytes, shorter than its {header}-byte header. "
                        "Replace it with a fresh copy.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(dims)
    if len(raw) != expected:
        problem = "truncated file" if len(raw) < expected else "file longer than its header says"
        shape = "x".join(map(str, dims))
        raise DataError(f"{path}: {problem}: the header promises {shape} bytes of data ({expected} bytes "
                        f"in all) but the file holds {len(raw)} bytes. Replace it with a fresh copy.")
    # .copy(): frombuffer over bytes is read-only, and torch wants writable memory.
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, preferring the plain file (torchvision keeps both)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


class MNISTDataModule(ImageDataModule):
    """MNIST: 70,000 28x28 grey handwritten digits, 10 classes, read from the original idx files.

    The four files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each plain or ``.gz``) are looked
    for in ``<root>/MNIST/raw/`` (where torchvision puts them), then ``<root>/MNIST/``, then
    ``<root>/``. Train and validation split the 60,000 training images by ``val_fraction`` and
    ``seed``; the test split is the 10,000 t10k images.

    Args:
        root, batch_size, num_workers, pin_memory, persistent_workers, val_fraction, seed, hflip:
            as in ``ImageDataModule``. Keep ``hflip`` off: a flipped digit is another glyph.
        image_size (int | None, default None): side length; None keeps the native 28 (32 suits
            models that halve the resolution several times).
        download (bool, default False): when the files are missing, fetch them with
            ``torchvision.datasets.MNIST`` into ``<root>/MNIST/raw/`` in ``prepare_data()``
            (needs internet access). When False, missing files raise a DataError that says where
            to put them.
    """

    channels = 1
    native_image_size = 28
    num_classes = 10

    def __init__(
        self,
        download: bool = False,
        **loader,
    ) -> None:
        super().__init__(**forward(MNISTDataModule, loader))
        self.download = download

    @property
    def folder(self) -> Path:
        """The folder the files are expected in (torchvision's layout)."""
        return self.root / "MNIST" / "raw"

    def _locate(self) -> dict[str, Path] | None:
        """The four files from the first folder that holds them all, or None."""
        for folder in (self.folder, self.root / "MNIST", self.root):
            found = {name: _find(folder, name) for name in _ALL_FILES}
            if all(found.values()):
                return found
        return None

    def prepare_data(self) -> None:
        if self.download and self._locate() is None:
            download_with_torchvision("MNIST", self.root, self.folder)
        self.check_files()

    def check_files(self) -> None:
        if self._locate() is not None:
            return
        missing = [name for name in _ALL_FILES if _find(self.folder, name) is None]
        # Name the missing files only when some are there: a half-copied folder.
        partial = f" Missing there: {', '.join(missing)}." if len(missing) < len(_ALL_FILES) else ""
        folder = self.folder.resolve()
        if self.download:
            fix = ("data.download=true fetches them in prepare_data(); the Trainer calls it, so call "
                   "dm.prepare_data() yourself when using the datamodule without a Trainer.")
        else:
            fix = (f"Set data.download=true to fetch them with torchvision (needs internet), or copy "
                   f"the files (plain or .gz) into {folder}/.")
        raise DataError(
            f"MNIST files not found. Expected {', '.join(_ALL_FILES)} (plain or .gz) in {folder}/ "
            f"(also accepted: {folder.parent}/ or {folder.parent.parent}/).{partial} {fix}"
        )

    def _read_split(self, files: dict[str, Path], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images_name, labels_name = FILES[split]
        images = read_idx(files[images_name], IMAGES_MAGIC)
        labels = read_idx(files[labels_name], LABELS_MAGIC)
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{files[images_name]} / {files[labels_name]}: expected images (N, H, W) and "
                            f"labels (N,), got {images.shape} and {labels.shape}")
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{files[images_name]} holds {images.shape[0]} images but {files[labels_name]} "
                            f"holds {labels.shape[0]} labels; one of them comes from another copy of MNIST.")
        if labels.size and labels.max() > 9:
            raise DataError(f"{files[labels_name]}: label {int(labels.max())} is outside 0..9; the file is corrupt.")
        return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()

    def load_splits(self) -> dict[str, Dataset]:
        files = self._locate()
        assert files is not None, "check_files() runs before load_splits()"
        train_images, train_labels = self._read_split(files, "train")
        test_images, test_labels = self._read_split(files, "test")
        train, val = split_indices(len(train_labels), self.val_fraction, self.seed)
        return {
            "train": UInt8ImageDataset(train_images[train], train_labels[train], self.image_size),
            "val": UInt8ImageDataset(train_images[val], train_labels[val], self.image_size),
            "test": UInt8ImageDataset(test_images, test_labels, self.image_size),
        }
