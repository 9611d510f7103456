"""DigitsDataModule: the real scikit-learn digits, split and scaled as documented."""

from __future__ import annotations

import numpy as np
import torch

from lit_gen.data.digits import DigitsDataModule, load_digits_uint8


def _stack(dataset):
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.stack(labels)


def test_real_digits_load_with_documented_splits_and_ranges():
    dm = DigitsDataModule()
    sizes = {split: len(dm.dataset(split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 1374, "val": 153, "test": 270}
    images, labels = _stack(dm.dataset("train"))
    assert images.shape == (1374, 1, 8, 8) and images.dtype == torch.float32
    assert images.min() == -1.0 and images.max() == 1.0  # 0 and 16 map to the ends of [-1, 1]
    assert labels.dtype == torch.int64
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert (dm.channels, dm.native_image_size, dm.num_classes) == (1, 8, 10)


def test_pixels_and_labels_equal_sklearn_load_digits():
    from sklearn.datasets import load_digits

    reference = load_digits()
    images, labels = load_digits_uint8()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.uint8
    np.testing.assert_array_equal(labels.numpy(), reference.target)
    np.testing.assert_array_equal(images[:, 0].numpy(), np.rint(reference.images * 255 / 16))


def test_test_split_is_fixed_and_train_val_follow_the_seed():
    first, same, other = DigitsDataModule(seed=0), DigitsDataModule(seed=0), DigitsDataModule(seed=1)
    test_images = _stack(first.dataset("test"))[0]
    assert torch.equal(_stack(other.dataset("test"))[0], test_images)  # the test split ignores seed
    val_images = _stack(first.dataset("val"))[0]
    assert torch.equal(_stack(same.dataset("val"))[0], val_images)
    assert not torch.equal(_stack(other.dataset("val"))[0], val_images)


def test_image_size_and_train_loader():
    dm = DigitsDataModule(image_size=16, batch_size=32, val_fraction=0.2)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 16, 16) and labels.shape == (32,) and labels.dtype == torch.int64
    assert -1.0 <= images.min() and images.max() <= 1.0
    assert len(dm.dataset("val")) == round(1527 * 0.2)


def test_train_split_all_trains_on_every_digit():
    # The bench's FID reference is the whole set: every arm can then train on exactly those images.
    dm = DigitsDataModule(train_split="all", batch_size=1797)
    images, labels = _stack(dm.dataset("train"))
    assert images.shape == (1797, 1, 8, 8)
    everything, all_labels = load_digits_uint8()
    assert torch.equal(labels, all_labels)
    assert torch.equal(((images + 1) * 127.5).round().to(torch.uint8), everything)
    # val and test keep their images, so their metrics stay comparable with a default run's.
    default = DigitsDataModule()
    for split in ("val", "test"):
        assert torch.equal(_stack(dm.dataset(split))[0], _stack(default.dataset(split))[0])
    assert next(iter(dm.train_dataloader()))[0].shape[0] == 1797


def test_train_split_rejects_other_values():
    import pytest

    from lit_gen.errors import ConfigError
    from lit_gen.signatures import check_arguments

    with pytest.raises(ConfigError, match="data.train_split: expected one of 'train', 'all'"):
        check_arguments("data", DigitsDataModule, {"train_split": "everything"})


def test_train_split_is_a_config_option():
    from lit_gen.config import load_config

    cfg = load_config("configs/ddpm_digits.yaml", ["data.train_split=all"])
    assert cfg.data["train_split"] == "all"
