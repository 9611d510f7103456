"""lit_gen.nn.densities against references computed to 400 digits (mpmath) and closed forms."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from lit_gen.nn.densities import (HALF_BIN, bits_per_dim, discretized_gaussian_log_likelihood, gaussian_log_density,
                                  log1mexp, log_bin_mass, normal_kl)

# A context of its own (mpmath's global one is shared): a CDF of 1 - 1e-200 (30 standard deviations) keeps its tail.
mp = mpmath.MPContext()
mp.dps = 400


def reference_log_bin(x: float, mean: float, scale: float) -> float:
    """log P(bin of x) under N(mean, scale^2), outer bins open, in 400-digit arithmetic."""
    cdf = lambda v: mp.ncdf((mp.mpf(v) - mean) / scale)  # noqa: E731
    low, high = mp.mpf(x) - HALF_BIN, mp.mpf(x) + HALF_BIN
    if x <= -1 + HALF_BIN:
        mass = cdf(high)
    elif x >= 1 - HALF_BIN:
        mass = 1 - cdf(low)
    else:
        mass = cdf(high) - cdf(low)
    return float(mp.log(mass))


# (x, mean, scale): bins near the mean, far above and far below it (where a difference of CDFs loses
# every digit or underflows), both open outer bins, and a bin straddling the mean.
CASES = [(0.0, 0.0, 0.5), (0.3, 0.1, 0.2), (-0.6, 0.2, 0.3), (0.5, 0.0, 0.05), (-0.5, 0.0, 0.05),
         (0.9, -0.9, 0.1), (-0.9, 0.9, 0.1), (0.2, 0.0, 0.01), (-1.0, 0.0, 0.1), (1.0, 0.0, 0.1),
         (-1.0, 0.9, 0.05), (1.0, -0.5, 0.05), (0.0, 1e-3, 0.004)]


@pytest.mark.parametrize("x, mean, scale", CASES)
def test_the_discretized_log_likelihood_is_the_exact_log_mass_of_the_bin(x, mean, scale):
    got = discretized_gaussian_log_likelihood(torch.tensor([x]), torch.tensor([mean]), torch.tensor([math.log(scale)]))
    expected = reference_log_bin(x, mean, scale)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(expected, rel=1e-6, abs=1e-6), (x, mean, scale)


def test_a_bin_far_in_a_tail_is_neither_zero_nor_the_density_at_its_centre():
    # 20 standard deviations above the mean, bins 0.16 wide in those units: the density times the width
    # misses the mass by about 0.5 nats; a difference of CDFs in float64 gives log(0) there.
    got = float(discretized_gaussian_log_likelihood(torch.tensor([0.5]), torch.tensor([-0.5]), torch.tensor([math.log(0.05)])))
    assert got == pytest.approx(reference_log_bin(0.5, -0.5, 0.05), rel=1e-6)
    centre = 1.0 / 0.05
    density_times_width = -0.5 * centre**2 - 0.5 * math.log(2 * math.pi) - math.log(0.05) + math.log(2 * HALF_BIN)
    assert abs(got - density_times_width) > 0.1


def test_log_bin_mass_is_symmetric_and_exact_in_both_tails():
    for lower, upper in [(-0.1, 0.2), (3.0, 3.5), (30.0, 30.01), (-40.0, -39.0), (-1e-4, 1e-4)]:
        expected = float(mp.log(mp.ncdf(upper) - mp.ncdf(lower)))
        both = log_bin_mass(torch.tensor([lower, -upper], dtype=torch.float64),
                            torch.tensor([upper, -lower], dtype=torch.float64))
        torch.testing.assert_close(both, torch.tensor([expected, expected], dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_log1mexp_at_both_ends():
    a = torch.tensor([-1e-10, -0.1, -math.log(2), -5.0, -50.0], dtype=torch.float64)
    expected = torch.tensor([float(mp.log(1 - mp.exp(mp.mpf(v)))) for v in a.tolist()], dtype=torch.float64)
    torch.testing.assert_close(log1mexp(a), expected, rtol=1e-12, atol=0)


def test_gaussian_log_density_and_kl_against_closed_forms():
    x, mean, logvar = torch.tensor([0.3, -2.0]), torch.tensor([0.1, 1.0]), torch.tensor([math.log(0.25), 0.0])
    expected = [float(mp.log(mp.npdf(xi, mi, math.exp(lv / 2)))) for xi, mi, lv in zip(x.tolist(), mean.tolist(), logvar.tolist())]
    torch.testing.assert_close(gaussian_log_density(x, mean, logvar), torch.tensor(expected), rtol=1e-6, atol=1e-6)
    # KL(N(0.1, 0.25) || N(1, 1)) = log(1 / 0.5) + (0.25 + 0.81) / 2 - 1/2
    kl = normal_kl(torch.tensor(0.1), torch.tensor(math.log(0.25)), torch.tensor(1.0), torch.tensor(0.0))
    assert float(kl) == pytest.approx(math.log(2.0) + (0.25 + 0.81) / 2 - 0.5, rel=1e-6)


def test_bits_per_dim_divides_nats_by_dimensions_and_ln2():
    assert bits_per_dim(math.log(2.0) * 3072, 3072) == pytest.approx(1.0)
