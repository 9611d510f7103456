"""How the next trial's parameters are chosen: grid, random or bayes, as W&B's methods.

A strategy is a pure function of the trials so far and the new trial's number, so any agent of a
sweep computes the same suggestion from the same store:

- ``GridStrategy``: the Cartesian product of each parameter's grid values, in W&B's order
  (parameters sorted by name, the last one varying fastest); the first point no live trial holds.
- ``RandomStrategy``: independent draws from each parameter's W&B distribution, from a numpy
  Generator seeded with (seed, trial number).
- ``BayesStrategy``: Optuna's TPE over each parameter's quantile coordinate ``u`` (see
  ``distributions``), so TPE's prior is exactly the W&B distribution; plain categorical parameters
  are TPE categoricals, int_uniform ones TPE integers. Running trials count as bad guesses
  ("constant liar"), so concurrent agents spread out instead of proposing the same point.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lit_gen.errors import SweepError
from lit_gen.sweeping.distributions import grid_values, quantile
from lit_gen.sweeping.parameters import Parameter
from lit_gen.sweeping.space import SweepSpec
from lit_gen.sweeping.store import COMPLETE, PRUNED, RUNNING, TrialRecord


@dataclass(frozen=True)
class Suggestion:
    """The parameters of a new trial (flat ``{name: value}``), the search coordinates they came
    from (for bayes), and the grid point index (for grid)."""

    params: dict[str, Any]
    coords: dict[str, Any]
    grid_index: int | None = None


def _search_order(spec: SweepSpec) -> list[Parameter]:
    # W&B sorts parameters by name at every nesting level; so do we, so grids enumerate alike.
    return sorted(spec.parameters, key=lambda p: p.path)


def _ordered(spec: SweepSpec, values: dict[str, Any]) -> dict[str, Any]:
    return {p.name: values[p.name] for p in spec.parameters}


class GridStrategy:
    """Every combination of the parameters' values, each claimed once across all agents."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.order = _search_order(spec)
        self.axes = [grid_values(p) for p in self.order]
        for param, axis in zip(self.order, self.axes):
            if not axis:
                raise SweepError(f"{spec.source}: parameters.{param.name}: gives no grid values "
                                 f"(min {param.min}, max {param.max}, q {param.q})")
        self.size = math.prod(len(axis) for axis in self.axes)

    def point(self, index: int) -> dict[str, Any]:
        """The parameters of grid point ``index`` (mixed radix, last parameter fastest)."""
        values = {}
        for param, axis in zip(reversed(self.order), reversed(self.axes)):
            index, digit = divmod(index, len(axis))
            values[param.name] = axis[digit]
        return _ordered(self.spec, values)

    def suggest(self, trials: Sequence[TrialRecord], number: int) -> Suggestion | None:
        """The first grid point that no trial holds (released trials give theirs back); None when all are taken."""
        taken = {t.grid_index for t in trials if t.grid_index is not None and not t.released}
        for index in range(self.size):
            if index not in taken:
                return Suggestion(self.point(index), {}, index)
        return None


class RandomStrategy:
    """Independent draws from each parameter's distribution, seeded by (seed, trial number)."""

    def __init__(self, spec: SweepSpec, seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed

    def suggest(self, trials: Sequence[TrialRecord], number: int) -> Suggestion:
        rng = np.random.default_rng([self.seed, number])
        values, coords = {}, {}
        for param in _search_order(self.spec):
            u = float(rng.random())
            coords[param.name] = u
            values[param.name] = quantile(param, u)
        return Suggestion(_ordered(self.spec, values), coords)


class BayesStrategy:
    """Tree-structured Parzen estimator (Optuna's TPESampler) over the sweep's search coordinates.

    Args:
        spec (SweepSpec): the sweep; its metric goal sets the direction.
        seed (int, default 0): with the trial number, seeds TPE, so suggestions are reproducible
            from the same history.
        n_startup_trials (int, default 10): trials drawn from the prior before TPE models the results.
    """

    def __init__(self, spec: SweepSpec, seed: int = 0, n_startup_trials: int = 10) -> None:
        import optuna

        self.spec = spec
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self.order = [p for p in _search_order(spec) if p.distribution != "constant"]
        self.distributions = {p.name: self._distribution(p, optuna.distributions) for p in self.order}

    @staticmethod
    def _distribution(param: Parameter, dists):
        if param.distribution == "categorical":
            return dists.CategoricalDistribution(list(range(len(param.values))))
        if param.distribution == "int_uniform":
            return dists.IntDistribution(param.min, param.max)
        return dists.FloatDistribution(0.0, 1.0)

    def _value(self, param: Parameter, coord) -> Any:
        if param.distribution == "categorical":
            return param.values[int(coord)]
        if param.distribution == "int_uniform":
            return int(coord)
        return quantile(param, float(coord))

    def _mirror(self, trials: Sequence[TrialRecord], sampler):
        """An in-memory Optuna study holding the store's trials as TPE sees them."""
        import optuna
        from optuna.trial import TrialState, create_trial

        direction = "maximize" if self.spec.metric.goal == "maximize" else "minimize"
        study = optuna.create_study(direction=direction, sampler=sampler)
        for t in trials:
            coords = {name: t.coords.get(name) for name in self.distributions}
            if any(c is None for c in coords.values()):
                continue  # a trial from an older sweep file without these coordinates
            if t.state == COMPLETE and t.value is not None and math.isfinite(t.value):
                state, value = TrialState.COMPLETE, t.value
            elif t.state == PRUNED and t.history:
                state, value = TrialState.PRUNED, None
            elif t.state == RUNNING:
                state, value = TrialState.RUNNING, None
            else:
                continue  # failed trials teach TPE nothing about the metric
            study.add_trial(create_trial(
                state=state, value=value, params=coords, distributions=self.distributions,
                intermediate_values=dict(enumerate(t.history)) if state == TrialState.PRUNED else None))
        return study

    def suggest(self, trials: Sequence[TrialRecord], number: int) -> Suggestion:
        import optuna

        seed = int(np.random.SeedSequence([self.seed, number]).generate_state(1)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                                 n_startup_trials=self.n_startup_trials)
            study = self._mirror(trials, sampler)
            trial = study.ask(self.distributions)
        coords = {name: trial.params[name] for name in self.distributions}
        values = {p.name: self._value(p, coords[p.name]) for p in self.order}
        values.update({p.name: p.value for p in self.spec.parameters if p.distribution == "constant"})
        return Suggestion(_ordered(self.spec, values), coords)


def make_strategy(spec: SweepSpec, seed: int = 0):
    """The strategy for the sweep's ``method``."""
    if spec.method == "grid":
        return GridStrategy(spec)
    if spec.method == "random":
        return RandomStrategy(spec, seed)
    return BayesStrategy(spec, seed)
