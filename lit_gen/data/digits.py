"""``DigitsDataModule``: scikit-learn's 1,797 real 8x8 handwritten digits, offline and instant.

The quickstart and fast-test dataset: no download, no ``root``, loaded in milliseconds.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset


from lit_gen.data.base import ImageDataModule, UInt8ImageDataset, split_indices
from lit_gen.signatures import forward

#: Share of the 1,797 images held out as the test split, always the same images.
TEST_FRACTION = 0.15
# A constant, not ``seed``: the test split must stay the same across runs and sweeps, so that
# test metrics of different seeds are comparable.
_TEST_SPLIT_SEED = 1797
# The raw values count set pixels in 4x4 blocks of the original 32x32 bitmaps: 0..16.
_MAX_VALUE = 16


def _bundled_csv() -> Path | None:
    # find_spec locates the package without importing it: importing sklearn.datasets takes ~1 s,
    # reading the 60 kB file it bundles takes ~5 ms.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def load_digits_uint8() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 images (N, 1, 8, 8) scaled to 0..255, and int64 labels (N,).

    Reads the CSV that scikit-learn bundles for ``sklearn.datasets.load_digits`` (the same
    numbers, without importing scikit-learn); falls back to ``load_digits()`` itself if a
    scikit-learn release moves the file.
    """
    csv = _bundled_csv()
    if csv is not None:
        with gzip.open(csv, "rb") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
        values, labels = table[:, :-1], table[:, -1]
    else:
        from sklearn.datasets import load_digits

        values, labels = load_digits(return_X_y=True)
    scaled = np.rint(np.asarray(values, dtype=np.float64) * (255.0 / _MAX_VALUE)).astype(np.uint8)
    images = torch.from_numpy(scaled.reshape(-1, 1, 8, 8))
    return images, torch.from_numpy(np.asarray(labels, dtype=np.int64))


class DigitsDataModule(ImageDataModule):
    """The scikit-learn digits: 1,797 real 8x8 grey handwritten digits, 10 classes, no files needed.

    A fixed 15% of the images (270, chosen by a constant seed so it never depends on ``seed``)
    form the test split; ``val_fraction`` of the rest, chosen by ``seed``, form the validation
    split (defaults: 1,374 train, 153 val, 270 test). ``train_split: all`` trains on all 1,797
    images instead (val and test keep their images, now also seen in training).

    Args:
        root (str, default "data"): unused; the data ships with scikit-learn.
        batch_size, num_workers, pin_memory, persistent_workers, val_fraction, seed, hflip:
            as in ``ImageDataModule``. Keep ``hflip`` off: a flipped digit is another glyph.
        image_size (int | None, default None): side length; None keeps the native 8. Upsampling
            (e.g. to 16 or 32 for models with several downsampling stages) is bilinear.
        train_split ("train" | "all", default "train"): the images of the "train" split. "all"
            uses every one of the 1,797 digits, so a model can train on exactly the images an FID
            reference of the whole set uses (benchmarks compare arms that all train on them);
            validation and test losses then measure fit, not generalisation.
    """

    channels = 1
    native_image_size = 8
    num_classes = 10

    def __init__(
        self,
        train_split: Literal["train", "all"] = "train",
        **loader,
    ) -> None:
        super().__init__(**forward(DigitsDataModule, loader))
        self.train_split = train_split

    def held_out(self, split: str) -> bool:
        # train_split "all" trains on every digit: no split is then held out.
        return split != "train" and self.train_split != "all"

    def load_splits(self) -> dict[str, Dataset]:
        images, labels = load_digits_uint8()
        rest, test = split_indices(len(labels), TEST_FRACTION, _TEST_SPLIT_SEED)
        train, val = split_indices(len(rest), self.val_fraction, self.seed)
        train, val = rest[train], rest[val]
        if self.train_split == "all":
            train = torch.arange(len(labels))
        return {
            name: UInt8ImageDataset(images[idx], labels[idx], self.image_size)
            for name, idx in (("train", train), ("val", val), ("test", test))
        }
