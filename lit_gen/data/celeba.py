"""``CelebADataModule``: the 202,599 aligned CelebA faces, decoded lazily from their JPEGs.

The files come from the official CelebA page (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html):
``img_align_celeba.zip`` ("Align&Cropped Images": 178x218 JPEGs named 000001.jpg ...) and
``list_eval_partition.txt`` ("Eval"), whose lines ``000001.jpg 0`` put each image in the official
train (0), validation (1) or test (2) split. lit_gen never downloads them: Google Drive's quotas
make unattended downloads fail too often.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch
from PIL import Image
from torch.utils.data import Dataset

from lit_gen.data.base import ImageDataModule
from lit_gen.data.transforms import center_crop_resize, to_signed_unit
from lit_gen.errors import DataError
from lit_gen.rules import PositiveInt
from lit_gen.signatures import forward

IMAGE_FOLDER = "img_align_celeba"
PARTITION_FILE = "list_eval_partition.txt"
_SPLIT_CODES = {"0": "train", "1": "val", "2": "test"}
_SOURCE = ("the official CelebA page, https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
           "(its Google Drive: Img/img_align_celeba.zip and Eval/list_eval_partition.txt)")


def read_partition(path: Path) -> dict[str, list[str]]:
    """The image names of each official split, in file order, from ``list_eval_partition.txt``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the partition file ({exc}). Download it again from {_SOURCE}.") from exc
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in _SPLIT_CODES:
            raise DataError(f"{path}, line {number}: expected '<image>.jpg <0|1|2>', got {line!r}. "
                            f"Download the file again from {_SOURCE}.")
        splits[_SPLIT_CODES[fields[1]]].append(fields[0])
    if not any(splits.values()):
        raise DataError(f"{path}: the partition file lists no images. Download it again from {_SOURCE}.")
    return splits


class CelebAImages(Dataset):
    """Face JPEGs read on access: centre crop ``crop_size``, resize to ``image_size``, label 0.

    Args:
        paths (list[str | Path]): the JPEG files, in order.
        crop_size (int): side of the centred square cut from each photo before resizing.
        image_size (int): side length of the returned images.
    """

    def __init__(self, paths: list[str | Path], crop_size: int, image_size: int) -> None:
        # Strings pickle to worker processes faster than Path objects.
        self.paths = [os.fspath(p) for p in paths]
        self.crop_size = crop_size
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                if min(image.size) < self.crop_size:
                    raise DataError(f"{path}: the image is {image.size[0]}x{image.size[1]}, smaller than "
                                    f"data.crop_size={self.crop_size}. Use the aligned 178x218 images or "
                                    "set data.crop_size to at most their shorter side.")
                pixels = center_crop_resize(image, self.crop_size, self.image_size)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            # PIL reports undecodable or cut-off files as OSError (UnidentifiedImageError included).
            raise DataError(f"{path}: cannot decode this JPEG ({type(exc).__name__}: {exc}); it is truncated "
                            f"or corrupt. Unzip img_align_celeba.zip again.") from exc
        return to_signed_unit(pixels), torch.zeros((), dtype=torch.int64)


class CelebADataModule(ImageDataModule):
    """CelebA aligned faces: 202,599 colour photos, official train/val/test split, no labels.

    Expected layout (torchvision's), also accepted directly under ``<root>``::

        <root>/celeba/img_align_celeba/000001.jpg ... 202599.jpg   (unzipped img_align_celeba.zip)
        <root>/celeba/list_eval_partition.txt

    The split follows ``list_eval_partition.txt`` (162,770 / 19,867 / 19,962 images), so
    ``val_fraction`` is ignored. Images are decoded when read (they do not fit in memory): each
    is centre-cropped to ``crop_size`` and resized with antialiasing to ``image_size``. Every
    label is 0. Use ``num_workers`` > 0 for speed: JPEG decoding dominates the step time of
    small models.

    Args:
        root, batch_size, num_workers, pin_memory, persistent_workers, seed: as in
            ``ImageDataModule``.
        val_fraction (float, default 0.1): ignored; the official partition decides.
        image_size (int | None, default 64): side length of the returned images.
        hflip (bool, default False): random left-right flips of training batches (faces are
            nearly symmetric, so this is a safe augmentation).
        crop_size (int, default 140): side of the centred square cut from each 178x218 photo
            before resizing; 140 keeps the face and drops most background.
    """

    channels = 3
    # The default output side; the aligned photos themselves are 178x218.
    native_image_size = 64
    num_classes = None
    #: The loader argument CelebA sets otherwise than ``ImageDataModule``.
    ARGUMENT_DEFAULTS: ClassVar[dict] = {"image_size": 64}

    def __init__(
        self,
        crop_size: PositiveInt = 140,
        **loader,
    ) -> None:
        super().__init__(**forward(CelebADataModule, loader))
        self.crop_size = crop_size

    @property
    def folder(self) -> Path:
        """The folder expected to hold ``img_align_celeba/`` and ``list_eval_partition.txt``."""
        return self.root / "celeba"

    def _locate(self) -> Path | None:
        for folder in (self.folder, self.root):
            if (folder / IMAGE_FOLDER).is_dir() and (folder / PARTITION_FILE).is_file():
                return folder
        return None

    def check_files(self) -> None:
        if self._locate() is not None:
            return
        folder = self.folder.resolve()
        missing = [str(folder / IMAGE_FOLDER) + "/"] if not (folder / IMAGE_FOLDER).is_dir() else []
        missing += [str(folder / PARTITION_FILE)] if not (folder / PARTITION_FILE).is_file() else []
        raise DataError(
            f"CelebA not found: missing {' and '.join(missing)}. Put the files here:\n"
            f"  {folder}/{IMAGE_FOLDER}/000001.jpg ... 202599.jpg  (unzip img_align_celeba.zip "
            f"into {folder}/)\n"
            f"  {folder}/{PARTITION_FILE}\n"
            f"(both may also sit directly in {folder.parent}/). Get them from {_SOURCE}. "
            "lit_gen does not download CelebA."
        )

    def load_splits(self) -> dict[str, Dataset]:
        folder = self._locate()
        assert folder is not None, "check_files() runs before load_splits()"
        names = read_partition(folder / PARTITION_FILE)
        image_dir = folder / IMAGE_FOLDER
        # One directory listing checks 202,599 names far faster than one stat call per file.
        with os.scandir(image_dir) as entries:
            present = {entry.name for entry in entries}
        missing = [name for split in names.values() for name in split if name not in present]
        if missing:
            nested = (image_dir / IMAGE_FOLDER).is_dir()
            hint = (f" {image_dir}/{IMAGE_FOLDER}/ exists: the zip was unzipped one level too deep; "
                    "move its files up one folder." if nested else " Unzip img_align_celeba.zip again.")
            raise DataError(
                f"{folder / PARTITION_FILE} names {len(missing)} image(s) missing from {image_dir}/, "
                f"first {image_dir / missing[0]}.{hint}"
            )
        return {
            split: CelebAImages([os.path.join(image_dir, name) for name in split_names], self.crop_size,
                                self.image_size)
            for split, split_names in names.items()
        }
