"""The post-hoc EMA benchmark's exponential grid: decays from shares of the run, and its extension past an edge."""

import pytest

from bench.post_hoc_ema import EXTENSIONS, GRID, beyond_edge, grid_decay


def test_a_decay_averages_over_its_share_of_the_run():
    decay = grid_decay(0.1, 830)
    assert 1.0 / (1.0 - decay) == pytest.approx(83.0, rel=1e-4)


def test_a_best_inside_the_grid_needs_no_extension():
    assert beyond_edge(list(GRID), 0.25) == []


def test_a_best_on_the_short_edge_extends_below_it_by_halving():
    assert beyond_edge([0.6, 0.1, 0.25], 0.1) == [0.05, 0.025][:EXTENSIONS]


def test_a_best_on_the_long_edge_extends_above_it_but_never_past_the_whole_run():
    assert beyond_edge([0.1, 0.25, 0.4], 0.4) == [0.8, 1.0]
    assert beyond_edge([0.1, 0.25, 0.6], 0.6) == [1.0]
    assert beyond_edge([0.1, 1.0], 1.0) == []
