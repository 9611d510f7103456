"""Hyperband early termination, with W&B's rules (``early_terminate: {type: hyperband, ...}``).

An iteration is one report of the sweep metric (one line of a trial's ``metrics.jsonl``, i.e. one
validation epoch). Bands are iteration counts at which trials are compared:

- ``min_iter`` (and ``eta``, default 3): bands at min_iter, min_iter * eta, min_iter * eta^2, ...
- ``max_iter`` and ``s``: s bands counted back from max_iter: max_iter / eta, max_iter / eta^2, ...
  (W&B takes this form whenever ``max_iter`` is given, even beside ``min_iter``.)

At a band ``b``, the threshold is the value, among all trials that reached ``b`` iterations, at
rank ``floor(n / eta)`` of their b-th values sorted best first: roughly the best 1/eta continue.
A running trial that has reached band ``b`` (its latest band) is stopped when its value at
iteration ``b`` is worse than that threshold (``strict: true``, W&B's default), or with
``strict: false`` when its best value so far is.
Thresholds use every trial of the sweep (running, finished or stopped), so a trial can still be
stopped after its band when later trials raise the bar, as in W&B.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lit_gen.sweeping.space import HyperbandSpec

_MAX_BANDS = 64  # W&B lists 100 bands from min_iter; nothing trains for eta^64 iterations


@dataclass(frozen=True)
class Stop:
    """Why a trial was stopped: at ``band`` its ``value`` was worse than ``threshold``."""

    band: int
    value: float
    threshold: float

    def describe(self, metric: str) -> str:
        return (f"stopped by hyperband after {self.band} iterations: {metric} {self.value:.6g} "
                f"is worse than the band's threshold {self.threshold:.6g}")


class Hyperband:
    """Decides whether a running trial stops, from its metric history and every trial's history.

    Args:
        spec (HyperbandSpec): min_iter or (max_iter, s), eta and strict from the sweep file.
        goal ("minimize" | "maximize", default "minimize"): the sweep metric's goal.
    """

    def __init__(self, spec: HyperbandSpec, goal: str = "minimize") -> None:
        self.spec = spec
        self.sign = -1.0 if goal == "maximize" else 1.0  # compare as a loss: lower is better
        self.bands = bands(spec)
        self.keep = 1.0 / spec.eta

    def thresholds(self, histories: Sequence[Sequence[float]]) -> list[float]:
        """The threshold at each band over the given histories (inf where no trial reached it)."""
        out = []
        for band in self.bands:
            reached = sorted(self.sign * h[band - 1] for h in histories if len(h) >= band)
            out.append(reached[int(self.keep * len(reached))] if reached else math.inf)
        return out

    def decide(self, history: Sequence[float], others: Sequence[Sequence[float]]) -> Stop | None:
        """A ``Stop`` when the trial with ``history`` must stop, given the other trials' histories."""
        history = [v for v in history if math.isfinite(v)]
        if not history or len(history) < self.bands[0]:
            return None
        all_histories = [history] + [[v for v in h if math.isfinite(v)] for h in others]
        band, threshold = None, math.inf
        for b, t in zip(self.bands, self.thresholds(all_histories)):
            if b > len(history):
                break
            band, threshold = b, t
        own = [self.sign * v for v in history]
        value = own[band - 1] if self.spec.strict else min(own)
        if value > threshold:
            return Stop(band=band, value=self.sign * value, threshold=self.sign * threshold)
        return None


def bands(spec: HyperbandSpec) -> list[int]:
    """The band iteration counts of a hyperband spec (W&B's formulas, truncated to integers)."""
    if spec.max_iter is None:
        out, band = [], float(spec.min_iter)
        for _ in range(_MAX_BANDS):
            out.append(int(band))
            band *= spec.eta
        return sorted(set(out))
    out, band = [], float(spec.max_iter)
    for _ in range(spec.s):
        band /= spec.eta
        if band < 1:
            break
        out.append(int(band))
    return sorted(set(out))
