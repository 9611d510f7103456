"""lit_gen.models.ae: the classic autoencoder, its conv variant and the denoising autoencoder."""

from __future__ import annotations

import pytest
import torch

from lit_gen.errors import ConfigError
from lit_gen.models.ae import Autoencoder, DenoisingAutoencoder


def train_steps(model, batch, steps):
    optimizer = model.configure_optimizers()
    losses = []
    for _ in range(steps):
        loss = model.loss(batch).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_classic_architecture_matches_the_lesson():
    model = Autoencoder(channels=1, image_size=28)
    widths = [m.out_features for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 64, 12, 3]
    widths = [m.out_features for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [12, 64, 128, 784]


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_loss_falls_on_digits(digits_batch, architecture):
    torch.manual_seed(0)
    model = Autoencoder(channels=1, image_size=8, architecture=architecture, hidden_dims=(64, 32), latent_dim=4,
                        conv_channels=(16,), lr=3e-3)
    losses = train_steps(model, digits_batch, 60)
    assert losses[-1] < 0.6 * losses[0]


def test_conv_code_is_spatial(digits_batch):
    model = Autoencoder(channels=1, image_size=8, architecture="conv", latent_dim=3, conv_channels=(8, 16))
    code = model.encode(digits_batch[0])
    assert code.shape == (32, 3, 2, 2)
    assert model.decode(code).shape == (32, 1, 8, 8)


def test_bad_image_size_for_conv_is_explained():
    with pytest.raises(ConfigError, match=r"model.conv_channels=\[8, 16\]: image_size=10 cannot be halved 2 times"):
        Autoencoder(channels=1, image_size=10, architecture="conv", conv_channels=(8, 16))


def test_denoiser_corrupts_inputs_not_targets(digits_batch, monkeypatch):
    model = DenoisingAutoencoder(channels=1, image_size=8, noise="gaussian", noise_level=0.5)
    seen = {}
    model.encoder.register_forward_pre_hook(lambda module, args: seen.update(input=args[0]))
    mse_calls = []
    real_mse = torch.nn.functional.mse_loss
    monkeypatch.setattr(torch.nn.functional, "mse_loss", lambda a, b: mse_calls.append(b) or real_mse(a, b))
    images = digits_batch[0]
    model.loss(digits_batch)
    clean = (images + 1) / 2
    assert not torch.allclose(seen["input"], images, atol=1e-3)  # the encoder sees noise
    assert torch.equal(mse_calls[0], clean)  # the target is the clean image
    # The noise has the configured level on the [0, 1] scale.
    assert abs(((seen["input"] + 1) / 2 - clean).std().item() - 0.5) < 0.05


def test_mask_noise_drops_the_configured_fraction():
    torch.manual_seed(0)
    model = DenoisingAutoencoder(channels=1, image_size=8, noise="mask", noise_level=0.25)
    ones = torch.ones(2000, 1, 8, 8)
    dropped = (model.corrupt(ones) == 0).float().mean().item()
    assert abs(dropped - 0.25) < 0.01


def test_denoiser_rejects_impossible_noise_levels():
    with pytest.raises(ConfigError, match="model.noise_level must be < 1 for mask noise"):
        DenoisingAutoencoder(channels=1, image_size=8, noise="mask", noise_level=1.5)
    DenoisingAutoencoder(channels=1, image_size=8, noise="gaussian", noise_level=1.5)  # a std may exceed 1


def test_sample_shape_range_and_determinism():
    model = Autoencoder(channels=1, image_size=8, hidden_dims=(16,), latent_dim=2)
    a = model.sample(5, generator=torch.Generator().manual_seed(1))
    b = model.sample(5, generator=torch.Generator().manual_seed(1))
    c = model.sample(5, generator=torch.Generator().manual_seed(2))
    assert a.shape == (5, 1, 8, 8) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.zeros(2, dtype=torch.long))
