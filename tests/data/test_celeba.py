"""CelebADataModule on a handful of fake 178x218 JPEGs and an official-format partition file."""

from __future__ import annotations

import pytest
import torch

from lit_gen.data.celeba import CelebADataModule
from lit_gen.errors import ConfigError, DataError
from lit_gen.signatures import check_arguments
from tests.fakes import celeba_center_color, write_fake_celeba

# JPEG is lossy: a decoded solid square stays within a few grey levels of its colour.
_JPEG_TOLERANCE = 0.15


def _expected(index: int, size: int) -> torch.Tensor:
    color = torch.tensor(celeba_center_color(index), dtype=torch.float32) / 127.5 - 1.0
    return color.view(3, 1, 1).expand(3, size, size)


@pytest.fixture
def names(tmp_path):
    return write_fake_celeba(tmp_path, splits=(6, 2, 2))


def test_official_partition_crop_and_labels(tmp_path, names):
    dm = CelebADataModule(root=str(tmp_path), image_size=16, val_fraction=0.5)  # val_fraction is ignored
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [6, 2, 2]
    offset = {"train": 0, "val": 6, "test": 8}  # file i+1 holds colour i; the partition lists them in order
    for split in ("train", "val", "test"):
        for i in range(len(dm.dataset(split))):
            image, label = dm.dataset(split)[i]
            assert image.dtype == torch.float32 and image.shape == (3, 16, 16)
            assert image.min() >= -1.0 and image.max() <= 1.0
            # Only the centred 140x140 square has this colour; a wrong crop would mix in its inverse.
            assert (image - _expected(offset[split] + i, 16)).abs().max() < _JPEG_TOLERANCE
            assert label.dtype == torch.int64 and int(label) == 0
    assert (dm.channels, dm.num_classes, dm.image_size) == (3, None, 16)


def test_defaults_give_64px_and_a_smaller_crop_stays_centred(tmp_path, names):
    image, _ = CelebADataModule(root=str(tmp_path)).dataset("test")[0]
    assert image.shape == (3, 64, 64)
    image, _ = CelebADataModule(root=str(tmp_path), crop_size=100, image_size=8).dataset("train")[2]
    assert (image - _expected(2, 8)).abs().max() < _JPEG_TOLERANCE


def test_files_directly_under_root_and_train_loader(tmp_path):
    write_fake_celeba(tmp_path, splits=(4, 1, 1), folder=".")
    dm = CelebADataModule(root=str(tmp_path), image_size=8, batch_size=2)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [0, 0] and labels.dtype == torch.int64


def test_missing_folder_says_which_files_go_where(tmp_path):
    with pytest.raises(DataError) as error:
        CelebADataModule(root=str(tmp_path)).setup()
    message = str(error.value)
    folder = tmp_path.resolve() / "celeba"
    assert f"missing {folder / 'img_align_celeba'}/ and {folder / 'list_eval_partition.txt'}" in message
    assert f"unzip img_align_celeba.zip into {folder}/" in message
    assert "Google Drive" in message and "does not download" in message


def test_missing_partition_file_is_named(tmp_path, names):
    (tmp_path / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match=r"CelebA not found: missing \S*celeba/list_eval_partition\.txt\."):
        CelebADataModule(root=str(tmp_path)).setup()


def test_partition_naming_a_missing_image_fails_at_setup(tmp_path, names):
    (tmp_path / "celeba" / "img_align_celeba" / "000007.jpg").unlink()
    with pytest.raises(DataError, match=r"names 1 image\(s\) missing .*first \S*img_align_celeba/000007\.jpg"):
        CelebADataModule(root=str(tmp_path)).setup()


def test_zip_unzipped_one_level_too_deep_gets_a_hint(tmp_path, names):
    images = tmp_path / "celeba" / "img_align_celeba"
    nested = images / "img_align_celeba"
    nested.mkdir()
    for path in images.glob("*.jpg"):
        path.rename(nested / path.name)
    with pytest.raises(DataError, match="unzipped one level too deep"):
        CelebADataModule(root=str(tmp_path)).setup()


def test_malformed_partition_line_is_named(tmp_path, names):
    partition = tmp_path / "celeba" / "list_eval_partition.txt"
    lines = partition.read_text().splitlines()
    lines[2] = "000003.jpg train"
    partition.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"list_eval_partition\.txt, line 3: expected '<image>\.jpg <0\|1\|2>'"):
        CelebADataModule(root=str(tmp_path)).setup()


def test_corrupt_jpeg_fails_when_read_naming_the_file(tmp_path, names):
    path = tmp_path / "celeba" / "img_align_celeba" / "000002.jpg"
    path.write_bytes(path.read_bytes()[:300])  # a cut-off download
    dm = CelebADataModule(root=str(tmp_path), image_size=8)
    dm.setup()  # decoding is lazy: setup only checks that the files exist
    dm.dataset("train")[0]
    with pytest.raises(DataError, match=r"000002\.jpg: cannot decode this JPEG"):
        dm.dataset("train")[1]


def test_crop_larger_than_the_photo_is_explained(tmp_path, names):
    dm = CelebADataModule(root=str(tmp_path), crop_size=200, image_size=8)
    with pytest.raises(DataError, match=r"000001\.jpg: the image is 178x218, smaller than data\.crop_size=200"):
        dm.dataset("train")[0]
    with pytest.raises(ConfigError, match=r"data.crop_size: expected an integer >= 1, got 0"):
        check_arguments("data", CelebADataModule, {"crop_size": 0})
