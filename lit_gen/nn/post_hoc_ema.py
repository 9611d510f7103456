"""Post-hoc EMA (Karras et al. 2024, "Analyzing and improving the training dynamics of diffusion models",
EDM2, section 3 and appendix C): choose the averaging length after training.

A *power-function* EMA of exponent gamma averages the weights seen up to step t with the profile
p(tau) = (gamma + 1) tau^gamma / t^(gamma + 1) over 0 <= tau <= t; its relative length (the profile's
standard deviation over t) is

    sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3)))

(``gamma_of``, ``sigma_rel_of``). Updated once per step with beta_t = (1 - 1/t)^(gamma + 1), it keeps that
profile at every t, whatever the run's length, which an exponential EMA (a fixed decay) does not.

Tracking two such averages and keeping their weights every few thousand steps (snapshots) is enough to
rebuild, afterwards, the average of *any* length: a profile is a linear combination of the snapshots'
profiles, and the weights averaged with it the same combination of their weights (averaging is linear).
``synthesis`` finds the combination by least squares in the L2 inner product of profiles, which has a
closed form (``profile_inner``), and reports how far the best combination stays from the wanted
profile, so lengths the snapshots cannot reach are refused rather than approximated badly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch


def sigma_rel_of(gamma: float) -> float:
    """The relative standard deviation of the power profile with exponent ``gamma`` (> -1)."""
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def gamma_of(sigma_rel: float) -> float:
    """The exponent whose profile has relative standard deviation ``sigma_rel`` (0 < sigma_rel < sqrt(1/12)).

    sigma_rel_of decreases from sqrt(1/12) (gamma = 0, a uniform average) to 0 as gamma grows, so a bisection
    on a log scale finds the one solution to float64 precision.
    """
    if not 0 < sigma_rel < math.sqrt(1 / 12):
        raise ValueError(f"sigma_rel must lie in (0, {math.sqrt(1 / 12):.4f}) (0.2887 is a plain running mean), "
                         f"got {sigma_rel}")
    low, high = 0.0, 1.0
    while sigma_rel_of(high) > sigma_rel:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        if sigma_rel_of(middle) > sigma_rel:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def beta_at(step: int, gamma: float) -> float:
    """The decay of a power EMA's ``step``-th update (1-based): (1 - 1/step)^(gamma + 1); 0 at step 1."""
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


def profile_inner(t_a: float, gamma_a: float, t_b: float, gamma_b: float) -> float:
    """The L2 inner product of two power profiles (at steps t_a, t_b with exponents gamma_a, gamma_b):

    integral over [0, min(t_a, t_b)] of (ga + 1)(gb + 1) tau^(ga + gb) / (t_a^(ga + 1) t_b^(gb + 1)) dtau
      = (ga + 1)(gb + 1) m^(ga + gb + 1) / ((ga + gb + 1) t_a^(ga + 1) t_b^(gb + 1)),  m = min(t_a, t_b)

    computed through logarithms (t^gamma overflows for long runs).
    """
    m = min(t_a, t_b)
    log = (math.log(gamma_a + 1) + math.log(gamma_b + 1) + (gamma_a + gamma_b + 1) * math.log(m)
           - math.log(gamma_a + gamma_b + 1) - (gamma_a + 1) * math.log(t_a) - (gamma_b + 1) * math.log(t_b))
    return math.exp(log)


class Synthesis(NamedTuple):
    """How to build one average from the snapshots: ``weights`` per (snapshot, profile) in the order
    given, and the relative L2 distance of the combined profile from the wanted one."""

    weights: list[float]
    relative_error: float


def synthesis(sources: Sequence[tuple[float, float]], t: float, gamma: float) -> Synthesis:
    """Least-squares weights x that make sum_i x_i p(t_i, gamma_i) closest to p(t, gamma).

    ``sources`` lists (step, gamma) of every stored average (each snapshot holds one per tracked
    profile). The normal equations A x = b use A_ij = <p_i, p_j>, b_i = <p_i, p>, solved in float64 by
    least squares (nearby snapshots make A nearly singular); the error is ||sum x_i p_i - p|| / ||p||.
    """
    if not sources:
        raise ValueError("no snapshots to synthesise from")
    a = torch.tensor([[profile_inner(ti, gi, tj, gj) for tj, gj in sources] for ti, gi in sources], dtype=torch.float64)
    b = torch.tensor([profile_inner(ti, gi, t, gamma) for ti, gi in sources], dtype=torch.float64)
    x = torch.linalg.lstsq(a, b[:, None], driver="gelsd").solution[:, 0]
    target = profile_inner(t, gamma, t, gamma)
    squared = float(x @ a @ x - 2 * x @ b + target)
    return Synthesis(x.tolist(), math.sqrt(max(squared, 0.0) / target))


def combine(state_dicts: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_i weights[i] * state_dicts[i] for every floating tensor (in float64, then the tensor's dtype);
    other tensors (counters) are the last state dict's."""
    if len(state_dicts) != len(weights) or not state_dicts:
        raise ValueError(f"combine needs one weight per state dict and at least one: got {len(state_dicts)} state dicts "
                         f"but {len(weights)} weights")
    out = {}
    for key, last in state_dicts[-1].items():
        if torch.is_floating_point(last):
            total = sum(w * sd[key].double() for sd, w in zip(state_dicts, weights))
            out[key] = total.to(last.dtype)
        else:
            out[key] = last.clone()
    return out
