"""Grid is the exact product; random draws follow each W&B distribution; bayes beats random."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from lit_gen.sweeping.agent import SweepAgent
from lit_gen.sweeping.distributions import quantile
from lit_gen.sweeping.space import parse_sweep
from lit_gen.sweeping.store import RUNNING, TrialRecord
from lit_gen.sweeping.strategies import GridStrategy, RandomStrategy

DRAWS = 3000


def spec_of(parameters, method="random"):
    return parse_sweep({"method": method, "program": "train.py", "metric": {"name": "loss"},
                        "parameters": parameters}, source="test.yaml")


def record(number, grid_index=None, released=False):
    return TrialRecord(number=number, trial_id=f"t{number}", state=RUNNING, params={}, grid_index=grid_index,
                       attrs={"released": released})


# ---------------------------------------------------------------------------------------- grid
def test_grid_is_the_exact_cartesian_product_in_wandb_order():
    spec = spec_of({"opt": {"values": ["adam", "sgd"]},
                    "model": {"parameters": {"beta": {"values": [0.5, 1.0, 2.0]}, "depth": {"value": 3}}},
                    "batch": {"min": 1, "max": 2},
                    "drop": {"distribution": "q_uniform", "min": 0, "max": 6, "q": 2}}, method="grid")
    grid = GridStrategy(spec)
    points = [grid.suggest([record(i, j) for j in range(i)], i) for i in range(grid.size + 1)]
    assert points[-1] is None  # exhausted
    seen = [tuple(p.params[n] for n in ("batch", "drop", "model.beta", "model.depth", "opt")) for p in points[:-1]]
    # W&B: parameters sorted by name, last varying fastest; int_uniform = min..max, q_uniform = arange(min, max, q).
    expected = list(itertools.product([1, 2], [0, 2, 4], [0.5, 1.0, 2.0], [3], ["adam", "sgd"]))
    assert seen == expected
    assert grid.size == 36
    assert [p.grid_index for p in points[:-1]] == list(range(36))
    assert list(points[0].params) == ["opt", "model.beta", "model.depth", "batch", "drop"]  # file order


def test_grid_skips_taken_points_and_reuses_released_ones():
    grid = GridStrategy(spec_of({"a": {"values": [1, 2, 3]}}, method="grid"))
    taken = [record(0, 0), record(1, 1, released=True), record(2, 2)]
    assert grid.suggest(taken, 3).params == {"a": 2}
    assert grid.suggest(taken + [record(3, 1)], 4) is None


# -------------------------------------------------------------------------------------- random
def draws(parameter, n=DRAWS, seed=0):
    strategy = RandomStrategy(spec_of({"x": parameter}), seed=seed)
    return [strategy.suggest([], i).params["x"] for i in range(n)]


@pytest.mark.parametrize("parameter, cdf", [
    ({"min": 2.0, "max": 5.0}, stats.uniform(2, 3).cdf),
    ({"distribution": "log_uniform", "min": -4, "max": 1}, lambda x: stats.uniform(-4, 5).cdf(np.log(x))),
    ({"distribution": "log_uniform_values", "min": 1.0e-4, "max": 0.1},
     lambda x: stats.uniform(np.log(1e-4), np.log(1e3)).cdf(np.log(x))),
    ({"distribution": "inv_log_uniform", "min": 1, "max": 4}, lambda x: 1 - stats.uniform(1, 3).cdf(-np.log(x))),
    ({"distribution": "inv_log_uniform_values", "min": 0.01, "max": 1.0},
     lambda x: stats.uniform(np.log(0.01), -np.log(0.01)).cdf(np.log(x))),
    ({"distribution": "normal", "mu": 1.0, "sigma": 2.0}, stats.norm(1, 2).cdf),
    ({"distribution": "log_normal", "mu": 0.5, "sigma": 0.3}, stats.lognorm(s=0.3, scale=math.exp(0.5)).cdf),
    ({"distribution": "beta", "a": 2.0, "b": 5.0}, stats.beta(2, 5).cdf),
], ids=["uniform", "log_uniform", "log_uniform_values", "inv_log_uniform", "inv_log_uniform_values", "normal",
        "log_normal", "beta"])
def test_continuous_draws_follow_the_distribution(parameter, cdf):
    values = draws(parameter)
    assert all(isinstance(v, float) for v in values)
    assert stats.kstest(values, cdf).pvalue > 1e-3


def chi_square_p(values, probabilities: dict):
    counts = Counter(values)
    assert set(counts) <= set(probabilities), set(counts) - set(probabilities)
    observed = [counts.get(k, 0) for k in probabilities]
    expected = [p * len(values) for p in probabilities.values()]
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.parametrize("parameter, probabilities", [
    ({"min": 1, "max": 6}, {k: 1 / 6 for k in range(1, 7)}),
    ({"values": ["a", "b", "c", "d"]}, {k: 0.25 for k in "abcd"}),
    ({"values": ["a", "b", "c"], "probabilities": [0.1, 0.2, 0.7]}, {"a": 0.1, "b": 0.2, "c": 0.7}),
    # round(U(0, 10) / 2.5) * 2.5: the end points get half the weight of the inner values.
    ({"distribution": "q_uniform", "min": 0.0, "max": 10.0, "q": 2.5},
     {0.0: 0.125, 2.5: 0.25, 5.0: 0.25, 7.5: 0.25, 10.0: 0.125}),
], ids=["int_uniform", "categorical", "probabilities", "q_uniform"])
def test_discrete_draws_follow_the_distribution(parameter, probabilities):
    assert chi_square_p(draws(parameter), probabilities) > 1e-3


def test_quantised_draws_are_multiples_of_q_and_ints_for_an_int_q():
    values = draws({"distribution": "q_log_uniform_values", "min": 16, "max": 256, "q": 16}, n=500)
    assert all(isinstance(v, int) and v % 16 == 0 and 16 <= v <= 256 for v in values)
    values = draws({"distribution": "q_normal", "mu": 0.0, "sigma": 3.0, "q": 0.5}, n=500)
    assert all(isinstance(v, float) and (v / 0.5).is_integer() for v in values)
    assert abs(statistics.mean(values)) < 0.3 and 2.7 < statistics.stdev(values) < 3.3
    values = draws({"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1}, n=200)
    assert all(repr(v) in {repr(k / 10) for k in range(11)} for v in values)  # 0.3, not 0.30000000000000004


def test_random_draws_are_reproducible_per_seed_and_trial_number():
    assert draws({"min": 0.0, "max": 1.0}, n=5, seed=7) == draws({"min": 0.0, "max": 1.0}, n=5, seed=7)
    assert draws({"min": 0.0, "max": 1.0}, n=5, seed=7) != draws({"min": 0.0, "max": 1.0}, n=5, seed=8)
    assert len(set(draws({"min": 0.0, "max": 1.0}, n=50))) == 50


def test_quantile_matches_wandb_at_the_edges():
    spec = spec_of({"i": {"min": 3, "max": 5}, "c": {"values": [1, 2], "probabilities": [0.5, 0.5]},
                    "v": {"distribution": "inv_log_uniform_values", "min": 0.01, "max": 1.0}})
    i, c, v = spec.parameters
    assert [quantile(i, u) for u in (0.0, 0.34, 0.67, 1.0)] == [3, 4, 5, 5]
    assert [quantile(c, u) for u in (0.0, 0.49, 0.5, 1.0)] == [1, 1, 2, 2]
    assert quantile(v, 0.0) == pytest.approx(0.01) and quantile(v, 1.0) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------- bayes
def toy_objective(params):
    """A narrow optimum at lr=10^-2.5, dropout=0.1, width=64."""
    return ((math.log10(params["lr"]) + 2.5) ** 2 + 4 * (params["dropout"] - 0.1) ** 2
            + (0.0 if params["width"] == 64 else 0.3))


def best_after(method, seed, tmp_path, budget=30):
    spec = spec_of({"lr": {"distribution": "log_uniform_values", "min": 1.0e-5, "max": 1.0e-1},
                    "dropout": {"min": 0.0, "max": 0.5}, "width": {"values": [16, 32, 64, 128]}}, method=method)
    agent = SweepAgent(spec, tmp_path / f"{method}-{seed}", seed=seed)
    best = math.inf
    for _ in range(budget):
        trial, _ = agent.next_trial()
        value = toy_objective(trial.params)
        agent.complete(trial, value)
        best = min(best, value)
    return best


def test_bayes_finds_a_better_point_than_random_with_the_same_budget(tmp_path):
    bayes = [best_after("bayes", seed, tmp_path) for seed in range(5)]
    random = [best_after("random", seed, tmp_path) for seed in range(5)]
    assert statistics.median(bayes) < statistics.median(random)
    assert statistics.mean(bayes) < statistics.mean(random)
