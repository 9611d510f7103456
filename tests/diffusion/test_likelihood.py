"""DDPM's variational bound against closed forms, on Gaussian data whose likelihood is known.

For x_0 ~ N(0, s^2) (per dimension) the exact noise predictor is
eps(x_t) = sqrt(1 - ab_t) x_t / (ab_t s^2 + 1 - ab_t). With it, every term of the bound has a closed
form given x_0: the KL terms are quadratic in (x_0, eps), so their expectation over x_t is exact; the
discretized decoder L_0 is a one-dimensional expectation, done by Gauss-Hermite quadrature.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
import torch

from lit_gen.diffusion.likelihood import variational_bound
from lit_gen.diffusion.objectives import VPObjective
from lit_gen.diffusion.schedule import NoiseSchedule
from lit_gen.nn.densities import HALF_BIN, bits_per_dim

S = 0.2  # data standard deviation on [-1, 1]


def exact_eps_predictor(schedule: NoiseSchedule):
    def model_fn(x_t, t):
        ab = schedule.alphas_cumprod.double()[t].view(-1, 1, 1, 1)
        return ((1 - ab).sqrt() * x_t.double() / (ab * S**2 + 1 - ab)).float()
    return model_fn


def log_bin_mass(x, mean, std):
    """log P(bin of x) under N(mean, std^2), float64 numpy (no edge bins: the test data stays inside)."""
    from scipy.special import log_ndtr

    upper, lower = (x + HALF_BIN - mean) / std, (x - HALF_BIN - mean) / std
    # Mirror bins right of the mean into the left tail, where log_ndtr keeps its precision.
    flip = lower > 0
    upper, lower = np.where(flip, -lower, upper), np.where(flip, -upper, lower)
    log_upper, log_lower = log_ndtr(upper), log_ndtr(lower)
    return log_upper + np.log1p(-np.exp(log_lower - log_upper))


class Constants(NamedTuple):
    """The schedule's formulas in float64 numpy (index i is the paper's step t = i + 1)."""

    ab: np.ndarray         # alpha-bar
    post_var: np.ndarray   # posterior variance beta (1 - ab') / (1 - ab)
    coef1: np.ndarray      # posterior mean's coefficient of x_0
    a: np.ndarray          # sqrt(ab)
    b: np.ndarray          # sqrt(1 - ab)
    g: np.ndarray          # x0_hat = g x_t for the exact eps predictor


def constants(T: int) -> Constants:
    betas = np.linspace(1e-4, 0.02, T)
    ab = np.cumprod(1 - betas)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    a, b = np.sqrt(ab), np.sqrt(1 - ab)
    c = b / (ab * S**2 + 1 - ab)  # eps_hat = c x_t
    return Constants(ab, betas * (1 - ab_prev) / (1 - ab), betas * np.sqrt(ab_prev) / (1 - ab), a, b, (1 - b * c) / a)


def closed_form_prior(x: np.ndarray, T: int) -> np.ndarray:
    """L_T per image: KL(N(a x, 1 - ab) || N(0, 1)) summed over the dimensions of x (B, D)."""
    ab = constants(T).ab[-1]
    return (0.5 * (-np.log(1 - ab) + (1 - ab) + ab * x**2 - 1)).sum(1)


def decoder_given_x1(x: np.ndarray, x1: np.ndarray, T: int) -> np.ndarray:
    """L_0 per image for the drawn x_1: -log P(bins of x_0) under N(g_1 x_1, the clipped posterior variance)."""
    k = constants(T)
    # coef1 = 1 and coef2 = 0 at the first step, so the mean is x0_hat itself.
    return -log_bin_mass(x, k.g[0] * x1, math.sqrt(k.post_var[1])).sum(-1)


def kl_given_x_t(x: np.ndarray, x_t: np.ndarray, i: np.ndarray, T: int) -> np.ndarray:
    """L_{t-1} per image for the drawn x_t at steps ``i`` (B,): the two posteriors share their variance, so
    the KL is |coef1 (x_0 - x0_hat)|^2 / (2 variance)."""
    k = constants(T)
    coef1, g, var = k.coef1[i][:, None], k.g[i][:, None], k.post_var[i][:, None]
    return (coef1**2 * (x - g * x_t) ** 2 / (2 * var)).sum(1)


def closed_form_terms(x: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L_T, sum of the L_{t-1}, L_0) per image, each its expectation over the x_t draws."""
    k = constants(T)
    kl = sum(k.coef1[i] ** 2 * ((1 - k.g[i] * k.a[i]) ** 2 * x**2 + k.g[i] ** 2 * k.b[i] ** 2) / (2 * k.post_var[i])
             for i in range(1, T)).sum(1)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    x1 = k.a[0] * x[..., None] + k.b[0] * nodes
    decoder = -(log_bin_mass(x[..., None], k.g[0] * x1, math.sqrt(k.post_var[1])) * weights).sum(-1).sum(1)
    return closed_form_prior(x, T), kl, decoder


def closed_form_bound(x0: np.ndarray, T: int) -> np.ndarray:
    """E over x_t of the bound, per image (nats), computed in float64 from the schedule's formulas."""
    return sum(closed_form_terms(x0.reshape(len(x0), -1), T))


@pytest.fixture(scope="module")
def gaussian_data():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(512, 1, 2, 2, generator=g) * S
    assert x0.abs().max() < 1 - 2 * HALF_BIN
    return x0


T_BOUND = 100


def bound_and_draws(x0: torch.Tensor, terms: int | None):
    """The bound of the exact model and every network call it made: [(x_t, t)] in float64 numpy, (B, D) and (B,)."""
    schedule = NoiseSchedule(T_BOUND)
    exact = exact_eps_predictor(schedule)
    calls = []

    def recording(x_t, t):
        calls.append((x_t.double().numpy().reshape(len(x_t), -1), t.numpy().copy()))
        return exact(x_t, t)

    bound = variational_bound(recording, VPObjective.from_schedule(schedule), x0, clip_x0=False, terms=terms,
                              generator=torch.Generator().manual_seed(1))
    return bound, calls


@pytest.mark.parametrize("terms", [None, 8])
def test_each_term_of_the_bound_is_its_closed_form_given_its_draws(gaussian_data, terms):
    """Given the x_t the bound drew (read off the network's calls), every term is deterministic."""
    T = T_BOUND
    bound, calls = bound_and_draws(gaussian_data, terms)
    x = gaussian_data.double().numpy().reshape(len(gaussian_data), -1)
    assert bound.terms == (terms or T - 1)
    # L_T has no draw at all. The schedule's constants are float32 (relative rounding 6e-8), and
    # -log(1 - ab) + (1 - ab) - 1 cancels 0.46 down to 0.09: ~5e-7 relative; rtol 1e-5 leaves 20x.
    np.testing.assert_allclose(bound.prior.double().numpy(), closed_form_prior(x, T), rtol=1e-5, atol=0)
    # L_0: one call at t = 0, whose x_1 fixes the decoder's Gaussian. Its float32 mean (~0.8 at most, rounding
    # ~5e-8) is ~6e-6 decoder stds (0.0082) off, moving -log P(bin) by |z| times that: <= 3e-5 per pixel at
    # |z| <= 5, 1.2e-4 per image; 5e-4 nats leaves 4x. (A decoder std 0.5% off moves it 2e-3 to 1e-2.)
    decoder_calls = [x_t for x_t, t in calls if (t == 0).all()]
    assert len(decoder_calls) == 1 and len(calls) == 1 + bound.terms
    np.testing.assert_allclose(bound.decoder.double().numpy(), decoder_given_x1(x, decoder_calls[0], T), rtol=0,
                               atol=5e-4)
    # The L_{t-1}: one call per term, x_t drawn afresh. With fewer terms than T - 1, call k draws each
    # image's step in the k-th of `terms` equal slices of [1, T), and each term stands for the slice's
    # (T - 1) / terms steps. Float32 means (~1) and their difference coef1 (x0 - x0_hat) lose ~1e-7
    # relative per term, up to ~10x where the two posterior means nearly cancel; rtol 1e-4 over the 99
    # terms leaves margin (measured: 3e-6 and 9e-6).
    steps = [t for _, t in calls[1:]]
    if terms is None:
        assert [set(t.tolist()) for t in steps] == [{i} for i in range(1, T)]
        weight = 1.0
    else:
        edges = 1 + np.linspace(0, T - 1, terms + 1)
        assert all(((np.floor(edges[k]) <= t) & (t < edges[k + 1])).all() for k, t in enumerate(steps))  # floored
        weight = (T - 1) / terms
    expected = sum(weight * kl_given_x_t(x, x_t, t, T) for x_t, t in calls[1:])
    np.testing.assert_allclose(bound.diffusion.double().numpy(), expected, rtol=1e-4, atol=0)
    # The total is the three terms: the margins above, added.
    total = closed_form_prior(x, T) + decoder_given_x1(x, decoder_calls[0], T) + expected
    np.testing.assert_allclose(bound.total.double().numpy(), total, rtol=1e-4, atol=5e-4)


@pytest.mark.parametrize("terms", [None, 8])
def test_the_random_terms_are_unbiased_estimates_of_their_closed_forms(gaussian_data, terms):
    """The x_t draws follow q(x_t | x_0) and the stratified steps cover [1, T): the mean of each random term over
    images matches its expectation within 4 of its own standard errors (per-image spreads: decoder ~2 nats,
    the sum of the L_{t-1} ~5 nats over all terms, ~28 with 8 terms: standard errors 0.09, 0.2 and 1.2). Rounding
    (<= 1e-4 relative, test above) is far below them; deterministic errors are the test above's to catch."""
    bound, _ = bound_and_draws(gaussian_data, terms)
    x = gaussian_data.double().numpy().reshape(len(gaussian_data), -1)
    _, kl, decoder = closed_form_terms(x, T_BOUND)
    for name, estimate, exact in [("decoder", bound.decoder, decoder), ("diffusion", bound.diffusion, kl)]:
        diff = estimate.double().numpy() - exact
        standard_error = diff.std(ddof=1) / math.sqrt(len(diff))
        assert abs(diff.mean()) < 4 * standard_error, (name, diff.mean(), standard_error)


def test_bound_of_the_exact_model_stays_above_the_exact_likelihood_and_tightens_with_T(gaussian_data):
    """-log P(bins) of the data's own distribution <= the bound, whose gap shrinks as T grows.

    (Measured here: 6.75 exact against 8.67 bits/dim at T = 100 and 7.49 at T = 1000; continuous data
    keeps a gap at L_0, where q(x_1 | x_0) blurs x_0 over more than one bin.)
    """
    x = gaussian_data.double().numpy().reshape(len(gaussian_data), -1)
    dims = x.shape[1]
    exact = bits_per_dim(-log_bin_mass(x, 0.0, S).sum(1).mean(), dims)
    gaps = {T: bits_per_dim(closed_form_bound(gaussian_data.double().numpy(), T).mean(), dims) - exact
            for T in (10, 100, 1000)}
    assert all(gap > 0 for gap in gaps.values())
    assert gaps[10] > gaps[100] > 2 * gaps[1000]


def test_a_worse_model_has_a_larger_bound(gaussian_data):
    schedule = NoiseSchedule(50)
    exact = exact_eps_predictor(schedule)
    g = torch.Generator().manual_seed(2)
    objective = VPObjective.from_schedule(schedule)
    good = variational_bound(exact, objective, gaussian_data, clip_x0=False, generator=g).total.mean()
    worse = variational_bound(lambda x, t: 0.8 * exact(x, t), objective, gaussian_data, clip_x0=False,
                              generator=torch.Generator().manual_seed(2)).total.mean()
    assert worse > good + 0.1


def test_terms_out_of_range_is_an_error(gaussian_data):
    schedule = NoiseSchedule(10)
    with pytest.raises(ValueError, match="terms must be in"):
        variational_bound(exact_eps_predictor(schedule), VPObjective.from_schedule(schedule), gaussian_data[:2], terms=10)
