"""ImageDataModule, UInt8ImageDataset and split_indices: the behaviour every datamodule inherits."""

from __future__ import annotations

import pytest
import torch

from lit_gen.data.base import ImageDataModule, UInt8ImageDataset, split_indices
from lit_gen.errors import ConfigError
from lit_gen.signatures import check_arguments


class ToyDataModule(ImageDataModule):
    """40 in-memory 4x4 grey images whose pixels all equal their index, so items are identifiable."""

    channels = 1
    native_image_size = 4
    num_classes = 10

    def load_splits(self):
        images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 4, 4).contiguous()
        labels = torch.arange(40) % 10
        train, val = split_indices(40, self.val_fraction, self.seed)
        return {
            "train": UInt8ImageDataset(images[train], labels[train], self.image_size),
            "val": UInt8ImageDataset(images[val], labels[val], self.image_size),
            "test": UInt8ImageDataset(images[:5], labels[:5], self.image_size),
        }


def test_split_indices_partition_and_determinism():
    train, val = split_indices(100, 0.2, seed=3)
    assert len(train) == 80 and len(val) == 20
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))  # disjoint and complete
    again_train, again_val = split_indices(100, 0.2, seed=3)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    _, other_val = split_indices(100, 0.2, seed=4)
    assert not torch.equal(val, other_val)


def test_split_indices_edge_cases():
    train, val = split_indices(10, 0.0, seed=0)
    assert len(val) == 0 and train.tolist() == list(range(10))
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(10, 1.0, seed=0)


def test_uint8_dataset_range_dtype_and_resize():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 8, 8).contiguous()
    dataset = UInt8ImageDataset(images, torch.tensor([1, 7], dtype=torch.int32), image_size=4)
    # Resized once at construction, stored as uint8.
    assert dataset.images.shape == (2, 3, 4, 4) and dataset.images.dtype == torch.uint8
    black, label = dataset[0]
    white, _ = dataset[1]
    assert black.dtype == torch.float32 and black.shape == (3, 4, 4)
    assert torch.all(black == -1.0) and torch.all(white == 1.0)
    assert label.dtype == torch.int64 and int(label) == 1


def test_uint8_dataset_rejects_float_images_and_label_mismatch():
    with pytest.raises(ValueError, match="uint8"):
        UInt8ImageDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match="labels"):
        UInt8ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), 4)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"batch_size": 0}, "data.batch_size"), ({"val_fraction": 1.0}, "data.val_fraction"),
     ({"image_size": 0}, "data.image_size"), ({"num_workers": -1}, "data.num_workers")],
)
def test_the_config_rejects_bad_values_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        check_arguments("data", ToyDataModule, kwargs)
    with pytest.raises(AssertionError):  # built in Python, past the config
        ToyDataModule(**kwargs)


def test_image_size_defaults_to_native_and_resizes_when_given():
    assert ToyDataModule().image_size == 4
    image, _ = ToyDataModule(image_size=8).dataset("train")[0]
    assert image.shape == (1, 8, 8)


def test_unknown_split_names_the_choices():
    with pytest.raises(ValueError, match="train, val, test"):
        ToyDataModule().dataset("training")


def test_augment_batch_flips_only_when_enabled():
    images = torch.arange(64 * 4, dtype=torch.float32).view(64, 1, 1, 4)
    assert torch.equal(ToyDataModule(hflip=False).augment_batch(images), images)

    torch.manual_seed(0)
    flipped = ToyDataModule(hflip=True).augment_batch(images)
    was_flipped = torch.tensor([torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images)])
    unchanged = torch.tensor([torch.equal(f, i) for f, i in zip(flipped, images)])
    assert torch.all(was_flipped ^ unchanged)  # each image is either flipped or left alone
    assert 10 < int(was_flipped.sum()) < 54  # about half
    torch.manual_seed(0)  # the same global seed draws the same flips (exact resume relies on it)
    assert torch.equal(ToyDataModule(hflip=True).augment_batch(images), flipped)


def test_train_loader_is_seeded_and_drops_ragged_batches():
    dm = ToyDataModule(batch_size=8, val_fraction=0.1, seed=5)  # 36 training images
    batches = list(dm.train_dataloader())
    assert len(batches) == 4 and all(images.shape == (8, 1, 4, 4) for images, _ in batches)
    assert batches[0][1].dtype == torch.int64
    again = next(iter(ToyDataModule(batch_size=8, val_fraction=0.1, seed=5).train_dataloader()))
    assert torch.equal(again[0], batches[0][0])  # same seed, same shuffle order
    val = list(dm.val_dataloader())
    assert sum(len(labels) for _, labels in val) == 4  # evaluation keeps every image


def test_batches_are_gathered_at_once_and_equal_per_item_collation():
    from torch.utils.data import DataLoader, Subset, default_collate

    from lit_gen.data.base import CollatedBatch, collate

    images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    ds = UInt8ImageDataset(images, torch.arange(10), image_size=4)
    indices = [7, 2, 9]
    gathered = ds.__getitems__(indices)
    assert isinstance(gathered, CollatedBatch) and len(gathered) == 3
    expected = default_collate([ds[i] for i in indices])
    for got, want in zip(collate(gathered), expected):
        assert torch.equal(got, want)
    # A DataLoader with the default collation (a user's own) still gets (image, label) samples.
    subset = Subset(ds, torch.tensor([1, 3, 5, 7]))
    for got, want in zip(next(iter(DataLoader(subset, batch_size=4))), default_collate([ds[i] for i in (1, 3, 5, 7)])):
        assert torch.equal(got, want)


def test_resuming_from_an_epoch_end_checkpoint_replays_the_next_epochs_batches(tmp_path):
    """Lightning's loop counters run one epoch ahead after such a checkpoint; the order must not."""
    import lightning as L

    from lit_gen.models.base import GenerativeModule, LossOutput

    class Recorder(GenerativeModule):
        def __init__(self):
            super().__init__(lr=1e-3)
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen = []

        def loss(self, batch):
            self.seen.append((self.current_epoch, batch[0][:, 0, 0, 0].tolist()))
            return LossOutput((batch[0].mean() * self.w) ** 2, {})

        def on_save_checkpoint(self, checkpoint):  # not a registered family: no lit_gen metadata
            pass

    class SaveAtFirstEpochEnd(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                trainer.save_checkpoint(tmp_path / "epoch_end.ckpt")

    def trainer(**kwargs):
        return L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, **kwargs)

    uninterrupted = Recorder()
    trainer(callbacks=[SaveAtFirstEpochEnd()]).fit(uninterrupted, datamodule=ToyDataModule(batch_size=8))
    resumed = Recorder()
    trainer().fit(resumed, datamodule=ToyDataModule(batch_size=8), ckpt_path=tmp_path / "epoch_end.ckpt")
    later_epochs = [entry for entry in uninterrupted.seen if entry[0] >= 1]
    assert len(later_epochs) == 8 and resumed.seen == later_epochs
