"""Verdicts that can fail: a 95% interval around each compared quantity, and a three-way rule.

A target ``value op bound`` (e.g. ``FID lit_gen / FID peer <= 0.5``) is

* ``"met"`` only when the bound holds at the *worst* end of the interval (the upper end for ``<=``),
* ``"missed"`` when it fails even at the *best* end (the lower end for ``<=``),
* ``"inconclusive"`` otherwise: the measurement cannot tell.

Two kinds of interval:

``ratio_of_means`` (per-seed values of two independent arms, e.g. FID of n seeds each): a
Welch t-interval on the log of the ratio of means, by the delta method,
``var(log(mean_a / mean_b)) ~= sd_a^2 / (n_a mean_a^2) + sd_b^2 / (n_b mean_b^2)``, with
Welch-Satterthwaite degrees of freedom. Why this and not a bootstrap: with 3 to 5 seeds a bootstrap
resamples from only a handful of values and its interval is far too narrow (with 3 values it has
only 10 distinct resamples); the t quantile (4.3 at 2 degrees of freedom) pays honestly for the few
seeds. Why the log: a ratio of positive quantities is skewed, its log much less, and the interval
stays positive.

``paired_median_ratio`` (timing: interleaved A/B repeats, one pair per repeat): the median of the
per-pair ratios ``a_i / b_i`` with a percentile bootstrap interval (resampling pairs, a seeded
generator). The median ignores the odd repeat a load spike slowed; pairing cancels the slow drift
of the machine's load, which both sides of one repeat share. At least 10 pairs: with fewer, the
bootstrap distribution of a median has too few distinct values to give a 95% interval.

With too few values (fewer than 3 seeds, fewer than 10 pairs) the verdict is ``"inconclusive"``
with the reason, never a guess.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import Literal, NamedTuple

#: Smallest number of per-seed values per arm for an interval of a ratio of means.
MIN_SEEDS = 3
#: Smallest number of interleaved A/B pairs for a bootstrap interval of a median ratio.
MIN_PAIRS = 10
CONFIDENCE = 0.95

Outcome = Literal["met", "missed", "inconclusive"]


class Interval(NamedTuple):
    """An estimate with its two-sided interval; ``low``/``high`` are None when it could not be computed."""

    estimate: float | None
    low: float | None
    high: float | None
    method: str
    n: tuple[int, ...]
    reason: str = ""

    def as_dict(self) -> dict:
        return {"estimate": _r(self.estimate), "low": _r(self.low), "high": _r(self.high), "method": self.method,
                "n": list(self.n), **({"reason": self.reason} if self.reason else {})}


class Verdict(NamedTuple):
    """The outcome of ``target op bound`` over an interval, and why."""

    outcome: Outcome
    interval: Interval
    op: Literal["<=", ">="]
    bound: float
    reason: str

    def as_dict(self) -> dict:
        return {"outcome": self.outcome, "target": f"{self.op} {self.bound:g}", "reason": self.reason,
                **self.interval.as_dict()}


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _t_quantile(confidence: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def ratio_of_means(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Interval of ``mean(a) / mean(b)`` for two independent arms (Welch t on the log ratio, delta method)."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    n = (len(a), len(b))
    method = f"welch-t on log ratio of means, {confidence:.0%}"
    if min(n) == 0:
        return Interval(None, None, None, method, n, "no values")
    ma, sa = mean_sd(a)
    mb, sb = mean_sd(b)
    if any(x <= 0 for x in (*a, *b)):
        return Interval(None, None, None, method, n, "a ratio interval needs positive values")
    estimate = ma / mb
    if min(n) < MIN_SEEDS:
        return Interval(estimate, None, None, method, n, f"need at least {MIN_SEEDS} values per arm, got {n[0]} and {n[1]}")
    va, vb = sa ** 2 / (n[0] * ma ** 2), sb ** 2 / (n[1] * mb ** 2)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(estimate, estimate, estimate, method, n)
    # Welch-Satterthwaite degrees of freedom of the two variance terms (n >= MIN_SEEDS: no division by zero).
    df = (va + vb) ** 2 / (va ** 2 / (n[0] - 1) + vb ** 2 / (n[1] - 1))
    half = _t_quantile(confidence, df) * se
    return Interval(estimate, math.exp(math.log(estimate) - half), math.exp(math.log(estimate) + half), method, n)


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """t-interval of the mean of repeated measurements of one quantity (e.g. a peak memory over 3 runs)."""
    values = [float(v) for v in values]
    n = (len(values),)
    method = f"t-interval of the mean, {confidence:.0%}"
    if not values:
        return Interval(None, None, None, method, n, "no values")
    mean, sd = mean_sd(values)
    if len(values) < MIN_SEEDS:
        return Interval(mean, None, None, method, n, f"need at least {MIN_SEEDS} values, got {len(values)}")
    half = _t_quantile(confidence, len(values) - 1) * sd / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, method, n)


def difference_of_means(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Welch t-interval of ``mean(a) - mean(b)`` for two independent sets of repeated measurements."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    n = (len(a), len(b))
    method = f"welch-t on the difference of means, {confidence:.0%}"
    if min(n) == 0:
        return Interval(None, None, None, method, n, "no values")
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    if min(n) < MIN_SEEDS:
        return Interval(ma - mb, None, None, method, n, f"need at least {MIN_SEEDS} values per side, got {n[0]} and {n[1]}")
    va, vb = sa ** 2 / n[0], sb ** 2 / n[1]
    if va + vb == 0:
        return Interval(ma - mb, ma - mb, ma - mb, method, n)
    df = (va + vb) ** 2 / (va ** 2 / (n[0] - 1) + vb ** 2 / (n[1] - 1))
    half = _t_quantile(confidence, df) * math.sqrt(va + vb)
    return Interval(ma - mb, ma - mb - half, ma - mb + half, method, n)


def paired_log_ratio(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Geometric mean of ``a_i / b_i`` over paired values (e.g. two samplers on the same n checkpoints).

    A t-interval on the mean of ``log(a_i / b_i)`` (n - 1 degrees of freedom), exponentiated: pairing
    removes what the two share (the checkpoint's own quality), so the interval reflects only how the
    ratio varies from one checkpoint to the next.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    logs = [math.log(float(x) / float(y)) for x, y in zip(a, b) if float(x) > 0 and float(y) > 0]
    n = (len(logs),)
    method = f"paired t on log ratios (geometric mean), {confidence:.0%}"
    if not logs:
        return Interval(None, None, None, method, n, "no values")
    centre = statistics.fmean(logs)
    if len(logs) < MIN_SEEDS:
        return Interval(math.exp(centre), None, None, method, n, f"need at least {MIN_SEEDS} pairs, got {len(logs)}")
    half = _t_quantile(confidence, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return Interval(math.exp(centre), math.exp(centre - half), math.exp(centre + half), method, n)


def paired_median_ratio(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE,
                        resamples: int = 10_000, seed: int = 0) -> Interval:
    """Median of ``a_i / b_i`` over interleaved pairs, with a percentile bootstrap interval (pairs resampled)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    ratios = [float(x) / float(y) for x, y in zip(a, b) if float(y) > 0]
    n = (len(ratios),)
    method = f"median of paired ratios, percentile bootstrap ({resamples} resamples, seed {seed}), {confidence:.0%}"
    if not ratios:
        return Interval(None, None, None, method, n, "no values")
    estimate = statistics.median(ratios)
    if len(ratios) < MIN_PAIRS:
        return Interval(estimate, None, None, method, n, f"need at least {MIN_PAIRS} interleaved pairs, got {len(ratios)}")
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = medians[int(math.floor(tail * (resamples - 1)))]
    high = medians[int(math.ceil((1 - tail) * (resamples - 1)))]
    return Interval(estimate, low, high, method, n)


def lower_is_better_effect(ratio: Interval) -> str:
    """What a change did to a lower-is-better value, from the interval of new / old: "better" when the whole
    interval lies below 1, "worse" when above, otherwise "not resolved" (with the reason when there is none)."""
    if ratio.low is None or ratio.high is None:
        return f"not resolved ({ratio.reason or 'no interval'})"
    if ratio.high < 1:
        return "better"
    if ratio.low > 1:
        return "worse"
    return "not resolved"


def verdict(interval: Interval, op: Literal["<=", ">="], bound: float) -> Verdict:
    """``"met"`` if the bound holds at the interval's worst end, ``"missed"`` if it fails at its best end."""
    if op not in ("<=", ">="):
        raise ValueError(f"op must be '<=' or '>=', got {op!r}")
    if interval.low is None or interval.high is None:
        why = interval.reason or "no interval"
        return Verdict("inconclusive", interval, op, bound, f"no interval: {why}")
    worst, best = (interval.high, interval.low) if op == "<=" else (interval.low, interval.high)
    holds = (lambda x: x <= bound) if op == "<=" else (lambda x: x >= bound)
    span = f"95% interval [{interval.low:.4g}, {interval.high:.4g}]"
    if holds(worst):
        return Verdict("met", interval, op, bound, f"{span} lies entirely {op} {bound:g}")
    if not holds(best):
        return Verdict("missed", interval, op, bound, f"{span} lies entirely outside {op} {bound:g}")
    return Verdict("inconclusive", interval, op, bound, f"{span} contains {bound:g}: the measurement cannot tell")
