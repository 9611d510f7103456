"""lit_gen.models.vqvae: the paper's loss, the encode/decode contract, baseline sampling, usage logging."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.errors import ConfigError
from lit_gen.models.vqvae import VQVAE


def tiny_vqvae(quantizer: dict | None = None, **kwargs) -> VQVAE:
    args = dict(channels=1, image_size=8, hidden_channels=16, num_res_blocks=1, num_downsamples=1, lr=3e-3)
    quantizer = {"name": "vq", "num_codes": 32, "code_dim": 8, **(quantizer or {})}
    return VQVAE(**{**args, **kwargs}, quantizer=quantizer)


def test_loss_is_reconstruction_plus_codebook_plus_commitment(digits_batch):
    torch.manual_seed(0)
    model = tiny_vqvae({"beta": 0.5})
    out = model.loss(digits_batch)
    assert set(out.terms) == {"recon", "codebook", "commitment", "perplexity"}
    assert torch.allclose(out.total, out.terms["recon"] + out.terms["codebook"] + out.terms["commitment"])
    assert torch.allclose(out.terms["commitment"], 0.5 * out.terms["codebook"])  # same distance, beta on commitment
    x_hat, _ = model(digits_batch[0])
    assert torch.allclose(out.terms["recon"], torch.nn.functional.mse_loss(x_hat, digits_batch[0]))


#: One of each quantizer, sized for the tiny model (about 32 codes).
QUANTIZERS = {
    "vq": {"name": "vq", "codebook_ema_decay": None, "restart_dead_codes": True, "dead_code_steps": 5},
    "vq_ema": {"name": "vq", "codebook_ema_decay": 0.9, "restart_dead_codes": True, "dead_code_steps": 5},
    "vq_rotation": {"name": "vq", "codebook_ema_decay": 0.9, "restart_dead_codes": True, "dead_code_steps": 5,
                    "rotation_trick": True},
    "fsq": {"name": "fsq", "levels": [4, 4, 2]},
    "lfq": {"name": "lfq", "num_codes": 32},
}


def any_vqvae(quantizer: dict, **kwargs) -> VQVAE:
    args = dict(channels=1, image_size=8, hidden_channels=16, num_res_blocks=1, num_downsamples=1, lr=3e-3)
    return VQVAE(**{**args, **kwargs}, quantizer=quantizer)


@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
def test_loss_falls_on_digits_with_every_quantizer(digits_batch, kind):
    torch.manual_seed(0)
    model = any_vqvae(QUANTIZERS[kind])
    optimizer = model.configure_optimizers()
    losses = []
    for _ in range(60):
        out = model.loss(digits_batch)
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        losses.append(out.terms["recon"].item())
    assert torch.allclose(out.total, out.terms["recon"] + sum(out.terms[k] for k in model.quantizer(model.encode(
        digits_batch[0])).losses), rtol=1e-4)
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]
    assert model.quantizer.code_usage().used_fraction > 0.25  # restarts, the lattice or the entropy term kept codes in use


@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
def test_codes_round_trip_and_uniform_sampling_with_every_quantizer(digits_batch, kind):
    torch.manual_seed(0)
    model = any_vqvae(QUANTIZERS[kind]).eval()
    x = digits_batch[0][:4]
    indices = model.encode_indices(x)
    assert indices.dtype == torch.long and 0 <= indices.min() and indices.max() < model.num_codes
    x_hat, q = model(x)
    assert torch.equal(q.indices, indices)
    assert torch.allclose(model.decode_indices(indices), x_hat.clamp(-1, 1), atol=1e-5)
    assert torch.equal(model.decode(model.encode(x)), model.decode_indices(indices))
    images = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 8, 8) and 0 <= images.min() and images.max() <= 1


def test_encode_decode_and_indices_agree(digits_batch):
    torch.manual_seed(0)
    model = tiny_vqvae().eval()
    x = digits_batch[0][:4]
    z = model.encode(x)
    assert z.shape == (4, 8, 4, 4)
    indices = model.encode_indices(x)
    assert indices.shape == (4, 4, 4) and indices.dtype == torch.long
    assert torch.equal(model.decode(z), model.decode_indices(indices))
    x_hat, q = model(x)
    assert torch.equal(q.indices, indices)
    assert torch.allclose(model.decode(z), x_hat.clamp(-1, 1), atol=1e-5)
    assert model.decode(z).abs().max() <= 1


def test_baseline_sampling_is_deterministic_in_range_and_points_to_the_prior(caplog):
    model = tiny_vqvae()
    with caplog.at_level(logging.WARNING, logger="lit_gen.models.vqvae"):
        a = model.sample(5, generator=torch.Generator().manual_seed(0))
        b = model.sample(5, generator=torch.Generator().manual_seed(0))
    c = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= a.min() and a.max() <= 1
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "configs/prior_vqvae_digits.yaml" in warnings[0]
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.zeros(2, dtype=torch.long))


def test_code_usage_is_logged_every_epoch(digits_batch):
    torch.manual_seed(0)
    model = tiny_vqvae()
    loader = DataLoader(TensorDataset(*digits_batch), batch_size=8)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, loader)
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/recon", "train/codebook", "train/commitment", "train/perplexity",
                "train/code_perplexity", "train/codes_used", "train/dead_codes"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert 1.0 <= metrics["train/code_perplexity"] <= 32
    assert 0 < metrics["train/codes_used"] <= 1


def test_image_size_must_divide_by_the_downsampling():
    with pytest.raises(ConfigError, match="not divisible by 2 \\*\\* num_downsamples = 4"):
        tiny_vqvae(image_size=10, num_downsamples=2)
