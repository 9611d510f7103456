"""CIFAR10DataModule on fake pickle batches written as Python 2 wrote the real ones."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from lit_gen.data import cifar10
from lit_gen.data.base import split_indices
from lit_gen.data.cifar10 import CIFAR10DataModule
from lit_gen.errors import DataError
from tests.fakes import python2_pickle, write_fake_cifar10


def _as_model_range(images) -> torch.Tensor:
    return torch.from_numpy(images).float() / 127.5 - 1.0


def _stack(dataset):
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.stack(labels)


@pytest.fixture
def written(tmp_path):
    return write_fake_cifar10(tmp_path, per_batch=4, n_test=6)


def test_pixels_channel_order_and_labels_round_trip(tmp_path, written):
    dm = CIFAR10DataModule(root=str(tmp_path), val_fraction=0.25, seed=2)
    train, val = split_indices(20, 0.25, seed=2)
    for split, images, labels in (
        ("train", written["train_images"][train], written["train_labels"][train]),
        ("val", written["train_images"][val], written["train_labels"][val]),
        ("test", written["test_images"], written["test_labels"]),
    ):
        got_images, got_labels = _stack(dm.dataset(split))
        assert got_images.dtype == torch.float32 and got_images.shape == (len(labels), 3, 32, 32)
        assert got_images.min() >= -1.0 and got_images.max() <= 1.0
        # Exact equality also proves the (N, 3072) rows became red, green, blue planes in order.
        assert torch.equal(got_images, _as_model_range(images))
        assert got_labels.dtype == torch.int64 and got_labels.tolist() == labels.tolist()
    assert (dm.channels, dm.native_image_size, dm.num_classes, dm.hflip) == (3, 32, 10, False)


def test_split_follows_seed(tmp_path, written):
    def val_images(seed):
        return _stack(CIFAR10DataModule(root=str(tmp_path), val_fraction=0.3, seed=seed).dataset("val"))[0]

    assert torch.equal(val_images(0), val_images(0))
    assert not torch.equal(val_images(0), val_images(1))


def test_resize_train_loader_and_root_layout(tmp_path):
    write_fake_cifar10(tmp_path, per_batch=4, n_test=2, folder=".")  # batches directly in root
    dm = CIFAR10DataModule(root=str(tmp_path), image_size=16, batch_size=4, val_fraction=0.2)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and labels.shape == (4,) and labels.dtype == torch.int64


def test_python3_pickles_load_too(tmp_path, written):
    # Someone re-pickling the batches with Python 3 gets bytes via _codecs and numpy._core names.
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    path.write_bytes(pickle.dumps(batch, protocol=2))
    labels = _stack(CIFAR10DataModule(root=str(tmp_path)).dataset("test"))[1]
    assert labels.tolist() == written["test_labels"].tolist()


def test_missing_folder_names_folder_files_and_fix(tmp_path):
    with pytest.raises(DataError) as error:
        CIFAR10DataModule(root=str(tmp_path)).setup()
    message = str(error.value)
    assert str(tmp_path.resolve() / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "data_batch_5" in message and "test_batch" in message
    assert "data.download=true" in message and "cifar-10-python.tar.gz" in message


def test_half_copied_folder_names_the_missing_file(tmp_path, written):
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="Missing there: data_batch_3\\."):
        CIFAR10DataModule(root=str(tmp_path)).setup()


def test_truncated_pickle_is_named(tmp_path, written):
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"data_batch_2: not a readable CIFAR-10 batch pickle .*truncated or corrupt"):
        CIFAR10DataModule(root=str(tmp_path)).setup()


def test_garbage_bytes_are_named(tmp_path, written):
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"<html>quota exceeded</html>")
    with pytest.raises(DataError, match="test_batch: not a readable CIFAR-10 batch pickle"):
        CIFAR10DataModule(root=str(tmp_path)).setup()


def test_pickle_naming_other_code_is_refused_unrun(tmp_path, written):
    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(Hostile(), protocol=2))
    with pytest.raises(DataError, match="data_batch_1: .*refusing to load"):
        CIFAR10DataModule(root=str(tmp_path)).setup()
    assert not marker.exists()


@pytest.mark.parametrize(
    ("batch", "message"),
    [({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}, "expected a dict with keys"),
     ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"uint8 array of shape \(N, 3072\)"),
     ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "expected 2 integer labels"),
     ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, r"labels must be in 0\.\.9")],
)
def test_wrong_contents_are_named(tmp_path, written, batch, message):
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").write_bytes(python2_pickle(batch))
    with pytest.raises(DataError, match=f"data_batch_4: .*{message}"):
        CIFAR10DataModule(root=str(tmp_path)).setup()


def test_download_runs_in_prepare_data_when_missing(tmp_path, monkeypatch):
    calls = []

    def fake_download(dataset, root, folder):
        calls.append((dataset, folder))
        write_fake_cifar10(root, per_batch=2, n_test=3)

    monkeypatch.setattr(cifar10, "download_with_torchvision", fake_download)
    dm = CIFAR10DataModule(root=str(tmp_path), download=True)
    dm.prepare_data()
    dm.prepare_data()
    assert calls == [("CIFAR10", tmp_path / "cifar-10-batches-py")]
    assert len(dm.dataset("test")) == 3
