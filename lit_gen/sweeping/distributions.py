"""W&B parameter distributions as quantile functions, and the value lists of grid search.

Every distribution is drawn the way W&B's sweep engine draws it: a uniform ``u`` in [0, 1] goes
through the distribution's quantile function (inverse CDF). Random search feeds it seeded uniform
draws; bayes search (TPE) searches over ``u`` itself, so its prior is exactly the W&B distribution.

==========================  =========================================================
distribution                value for quantile u (U = min + u (max - min))
==========================  =========================================================
constant                    value
categorical                 values[floor(u n)]
categorical_w_probabilities the first value whose cumulative probability exceeds u
int_uniform                 min + floor(u (max - min + 1))
uniform                     U
q_uniform                   round(U / q) q
log_uniform                 exp(U)                       (min, max are natural-log exponents)
log_uniform_values          exp(log min + u (log max - log min))
q_log_uniform(_values)      round(the above / q) q
inv_log_uniform             exp(-(min + (1 - u)(max - min)))
inv_log_uniform_values      same with min, max = -log(max), -log(min): the values lie in [min, max]
normal / q_normal           mu + sigma Phi^-1(u) (then rounded to q)
log_normal / q_log_normal   exp(mu + sigma Phi^-1(u)) (then rounded to q)
beta / q_beta               the Beta(a, b) quantile (then rounded to q)
==========================  =========================================================

Quantised values are ints when ``q`` is an int in the sweep file, as in W&B.
"""

from __future__ import annotations

import bisect
import itertools
import math
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from lit_gen.errors import SweepError

if TYPE_CHECKING:  # annotations only: parameters validates its bounds with quantile() from here
    from lit_gen.sweeping.parameters import Parameter

# Quantiles of unbounded distributions are infinite at u = 0 or 1; W&B's draws never hit them either.
_EPS = 1e-12
_STANDARD_NORMAL = NormalDist()


def quantile(param: Parameter, u: float) -> Any:
    """The value of ``param`` at quantile ``u`` in [0, 1], as a plain Python value."""
    if not 0.0 <= u <= 1.0:
        raise ValueError(f"quantile u must lie in [0, 1], got {u}")
    d = param.distribution
    if d == "constant":
        return param.value
    if d == "categorical":
        return param.values[min(int(u * len(param.values)), len(param.values) - 1)]
    if d == "categorical_w_probabilities":
        cumulative = list(itertools.accumulate(param.probabilities))
        return param.values[min(bisect.bisect_right(cumulative, u), len(param.values) - 1)]
    if d == "int_uniform":
        span = param.max - param.min + 1
        return int(param.min + min(int(u * span), span - 1))
    if d in ("uniform", "q_uniform"):
        x = param.min + u * (param.max - param.min)
    elif d in ("log_uniform", "q_log_uniform"):
        x = math.exp(param.min + u * (param.max - param.min))
    elif d in ("log_uniform_values", "q_log_uniform_values"):
        low, high = math.log(param.min), math.log(param.max)
        x = math.exp(low + u * (high - low))
    elif d == "inv_log_uniform":
        x = math.exp(-(param.min + (1.0 - u) * (param.max - param.min)))
    elif d == "inv_log_uniform_values":
        low, high = -math.log(param.max), -math.log(param.min)
        x = math.exp(-(low + (1.0 - u) * (high - low)))
    elif d in ("normal", "q_normal"):
        x = param.mu + param.sigma * _normal_quantile(u)
    elif d in ("log_normal", "q_log_normal"):
        x = math.exp(param.mu + param.sigma * _normal_quantile(u))
    elif d in ("beta", "q_beta"):
        from scipy.special import betaincinv  # imported here: only beta parameters need scipy

        x = float(betaincinv(param.a, param.b, u))
    else:  # space.py only lets known distributions through
        raise AssertionError(f"unhandled distribution {d}")
    if d.startswith("q_"):
        return quantize(x, param.q)
    return float(x)


def quantize(x: float, q: float | int) -> float | int:
    """``round(x / q) * q``: an int for an int ``q``, else a float without binary noise (0.3, not 0.30000000000000004)."""
    steps = round(x / q)
    if isinstance(q, int):
        return int(steps * q)
    return float(f"{steps * q:.12g}")


def _normal_quantile(u: float) -> float:
    return _STANDARD_NORMAL.inv_cdf(min(max(u, _EPS), 1.0 - _EPS))


# More values than this on one grid axis is a typo (a q of 1e-9, a max of 1e9), not a search.
MAX_GRID_AXIS = 100_000


def grid_values(param: Parameter) -> list[Any]:
    """The values grid search takes for ``param`` (W&B's rules: int_uniform is every integer from
    min to max; q_uniform is ``arange(min, max, q)``, max excluded).

    Raises ``SweepError`` for an axis of more than ``MAX_GRID_AXIS`` values, before building it.
    """
    d = param.distribution
    if d == "constant":
        return [param.value]
    if d == "categorical":
        return list(param.values)
    if d == "int_uniform":
        _check_axis(param, param.max - param.min + 1)
        return list(range(param.min, param.max + 1))
    if d == "q_uniform":
        span = (param.max - param.min) / param.q  # finite: parameters.py checks q > 0 and finite bounds
        _check_axis(param, span)
        count = max(0, math.ceil(span - 1e-9))
        exact = all(isinstance(v, int) for v in (param.min, param.q))
        return [param.min + k * param.q if exact else float(f"{param.min + k * param.q:.12g}") for k in range(count)]
    raise ValueError(f"parameter {param.name}: {d} has no grid values")


def _check_axis(param: Parameter, count: float) -> None:
    if not count <= MAX_GRID_AXIS:
        raise SweepError(f"parameters.{param.name}: method: grid would try {count:.4g} values of this parameter "
                         f"(more than {MAX_GRID_AXIS}); raise q, narrow min and max, or use method: random")
