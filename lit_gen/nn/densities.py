"""Likelihoods in one unit, so every family's column compares: bits per dimension.

Convention (shared by the VAE, DDPM and anything else that reports bits/dim): images live in
[-1, 1] and stand for 256 levels, each value x the centre of a bin of width 2/255; the outermost
bins are open (x <= -1 + 1/255 takes everything below, x >= 1 - 1/255 everything above), as in Ho
et al.'s discretized decoder. A model's negative log-likelihood is -log P(bins of x), in nats per
image; bits/dim divides it by ``D * ln 2`` with D = C * H * W. Continuous decoders are therefore
evaluated as *discretized* Gaussians (a CDF difference per pixel), never as a density: a density
at a point is not a probability and would make the columns incomparable.

Everything here is elementwise math on tensors, used by ``models/vae.py``,
``diffusion/likelihood.py`` and the evaluation CLIs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Half the width of one of the 256 bins of [-1, 1].
HALF_BIN = 1.0 / 255.0
#: log(2) once, for nats -> bits.
LN2 = math.log(2.0)


def bits_per_dim(nats_per_image: Tensor | float, dims: int) -> Tensor | float:
    """Negative log-likelihood in nats per image -> bits per dimension (``dims`` = C * H * W)."""
    return nats_per_image / (dims * LN2)


def log1mexp(a: Tensor) -> Tensor:
    """log(1 - exp(a)) for a <= 0, accurate at both ends (Maechler 2012: expm1 near 0, log1p far from it)."""
    return torch.where(a > -LN2, torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def log_bin_mass(lower: Tensor, upper: Tensor) -> Tensor:
    """log(Phi(upper) - Phi(lower)) for standardised bin edges lower < upper, without cancellation.

    A difference of two CDFs loses every digit when both are near 1 (a bin far above the mean) and
    underflows when both are tiny (far below it). A bin above 0 is mirrored below it (Phi(u) - Phi(l)
    = Phi(-l) - Phi(-u)), and the mass is log Phi(hi) + log(1 - Phi(lo) / Phi(hi)) from the log-CDFs,
    which keep their precision in the lower tail.
    """
    above = lower > 0
    hi = torch.where(above, -lower, upper)
    lo = torch.where(above, -upper, lower)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + log1mexp(log_lo - log_hi)


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(bin of x) per element under N(mean, exp(log_scale)^2), for x in [-1, 1] (nats).

    The bins are those of the module docstring, computed in float64: an inner bin's mass by
    ``log_bin_mass`` (exact however far in a tail the bin sits), an outer bin's from the log-CDF of
    its open side.
    """
    x, mean, log_scale = (v.double() for v in torch.broadcast_tensors(x, mean, log_scale))
    inv_scale = torch.exp(-log_scale)
    upper = (x - mean + HALF_BIN) * inv_scale
    lower = (x - mean - HALF_BIN) * inv_scale
    out = torch.where(x <= -1.0 + HALF_BIN, torch.special.log_ndtr(upper),
                      torch.where(x >= 1.0 - HALF_BIN, torch.special.log_ndtr(-lower), log_bin_mass(lower, upper)))
    return out.float()


def gaussian_log_density(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; mean, exp(logvar)) per element (nats): for latents, which are continuous."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) per element (nats)."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def importance_weighted_bounds(log_weights: Tensor) -> tuple[Tensor, Tensor]:
    """(ELBO estimate, importance-weighted bound) per example from log weights of shape (k, B).

    ``log_weights[i] = log p(x, z_i) - log q(z_i | x)`` for k draws z_i ~ q(z|x). The ELBO
    estimate is their mean; the bound of Burda et al. (2016) is ``logsumexp - log k``. Both are
    lower bounds on log p(x) in expectation; the second is never below the first and tends to
    log p(x) as k grows.
    """
    k = log_weights.shape[0]
    elbo = log_weights.mean(0)
    iw = torch.logsumexp(log_weights.double(), dim=0).float() - math.log(k)
    return elbo, iw
