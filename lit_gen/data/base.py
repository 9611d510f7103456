"""``ImageDataModule``: what every lit_gen datamodule shares.

A subclass reads its dataset's real files in ``load_splits()`` and returns the three splits as
datasets of ``(image float32 (C, H, W) in [-1, 1], label int64)``. This class owns batching,
the deterministic train/val split, worker settings and the resumable train loader.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, default_collate
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_gen.data.transforms import resize_uint8, to_signed_unit
from lit_gen.errors import DataError
from lit_gen.rules import Fraction, NonNegativeInt, PositiveInt

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class UInt8ImageDataset(Dataset):
    """Images held in memory as uint8 (N, C, H, W), converted per item to [-1, 1] at ``image_size``.

    Images are resized once here, not per item: every epoch reads the same pixels.
    """

    def __init__(self, images: Tensor, labels: Tensor, image_size: int) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"expected {images.shape[0]} labels, got shape {tuple(labels.shape)}")
        self.images = resize_uint8(images, image_size)
        self.labels = labels.to(torch.int64)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        return to_signed_unit(self.images[index]), self.labels[index]

    def __getitems__(self, indices) -> "CollatedBatch":
        """A whole batch by one gather and one conversion (DataLoader calls it with a batch's indices).

        Per-item indexing and collation cost about 11 us per image, more than a small model's
        training step spends on it. lit_gen's loaders pass the batch through (``collate``); any
        other DataLoader still sees a sequence of ``(image, label)`` samples.
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        return CollatedBatch(to_signed_unit(self.images[index]), self.labels[index])


class CollatedBatch(Sequence):
    """A batch a dataset assembled at once, readable as the sequence of its samples."""

    def __init__(self, *columns: Tensor) -> None:
        self.columns = list(columns)

    def __len__(self) -> int:
        return self.columns[0].shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return tuple(column[i] for column in self.columns)


def collate(samples):
    """``default_collate``, except for batches a dataset's ``__getitems__`` already assembled."""
    if isinstance(samples, CollatedBatch):
        return samples.columns
    return default_collate(samples)


class TrainerEpochSampler(DistributedSampler):
    """A ``DistributedSampler`` that shuffles by ``trainer.current_epoch`` when an epoch's first index is drawn.

    Lightning sets a sampler's epoch from its own loop counter, which is one ahead after resuming
    from a checkpoint written at an epoch's end (its counters say "processed, not completed"): the
    resumed epoch would be shuffled like the next one. The trainer's current epoch is right in every
    case. Without a trainer it is a plain ``DistributedSampler`` (``set_epoch`` decides).
    """

    def __init__(self, dataset: Dataset, *, trainer: L.Trainer | None = None, **kwargs) -> None:
        super().__init__(dataset, **kwargs)
        self.trainer = trainer

    def __iter__(self):
        # A generator: the epoch is read at the first index drawn, not when the iterator is made
        # (Lightning makes one while checking the loader, before a resumed run's counters are set).
        if self.trainer is not None:
            self.epoch = self.trainer.current_epoch
        yield from super().__iter__()


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A deterministic (train, val) partition of ``range(n)``: the same seed gives the same split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(n * val_fraction))
    return order[n_val:].sort().values, order[:n_val].sort().values


class ImageDataModule(L.LightningDataModule):
    """Shared batching and splitting for image datasets.

    Its arguments are declared here once: a dataset's module takes ``**loader`` and passes it on
    with ``lit_gen.signatures.forward`` (other defaults in its ``ARGUMENT_DEFAULTS``), so the
    config's ``data.batch_size`` and the rest reach every dataset by the same name.

    Args:
        root (str, default "data"): folder that holds the dataset (the config fills it from
            ``LIT_GEN_DATA`` when the YAML leaves it unset).
        batch_size (int, default 64): images per batch on each process.
        num_workers (int, default 0): loader worker processes.
        pin_memory (bool, default False): pin batches for faster host-to-GPU copies.
        persistent_workers (bool, default False): keep workers alive between epochs.
        val_fraction (float, default 0.1): share of the training files held out for validation
            (datasets with an official validation split ignore it).
        seed (int, default 0): seed of the train/val split and of the shuffling order.
        image_size (int | None, default None): side length images are resized to; None keeps the
            dataset's native size.
        hflip (bool, default False): flip training images left-right at random (see ``augment_batch``).
    """

    #: Image channels and native side length, set by each subclass.
    channels: int = 1
    native_image_size: int = 28
    #: Number of classes (None for unlabelled datasets such as CelebA).
    num_classes: int | None = None

    def __init__(
        self,
        root: str = "data",
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        val_fraction: Fraction = 0.1,
        seed: int = 0,
        image_size: PositiveInt | None = None,
        hflip: bool = False,
    ) -> None:
        super().__init__()
        # The config checks the rules above where it reads them; a Python caller gets an assertion.
        assert batch_size >= 1 and num_workers >= 0 and 0.0 <= val_fraction < 1.0, (batch_size, num_workers, val_fraction)
        assert image_size is None or image_size >= 1, image_size
        self.root = Path(root)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.val_fraction = val_fraction
        self.seed = seed
        self.image_size = image_size or self.native_image_size
        self.hflip = hflip
        self.splits: dict[str, Dataset] | None = None

    # ------------------------------------------------------------------ per dataset
    def load_splits(self) -> dict[str, Dataset]:
        """Read the files and return {"train", "val", "test"} datasets; raise DataError when they are wrong."""
        raise NotImplementedError

    def check_files(self) -> None:
        """Raise a DataError naming the expected path and how to get it, when the dataset is absent."""

    def augment_batch(self, images: Tensor) -> Tensor:
        """Random augmentation of a training batch, applied on its device.

        It runs inside the training step, after the per-step reseed of the global RNG, so a resumed
        run draws exactly the flips the uninterrupted run drew (augmenting in the dataset or in
        ``on_after_batch_transfer`` would draw before the reseed).
        """
        if not self.hflip:
            return images
        flip = torch.rand(images.shape[0], device=images.device) < 0.5
        return torch.where(flip[:, None, None, None], images.flip(-1), images)

    # ------------------------------------------------------------------ LightningDataModule
    def prepare_data(self) -> None:
        self.check_files()

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.check_files()
            splits = self.load_splits()
            assert set(splits) == set(SPLITS), f"load_splits returned {sorted(splits)}"
            self.splits = splits

    def dataset(self, split: str) -> Dataset:
        """One split ("train", "val" or "test") as a dataset, loading the files on first use."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.setup()
        return self.splits[split]

    def held_out(self, split: str) -> bool:
        """Whether a model trained on this datamodule never saw the images of ``split``."""
        return split != "train"

    def train_dataloader(self):
        """Shuffled batches whose order is a function of (seed, epoch, rank) alone.

        A stateful loader lets Lightning save the position inside an epoch. The order comes from a
        ``DistributedSampler`` (one replica per DDP process; Lightning keeps it as it is) that
        shuffles by the trainer's current epoch, read when an epoch's first index is drawn (also
        when Lightning restores a position), so a resumed run replays exactly the batches the
        uninterrupted run saw, whether it was cut mid-epoch or at an epoch's end.
        """
        dataset = self.dataset("train")
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = TrainerEpochSampler(dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=self.seed,
                                      trainer=trainer)
        per_replica = len(sampler)
        return StatefulDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            # Equal-sized batches, unless the split is too small to fill two of them.
            drop_last=per_replica >= 2 * self.batch_size,
            **self._loader_options(),
        )

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")

    def _eval_loader(self, split: str):
        return StatefulDataLoader(self.dataset(split), batch_size=self.batch_size, shuffle=False,
                                  **self._loader_options())

    def _loader_options(self) -> dict:
        return {
            "collate_fn": collate,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
        }


def download_with_torchvision(dataset: str, root: Path, folder: Path) -> None:
    """Fetch ``torchvision.datasets.<dataset>`` (all splits) into ``root``; a DataError if that fails.

    ``folder`` is where the files land, named in the error so that a user without internet
    access knows where to copy them by hand.
    """
    import torchvision  # Imported here: only downloads need it, and it is slow to import.

    logger.info("downloading %s into %s", dataset, root)
    try:
        # One construction fetches every file of the dataset, test split included.
        getattr(torchvision.datasets, dataset)(str(root), train=True, download=True)
    except Exception as exc:  # Network, checksum and disk errors all end the same way for the user.
        raise DataError(
            f"downloading {dataset} into {root} failed ({type(exc).__name__}: {exc}). Check the internet "
            f"connection, or copy the files into {folder} yourself and set data.download=false."
        ) from exc
