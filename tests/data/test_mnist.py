"""MNISTDataModule on fake idx files written in the real format."""

from __future__ import annotations

import pytest
import torch

from lit_gen.data import mnist
from lit_gen.data.base import split_indices
from lit_gen.data.mnist import MNISTDataModule
from lit_gen.errors import DataError
from tests.fakes import write_fake_mnist


def _as_model_range(images) -> torch.Tensor:
    return torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1.0


def _stack(dataset):
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.stack(labels)


@pytest.fixture
def written(tmp_path):
    return write_fake_mnist(tmp_path, n_train=30, n_test=10)


def test_pixels_and_labels_round_trip(tmp_path, written):
    dm = MNISTDataModule(root=str(tmp_path), val_fraction=0.2, seed=3)
    train, val = split_indices(30, 0.2, seed=3)
    for split, images, labels in (
        ("train", written["train_images"][train], written["train_labels"][train]),
        ("val", written["train_images"][val], written["train_labels"][val]),
        ("test", written["test_images"], written["test_labels"]),
    ):
        got_images, got_labels = _stack(dm.dataset(split))
        assert got_images.dtype == torch.float32 and got_images.shape == (len(labels), 1, 28, 28)
        assert got_images.min() >= -1.0 and got_images.max() <= 1.0
        assert torch.equal(got_images, _as_model_range(images))
        assert got_labels.dtype == torch.int64 and got_labels.tolist() == labels.tolist()
    assert (dm.channels, dm.native_image_size, dm.num_classes) == (1, 28, 10)


@pytest.mark.parametrize(("folder", "gz"), [("MNIST/raw", True), ("MNIST", False), (".", True)])
def test_other_layouts_and_gzip(tmp_path, folder, gz):
    written = write_fake_mnist(tmp_path, n_train=12, n_test=4, gz=gz, folder=folder)
    dm = MNISTDataModule(root=str(tmp_path), val_fraction=0.25)
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [9, 3, 4]
    assert torch.equal(_stack(dm.dataset("test"))[0], _as_model_range(written["test_images"]))


def test_split_follows_seed(tmp_path, written):
    def val_labels(seed):
        return _stack(MNISTDataModule(root=str(tmp_path), val_fraction=0.3, seed=seed).dataset("val"))[0]

    assert torch.equal(val_labels(0), val_labels(0))
    assert not torch.equal(val_labels(0), val_labels(1))


def test_resize_and_train_loader(tmp_path, written):
    dm = MNISTDataModule(root=str(tmp_path), image_size=32, batch_size=4, val_fraction=0.2)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 1, 32, 32) and labels.dtype == torch.int64
    assert len(list(dm.train_dataloader())) == 6  # 24 training images, full batches only


def test_missing_files_name_folder_files_and_fix(tmp_path):
    with pytest.raises(DataError) as error:
        MNISTDataModule(root=str(tmp_path)).setup()
    message = str(error.value)
    assert str(tmp_path.resolve() / "MNIST" / "raw") in message
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert name in message
    assert "data.download=true" in message


def test_truncated_file_is_named(tmp_path, written):
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated file: the header promises 30x28x28"):
        MNISTDataModule(root=str(tmp_path)).setup()


def test_bad_magic_number_is_named(tmp_path, written):
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes((2051).to_bytes(4, "big") + path.read_bytes()[4:])  # an image magic on a label file
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: bad magic number 2051 \(expected 2049"):
        MNISTDataModule(root=str(tmp_path)).setup()


def test_truncated_gzip_is_named(tmp_path):
    write_fake_mnist(tmp_path, n_train=12, n_test=4, gz=True)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: cannot read this file"):
        MNISTDataModule(root=str(tmp_path)).setup()


def test_image_and_label_counts_must_match(tmp_path, written):
    # A well-formed label file from another copy: 29 labels for 30 images.
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes((2049).to_bytes(4, "big") + (29).to_bytes(4, "big") + bytes(29))
    with pytest.raises(DataError, match="holds 30 images but .* holds 29 labels"):
        MNISTDataModule(root=str(tmp_path)).setup()


def test_download_runs_in_prepare_data_only_when_files_are_missing(tmp_path, monkeypatch):
    calls = []

    def fake_download(dataset, root, folder):
        calls.append((dataset, root, folder))
        write_fake_mnist(root, n_train=10, n_test=4)

    monkeypatch.setattr(mnist, "download_with_torchvision", fake_download)
    dm = MNISTDataModule(root=str(tmp_path), download=True)
    with pytest.raises(DataError, match="prepare_data"):  # setup alone never downloads
        dm.setup()
    dm.prepare_data()
    assert calls == [("MNIST", tmp_path, tmp_path / "MNIST" / "raw")]
    dm.prepare_data()  # files present now: no second download
    assert len(calls) == 1 and len(dm.dataset("test")) == 4


def test_failed_download_says_where_to_copy_the_files(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match=r"downloading MNIST into .* failed .*copy the files into .*MNIST/raw"):
        MNISTDataModule(root=str(tmp_path), download=True).prepare_data()


def test_half_copied_folder_names_the_missing_file(tmp_path, written):
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"Missing there: t10k-labels-idx1-ubyte\."):
        MNISTDataModule(root=str(tmp_path)).setup()
