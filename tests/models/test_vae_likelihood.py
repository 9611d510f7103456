"""VAE likelihood bounds against a linear-Gaussian model, whose exact marginal likelihood is known.

p(z) = N(0, I), p(x | z) = N(W z + b, s^2 I)  =>  p(x) = N(b, W W^T + s^2 I). The VAE's decoder and
encoder are replaced by that linear model (through the sigmoid the VAE puts on its mean), so its own
``likelihood_bounds`` is checked: with the exact posterior the ELBO is exact, with a poor one the
importance-weighted bound rises towards the truth as k grows and never passes it.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lit_gen.nn.densities import HALF_BIN, bits_per_dim, discretized_gaussian_log_likelihood
from lit_gen.models.vae import VAE

D, L, S = 4, 2, 0.1  # pixel dimensions (a 2x2 image), latent size, decoder std on [-1, 1]


class LinearDecoder(nn.Module):
    """Logits whose sigmoid, mapped to [-1, 1], is exactly W z + b."""

    def __init__(self, W, b):
        super().__init__()
        self.W, self.b = W, b

    def forward(self, z):
        u = ((z @ self.W.T + self.b + 1.0) / 2.0).clamp(1e-6, 1 - 1e-6)
        return torch.logit(u).view(-1, 1, 2, 2)


class PosteriorEncoder(nn.Module):
    """(mu, logvar) of q(z | x): the exact posterior, or a deliberately wrong one."""

    def __init__(self, W, b, shrink=1.0, inflate=0.0):
        super().__init__()
        precision = torch.eye(L, dtype=torch.float64) + W.double().T @ W.double() / S**2
        self.cov = torch.linalg.inv(precision)
        self.W, self.b, self.shrink, self.inflate = W.double(), b.double(), shrink, inflate

    def forward(self, x):
        x = x.flatten(1).double()
        mu = (x - self.b) @ self.W @ self.cov.T / S**2 * self.shrink
        logvar = torch.log(torch.diagonal(self.cov)).expand_as(mu) + self.inflate
        return torch.cat([mu, logvar], 1).float()


def linear_gaussian_vae(shrink=1.0, inflate=0.0):
    g = torch.Generator().manual_seed(0)
    # Orthogonal columns: the exact posterior then has a diagonal covariance, which q(z|x) can hold.
    W = torch.linalg.qr(torch.randn(D, L, generator=g))[0] * torch.tensor([0.2, 0.1])
    b = torch.randn(D, generator=g) * 0.05
    vae = VAE(channels=1, image_size=2, hidden_dims=(4,), latent_dim=L, likelihood="gaussian", gaussian_std=S / 2)
    vae.decoder = LinearDecoder(W, b)
    vae.encoder = PosteriorEncoder(W, b, shrink, inflate)
    z = torch.randn(256, L, generator=g)
    x = (z @ W.T + b + S * torch.randn(256, D, generator=g)).view(-1, 1, 2, 2)
    assert x.abs().max() < 0.99, "test data must stay inside the open edge bins"
    cov = W.double() @ W.double().T + S**2 * torch.eye(D, dtype=torch.float64)
    exact = torch.distributions.MultivariateNormal(b.double(), cov).log_prob(x.flatten(1).double())
    # A bin's probability is the density times its width, up to O(width^2 / s^2) (about 1e-3 here).
    exact = (exact + D * math.log(2 * HALF_BIN)).float()
    return vae, x, exact


def test_elbo_is_exact_with_the_true_posterior():
    vae, x, exact = linear_gaussian_vae()
    bounds = vae.likelihood_bounds(x, samples=4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(bounds.elbo, exact, atol=5e-3)
    assert torch.allclose(bounds.iw, exact, atol=5e-3)


def test_importance_weighted_bound_rises_towards_the_exact_likelihood_and_never_passes_it():
    vae, x, exact = linear_gaussian_vae(shrink=0.5, inflate=1.0)
    means = {}
    for k in (1, 10, 1000):
        bounds = vae.likelihood_bounds(x, samples=k, generator=torch.Generator().manual_seed(k))
        assert (bounds.iw >= bounds.elbo - 1e-5).all()
        means[k] = float(bounds.iw.mean())
        # A bound in expectation: one image's estimate may pass log p(x); the mean over 256 images
        # may not, beyond its Monte Carlo error (about 0.02 nats here).
        assert means[k] <= float(exact.mean()) + 0.05, "a lower bound above the exact log-likelihood"
    gap = {k: float(exact.mean()) - v for k, v in means.items()}
    assert gap[1] > 1.0, "the wrong posterior should leave a visible ELBO gap"
    assert gap[10] < 0.2 * gap[1]
    assert abs(gap[1000]) < 0.05


def test_bernoulli_vae_has_no_bits_per_dim():
    vae = VAE(channels=1, image_size=2, hidden_dims=(4,), latent_dim=L)
    with pytest.raises(ValueError, match="likelihood: gaussian"):
        vae.likelihood_bounds(torch.zeros(2, 1, 2, 2))


def test_discretized_gaussian_matches_its_definition_and_sums_to_one():
    levels = torch.linspace(-1, 1, 256)
    mean, log_scale = torch.tensor(0.3), torch.tensor(math.log(0.2))
    logp = discretized_gaussian_log_likelihood(levels, mean, log_scale)
    assert math.isclose(float(logp.double().exp().sum()), 1.0, rel_tol=1e-5)
    normal = torch.distributions.Normal(0.3, 0.2)
    i = 140
    inside = normal.cdf(levels[i] + HALF_BIN) - normal.cdf(levels[i] - HALF_BIN)
    assert math.isclose(float(logp[i]), math.log(float(inside)), rel_tol=1e-4)
    assert math.isclose(float(logp[-1]), math.log(1 - float(normal.cdf(levels[-1] - HALF_BIN))), rel_tol=1e-4)
    # Far in a tail the mass is still finite and monotone.
    far = discretized_gaussian_log_likelihood(torch.tensor([0.5, 0.6]), torch.tensor(-0.9), torch.tensor(math.log(0.01)))
    assert torch.isfinite(far).all() and far[0] > far[1]
    assert math.isclose(bits_per_dim(64 * math.log(2), 64), 1.0)
