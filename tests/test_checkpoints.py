"""lit_gen.checkpoints: safe loading, family checks and clear errors."""

from __future__ import annotations

import pytest
import torch

from lit_gen.checkpoints import load_model
from lit_gen.errors import CheckpointError
from lit_gen.models.ae import Autoencoder
from lit_gen.models.vae import VAE


def save(model, path):
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def test_round_trip_rebuilds_the_family_and_weights(tmp_path):
    torch.manual_seed(0)
    model = VAE(channels=1, image_size=8, hidden_dims=(16,), latent_dim=3, beta=0.3)
    loaded = load_model(save(model, tmp_path / "vae.ckpt"))
    assert type(loaded) is VAE and loaded.beta == 0.3
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_another_family_is_refused_by_name(tmp_path):
    path = save(Autoencoder(channels=1, image_size=8, hidden_dims=(8,)), tmp_path / "ae.ckpt")
    with pytest.raises(CheckpointError, match="holds a 'ae' model, but a vae checkpoint is needed"):
        load_model(path, expect="vae")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable lit_gen checkpoint"),
        (b"not a checkpoint at all", "not a readable lit_gen checkpoint"),
    ],
)
def test_garbage_files_are_reported(tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_truncated_checkpoint_is_reported(tmp_path):
    path = save(VAE(channels=1, image_size=8, hidden_dims=(16,), latent_dim=3), tmp_path / "vae.ckpt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_model(path)


def test_missing_path_folder_and_foreign_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_model(tmp_path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="has no 'state_dict'"):
        load_model(tmp_path / "plain.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not written by lit_gen"):
        load_model(tmp_path / "other.ckpt")


def test_weights_that_do_not_fit_their_arguments(tmp_path):
    model = VAE(channels=1, image_size=8, hidden_dims=(16,), latent_dim=3)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": {**model.hparams, "latent_dim": 5}}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "mismatch.ckpt")
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_model(tmp_path / "mismatch.ckpt")


class Payload:
    """A custom object: unpickling it would run arbitrary code in a hostile file."""


def test_custom_objects_are_never_unpickled(tmp_path):
    torch.save({"state_dict": {}, "evil": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(tmp_path / "evil.ckpt")
