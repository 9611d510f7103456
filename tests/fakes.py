"""Tiny fake datasets written in exactly the real on-disk formats, for any test that needs files.

Each writer puts a few images where the datamodule looks for the real dataset under ``root`` and
returns what it wrote, so tests can check that pixels and labels survive the round trip::

    from tests.fakes import write_fake_mnist
    written = write_fake_mnist(tmp_path)
    dm = MNISTDataModule(root=str(tmp_path))
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
#: Size of the aligned CelebA photos (width, height) and the default crop the datamodule takes.
CELEBA_SIZE = (178, 218)
CELEBA_CROP = 140


def write_idx(path: Path, array: np.ndarray, magic: int, gz: bool = False) -> Path:
    """One idx file of unsigned bytes: big-endian magic, one big-endian uint32 per dimension, data."""
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_fake_mnist(root, *, n_train: int = 30, n_test: int = 10, gz: bool = False,
                     folder: str = "MNIST/raw", seed: int = 0) -> dict[str, np.ndarray]:
    """The four MNIST idx files (28x28 random images, labels cycling 0..9) in ``root/folder``.

    Returns ``train_images`` (n_train, 28, 28) uint8, ``train_labels`` (n_train,), ``test_images``
    and ``test_labels``, as written.
    """
    rng = np.random.default_rng(seed)
    target = Path(root) / folder
    target.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images_name, labels_name = MNIST_FILES[split]
        write_idx(target / images_name, images, 2051, gz)
        write_idx(target / labels_name, labels, 2049, gz)
        written[f"{split}_images"], written[f"{split}_labels"] = images, labels
    return written


class _Python2Pickler(pickle._Pickler):
    """Writes pickles as Python 2's cPickle did for the real CIFAR-10 batches (protocol 2).

    Python 3 would store bytes through ``_codecs.encode`` and numpy arrays under
    ``numpy._core``; the real files hold Python 2 strings (read back as bytes with
    ``encoding="bytes"``) and name ``numpy.core.multiarray._reconstruct``.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj):
        data = obj.encode("utf-8") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_python2_str

    def save_global(self, obj, name=None):
        if getattr(obj, "__module__", None) in ("numpy._core.multiarray", "numpy.core.multiarray"):
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + (name or obj.__name__).encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def python2_pickle(obj) -> bytes:
    """``obj`` pickled the way Python 2 wrote the real CIFAR-10 batches."""
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _cifar_batch(rng, n: int, label: str) -> tuple[dict, np.ndarray, np.ndarray]:
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.permutation(np.arange(n) % 10)
    batch = {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in labels],  # a plain list of ints, as in the real files
        b"data": images.reshape(n, 3072),  # red, green, blue planes, each 32x32 row-major
        b"filenames": [f"fake_{i}.png".encode() for i in range(n)],
    }
    return batch, images, labels


def write_fake_cifar10(root, *, per_batch: int = 4, n_test: int = 6, folder: str = "cifar-10-batches-py",
                       seed: int = 0) -> dict[str, np.ndarray]:
    """``data_batch_1..5`` and ``test_batch`` pickles (Python 2 protocol-2 dicts) in ``root/folder``.

    Returns ``train_images`` (5 * per_batch, 3, 32, 32) uint8 in batch order, ``train_labels``,
    ``test_images`` and ``test_labels``, as written.
    """
    rng = np.random.default_rng(seed)
    target = Path(root) / folder
    target.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = [], []
    for i, name in enumerate(CIFAR_TRAIN_FILES, start=1):
        batch, images, labels = _cifar_batch(rng, per_batch, f"training batch {i} of 5")
        (target / name).write_bytes(python2_pickle(batch))
        train_images.append(images)
        train_labels.append(labels)
    batch, test_images, test_labels = _cifar_batch(rng, n_test, "testing batch 1 of 1")
    (target / "test_batch").write_bytes(python2_pickle(batch))
    return {
        "train_images": np.concatenate(train_images),
        "train_labels": np.concatenate(train_labels),
        "test_images": test_images,
        "test_labels": test_labels,
    }


def celeba_center_color(index: int) -> tuple[int, int, int]:
    """The solid colour of the centre square of fake CelebA image ``index`` (distinct per image)."""
    return (40 + 20 * index) % 256, 200 - 15 * (index % 10), (90 + 37 * index) % 256


def write_fake_celeba(root, *, splits: tuple[int, int, int] = (6, 2, 2), folder: str = "celeba",
                      size: tuple[int, int] = CELEBA_SIZE) -> dict[str, list[str]]:
    """``img_align_celeba/000001.jpg ...`` and ``list_eval_partition.txt`` in ``root/folder``.

    Image ``i`` (0-based, file ``{i + 1:06d}.jpg``) is ``size`` (width, height) with the centred
    140x140 square filled with ``celeba_center_color(i)`` and the rest in the inverse colour, so a
    wrong crop shows. Returns the file names of each split in partition order.
    """
    target = Path(root) / folder
    image_dir = target / "img_align_celeba"
    image_dir.mkdir(parents=True, exist_ok=True)
    width, height = size
    left, top = (width - CELEBA_CROP) // 2, (height - CELEBA_CROP) // 2
    names: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    lines = []
    codes = [code for code, count in enumerate(splits) for _ in range(count)]
    for index, code in enumerate(codes):
        color = np.array(celeba_center_color(index), dtype=np.uint8)
        pixels = np.empty((height, width, 3), dtype=np.uint8)
        pixels[:] = 255 - color
        pixels[top:top + CELEBA_CROP, left:left + CELEBA_CROP] = color
        name = f"{index + 1:06d}.jpg"
        Image.fromarray(pixels).save(image_dir / name, format="JPEG", quality=95)
        names[("train", "val", "test")[code]].append(name)
        lines.append(f"{name} {code}\n")
    (target / "list_eval_partition.txt").write_text("".join(lines))
    return names
