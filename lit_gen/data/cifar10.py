"""``CIFAR10DataModule``: the "python version" of CIFAR-10 (https://www.cs.toronto.edu/~kriz/cifar.html).

``cifar-10-batches-py/`` holds ``data_batch_1`` .. ``data_batch_5`` (10,000 images each) and
``test_batch``. Each is a pickled dict with ``b"data"``, a uint8 array (N, 3072) whose rows are
the red, green and blue 32x32 planes in row-major order, and ``b"labels"``, a list of N ints in 0..9.
The pickles were written by Python 2, so they are read with ``encoding="bytes"``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_gen.data.base import ImageDataModule, UInt8ImageDataset, download_with_torchvision, split_indices
from lit_gen.errors import DataError
from lit_gen.signatures import forward

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
FOLDER = "cifar-10-batches-py"
_IMAGE_BYTES = 3 * 32 * 32


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    Unpickling runs any callable a file names; a CIFAR batch needs only numpy's array
    constructors (and ``_codecs.encode``, which Python 3 uses for bytes in protocol 2), so a
    corrupt or hostile file fails here instead of running code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: __import__("codecs").encode,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}, which a CIFAR-10 batch never contains")
        return self._ALLOWED[(module, name)]()


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images (N, 3, 32, 32) uint8 and labels (N,) int64 of one CIFAR-10 batch file.

    Raises:
        DataError: naming ``path`` when the pickle is unreadable or its contents have the wrong
            keys, shapes or values.
    """
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"{path}: cannot read this file ({exc}).") from exc
    except Exception as exc:  # A damaged pickle can fail with almost any exception type.
        raise DataError(f"{path}: not a readable CIFAR-10 batch pickle ({type(exc).__name__}: {exc}); the file "
                        "is truncated or corrupt. Delete the folder and download or extract it again.") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: expected a dict with keys b'data' and b'labels', got {keys}. "
                        "Is this CIFAR-100 or another dataset? Use the python version of CIFAR-10.")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _IMAGE_BYTES:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' should be a uint8 array of shape (N, {_IMAGE_BYTES}), got {found}; "
                        "the file is corrupt.")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: expected {data.shape[0]} integer labels, got {labels.dtype} {labels.shape}; "
                        "the file is corrupt.")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must be in 0..9, found {int(labels.min())}..{int(labels.max())}; "
                        "the file is corrupt.")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10: 60,000 32x32 colour images in 10 classes, read from the python pickle batches.

    The batches are looked for in ``<root>/cifar-10-batches-py/`` (what
    ``cifar-10-python.tar.gz`` unpacks to, and where torchvision puts it), then in ``<root>/``.
    Train and validation split the 50,000 training images by ``val_fraction`` and ``seed``;
    the test split is ``test_batch``.

    Args:
        root, batch_size, num_workers, pin_memory, persistent_workers, val_fraction, seed:
            as in ``ImageDataModule``.
        image_size (int | None, default None): side length; None keeps the native 32.
        hflip (bool, default False): random left-right flips of training batches (the usual
            CIFAR-10 augmentation; the shipped configs turn it on).
        download (bool, default False): when the batches are missing, fetch and unpack them with
            ``torchvision.datasets.CIFAR10`` into ``<root>/cifar-10-batches-py/`` in
            ``prepare_data()`` (needs internet access). When False, missing files raise a
            DataError that says where to put them.
    """

    channels = 3
    native_image_size = 32
    num_classes = 10

    def __init__(
        self,
        download: bool = False,
        **loader,
    ) -> None:
        super().__init__(**forward(CIFAR10DataModule, loader))
        self.download = download

    @property
    def folder(self) -> Path:
        """The folder the batches are expected in."""
        return self.root / FOLDER

    def _locate(self) -> Path | None:
        for folder in (self.folder, self.root):
            if all((folder / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
                return folder
        return None

    def prepare_data(self) -> None:
        if self.download and self._locate() is None:
            download_with_torchvision("CIFAR10", self.root, self.folder)
        self.check_files()

    def check_files(self) -> None:
        if self._locate() is not None:
            return
        names = (*TRAIN_FILES, TEST_FILE)
        missing = [name for name in names if not (self.folder / name).is_file()]
        # Name the missing files only when some are there: a half-copied folder.
        partial = f" Missing there: {', '.join(missing)}." if len(missing) < len(names) else ""
        folder = self.folder.resolve()
        if self.download:
            fix = ("data.download=true fetches them in prepare_data(); the Trainer calls it, so call "
                   "dm.prepare_data() yourself when using the datamodule without a Trainer.")
        else:
            fix = ("Set data.download=true to fetch them with torchvision (needs internet), or download "
                   "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and run "
                   f"`tar -xzf cifar-10-python.tar.gz -C {folder.parent}`.")
        raise DataError(
            f"CIFAR-10 files not found. Expected {', '.join(names)} in {folder}/ (also accepted: "
            f"{folder.parent}/).{partial} {fix}"
        )

    def load_splits(self) -> dict[str, Dataset]:
        folder = self._locate()
        assert folder is not None, "check_files() runs before load_splits()"
        parts = [read_batch(folder / name) for name in TRAIN_FILES]
        train_images = torch.from_numpy(np.concatenate([images for images, _ in parts]))
        train_labels = torch.from_numpy(np.concatenate([labels for _, labels in parts]))
        test_images, test_labels = (torch.from_numpy(a) for a in read_batch(folder / TEST_FILE))
        train, val = split_indices(len(train_labels), self.val_fraction, self.seed)
        return {
            "train": UInt8ImageDataset(train_images[train], train_labels[train], self.image_size),
            "val": UInt8ImageDataset(train_images[val], train_labels[val], self.image_size),
            "test": UInt8ImageDataset(test_images, test_labels, self.image_size),
        }
