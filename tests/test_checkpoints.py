"""lit_gen.checkpoints: safe loading, family checks and clear errors."""

from __future__ import annotations

from pathlib import Path

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


# ------------------------------------------------------------------ files written before a rename
def tiny_vq(family: str, **kwargs):
    from lit_gen.models.vqgan import VQGAN
    from lit_gen.models.vqvae import VQVAE

    args = dict(channels=1, image_size=8, hidden_channels=8, num_res_blocks=1, num_downsamples=1,
                quantizer={"name": "vq", "num_codes": 16, "code_dim": 4, **kwargs})
    if family == "vqgan":
        return VQGAN(**args, perceptual_weight=0.0, disc_layers=1, disc_channels=8)
    return VQVAE(**args)


#: The codebook settings that were the VQ families' own arguments before ``model.quantizer``.
FLAT_CODEBOOK_ARGUMENTS = ("num_codes", "code_dim", "beta", "codebook_ema_decay", "dead_code_steps", "restart_dead_codes")


def with_old_codebook_key(hparams: dict) -> dict:
    """Hyperparameters as a vqvae/vqgan saved them first: flat codebook arguments, the EMA called ``ema_decay``."""
    old = {k: v for k, v in hparams.items() if k != "quantizer"}
    section = hparams["quantizer"]
    assert section["name"] == "vq"
    old.update({k: section[k] for k in FLAT_CODEBOOK_ARGUMENTS})
    old["ema_decay"] = old.pop("codebook_ema_decay")
    return old


def old_vqvae_file(tmp_path) -> Path:
    """A tiny VQ-VAE with a codebook EMA, saved as it was before the rename (``ema_decay``)."""
    torch.manual_seed(0)
    stage = tiny_vq("vqvae", codebook_ema_decay=0.9).eval()
    path = tmp_path / "vqvae.ckpt"
    torch.save(checkpoint_of(stage, with_old_codebook_key(dict(stage.hparams))), path)
    return path


def with_old_first_stage_spec(hparams: dict) -> dict:
    """A two-stage model's hyperparameters with its first-stage spec written under the old name."""
    spec = hparams["first_stage_spec"]
    return {**hparams, "first_stage_spec": {**spec, "hparams": with_old_codebook_key(spec["hparams"])}}


def checkpoint_of(model, hparams: dict) -> dict:
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": hparams}
    model.on_save_checkpoint(checkpoint)
    return checkpoint


@pytest.mark.parametrize("family", ["vqvae", "vqgan"])
def test_vq_checkpoint_saved_with_the_old_ema_decay_name_loads_and_samples(tmp_path, family):
    torch.manual_seed(0)
    model = tiny_vq(family, codebook_ema_decay=0.9).eval()
    path = tmp_path / f"{family}.ckpt"
    torch.save(checkpoint_of(model, with_old_codebook_key(dict(model.hparams))), path)

    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.quantizer.codebook_ema_decay == 0.9 and loaded.hparams["quantizer"]["codebook_ema_decay"] == 0.9
    assert "ema_decay" not in loaded.hparams  # saved again, it is written in today's form
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    expected = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.sample(3, generator=torch.Generator().manual_seed(1)), expected)


def test_first_stage_saved_with_the_old_name_builds_a_prior_and_old_specs_still_load(tmp_path):
    from lit_gen.build import build_model

    stage_path = old_vqvae_file(tmp_path)

    # A prior built today from an old first-stage file saves its spec under the current name.
    prior = build_model("prior", dict(first_stage=str(stage_path), channels=1, image_size=8, n_layer=1, n_head=2,
                                      n_embd=16)).eval()
    assert prior.hparams["first_stage_spec"]["hparams"]["quantizer"]["codebook_ema_decay"] == 0.9
    assert "ema_decay" not in prior.hparams["first_stage_spec"]["hparams"]
    assert prior.first_stage.quantizer.codebook_ema_decay == 0.9

    # A prior saved before the rename holds a spec with the old name: it still loads and samples.
    stage_path.unlink()  # a saved prior needs only its own file
    torch.save(checkpoint_of(prior, with_old_first_stage_spec(dict(prior.hparams))), tmp_path / "prior.ckpt")
    loaded = load_model(tmp_path / "prior.ckpt", expect="prior")
    assert loaded.first_stage.quantizer.codebook_ema_decay == 0.9
    expected = prior.sample(2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(loaded.sample(2, generator=torch.Generator().manual_seed(3)), expected)


def test_latent_diffusion_spec_saved_with_the_old_name_still_loads(tmp_path):
    from lit_gen.build import build_model

    stage_path = old_vqvae_file(tmp_path)
    model = build_model("ddpm", dict(channels=1, image_size=8, base_channels=8, channel_mults=(1,), num_res_blocks=1,
                                     attention_resolutions=(), norm_groups=4, objective={"name": "vp", "timesteps": 20},
                                     ema={"name": "exponential", "decay": 0.0},
                                     first_stage=str(stage_path))).eval()
    assert model.hparams["first_stage_spec"]["hparams"]["quantizer"]["codebook_ema_decay"] == 0.9

    torch.save(checkpoint_of(model, with_old_first_stage_spec(dict(model.hparams))), tmp_path / "ldm.ckpt")
    loaded = load_model(tmp_path / "ldm.ckpt", expect="ddpm")
    assert loaded.first_stage.quantizer.codebook_ema_decay == 0.9
    expected = model.sample(2, generator=torch.Generator().manual_seed(2), steps=3)
    assert torch.equal(loaded.sample(2, generator=torch.Generator().manual_seed(2), steps=3), expected)
