"""lit_gen.models.vae: ELBO terms, the reparameterization trick, prior sampling."""

from __future__ import annotations

import math

import pytest
import torch

from lit_gen.models.vae import VAE, gaussian_kl


def test_kl_equals_the_closed_form_and_a_monte_carlo_estimate():
    torch.manual_seed(0)
    mu = torch.randn(3, 4)
    logvar = torch.randn(3, 4) * 0.5
    var = logvar.exp()
    by_hand = 0.5 * (mu**2 + var - 1 - logvar).sum(1)
    assert torch.allclose(gaussian_kl(mu, logvar), by_hand)
    q = torch.distributions.Normal(mu, var.sqrt())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert torch.allclose(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1), atol=1e-5)


def test_kl_is_zero_at_the_prior():
    assert gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 5)).abs().max() == 0


def test_reparameterization_passes_gradients_to_mu_and_sigma():
    model = VAE(channels=1, image_size=8, hidden_dims=(16,), latent_dim=2)
    mu = torch.zeros(4, 2, requires_grad=True)
    logvar = torch.zeros(4, 2, requires_grad=True)
    model.reparameterize(mu, logvar).pow(2).sum().backward()
    assert mu.grad is not None and logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_loss_terms_and_beta(digits_batch):
    torch.manual_seed(0)
    model = VAE(channels=1, image_size=8, hidden_dims=(32,), latent_dim=4, beta=0.5)
    out = model.loss(digits_batch)
    assert set(out.terms) == {"recon", "kl", "elbo"}
    assert torch.allclose(out.total, out.terms["recon"] + 0.5 * out.terms["kl"])
    assert torch.allclose(out.terms["elbo"], -(out.terms["recon"] + out.terms["kl"]))
    # Bernoulli reconstruction in nats per image: at most 64 * log(2) + slack for an untrained decoder.
    assert 0 < out.terms["recon"].item() < 64 * math.log(2) * 2


def test_gaussian_likelihood_with_fixed_and_learned_std(digits_batch):
    fixed = VAE(channels=1, image_size=8, hidden_dims=(16,), latent_dim=2, likelihood="gaussian", gaussian_std=0.1)
    learned = VAE(channels=1, image_size=8, hidden_dims=(16,), latent_dim=2, likelihood="gaussian")
    assert fixed.log_std is None and isinstance(learned.log_std, torch.nn.Parameter)
    assert torch.isfinite(fixed.loss(digits_batch).total) and torch.isfinite(learned.loss(digits_batch).total)
    with pytest.raises(AssertionError):  # the config refuses it first (tests/test_rules.py)
        VAE(channels=1, image_size=8, likelihood="gaussian", gaussian_std=0.0)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_loss_falls_on_digits(digits_batch, architecture):
    torch.manual_seed(0)
    model = VAE(channels=1, image_size=8, architecture=architecture, hidden_dims=(64,), latent_dim=4,
                conv_channels=(16,), lr=3e-3)
    optimizer = model.configure_optimizers()
    losses = []
    for _ in range(60):
        loss = model.loss(digits_batch).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0]


def test_samples_come_from_the_prior_and_are_deterministic():
    model = VAE(channels=1, image_size=8, hidden_dims=(16,), latent_dim=3)
    a = model.sample(6, generator=torch.Generator().manual_seed(0))
    b = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, (model.decode(z) + 1) / 2)


def test_negative_beta_is_rejected():
    with pytest.raises(AssertionError):  # the config refuses it first (tests/test_rules.py)
        VAE(channels=1, image_size=8, beta=-1.0)
