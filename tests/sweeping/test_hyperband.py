"""Hyperband: W&B's bands and thresholds, and weak trial processes really stopped and recorded as pruned."""

from __future__ import annotations

import json

import pytest

from lit_gen.sweeping.agent import SweepAgent
from lit_gen.sweeping.hyperband import Hyperband, bands
from lit_gen.sweeping.space import HyperbandSpec, load_sweep
from lit_gen.sweeping.store import COMPLETE, PRUNED
from tests.sweeping.fake_program import write_sweep


@pytest.mark.parametrize("spec, expected", [
    (HyperbandSpec(min_iter=3, eta=3), [3, 9, 27, 81]),
    (HyperbandSpec(min_iter=2, eta=1.5), [2, 3, 4, 6, 10]),  # W&B truncates each band to an int
    (HyperbandSpec(max_iter=27, s=2, eta=3), [3, 9]),
    (HyperbandSpec(max_iter=81, s=10, eta=3), [1, 3, 9, 27]),  # stops below one iteration
])
def test_bands_follow_wandb(spec, expected):
    assert bands(spec)[: len(expected)] == expected


def test_a_trial_is_judged_only_once_it_reaches_a_band():
    hb = Hyperband(HyperbandSpec(min_iter=2, eta=3))
    assert hb.decide([9.0], [[1.0, 1.0]]) is None


def test_worse_than_the_best_third_stops_at_the_band():
    hb = Hyperband(HyperbandSpec(min_iter=2, eta=3))
    others = [[1.0, 0.5], [2.0, 1.5]]
    # Values at iteration 2: [0.5, 1.5, 2.5]; the threshold is the value of rank floor(3 / 3) = 1.
    stop = hb.decide([3.0, 2.5], others)
    assert (stop.band, stop.value, stop.threshold) == (2, 2.5, 1.5)
    assert "after 2 iterations" in stop.describe("val/loss")
    assert hb.decide([2.0, 1.4], others) is None


def test_strict_compares_the_value_at_the_band_not_the_best_so_far():
    others = [[2.0, 2.0], [3.0, 3.0]]
    history = [1.0, 5.0]  # good early, bad at the band: threshold is 3.0
    assert Hyperband(HyperbandSpec(min_iter=2, eta=3, strict=False)).decide(history, others) is None
    assert Hyperband(HyperbandSpec(min_iter=2, eta=3, strict=True)).decide(history, others).band == 2


def test_maximize_keeps_the_highest():
    hb = Hyperband(HyperbandSpec(min_iter=1, eta=2), goal="maximize")
    assert hb.decide([0.2], [[0.9], [0.8]]) is not None
    assert hb.decide([0.95], [[0.9], [0.8]]) is None


def test_later_trials_can_raise_the_bar_for_a_running_one():
    hb = Hyperband(HyperbandSpec(min_iter=1, eta=3))
    running = [1.0, 0.9, 0.8]
    assert hb.decide(running, [[1.2, 1.1, 1.0]]) is None
    assert hb.decide(running, [[1.2, 1.1, 1.0], [0.3, 0.2, 0.1], [0.4, 0.3, 0.2]]).band == 3


def test_non_finite_values_are_ignored():
    hb = Hyperband(HyperbandSpec(min_iter=1, eta=3))
    assert hb.decide([float("nan")], [[1.0]]) is None


def test_weak_trials_are_killed_and_recorded_as_pruned(tmp_path):
    sweep = write_sweep(tmp_path, "  quality:\n    values: [0.0, 1.0, 2.0, 3.0]\n"
                                  "  epochs:\n    value: 12\n  sleep:\n    value: 0.08\n",
                        extra="early_terminate:\n  type: hyperband\n  min_iter: 2\n  eta: 3\n")
    agent = SweepAgent(load_sweep(sweep), tmp_path / "store", poll_interval=0.02, kill_grace=5)
    result = agent.run()
    assert result.reason.startswith("the grid is complete")
    trials = agent.store.trials()
    assert [t.state for t in trials] == [COMPLETE, PRUNED, PRUNED, PRUNED]
    assert trials[0].value == pytest.approx(1 / 12) and len(trials[0].history) == 12
    for t in trials[1:]:
        written = (tmp_path / "store" / "runs" / "fake" / t.trial_id / "metrics.jsonl").read_text().splitlines()
        assert 2 <= len(written) <= 4, "the process went on after hyperband stopped it"
        assert not (tmp_path / "store" / "runs" / "fake" / t.trial_id / "summary.json").exists()
        assert t.history == [json.loads(line)["val/loss"] for line in written][: len(t.history)]
        assert "stopped by hyperband after 2 iterations" in t.attrs["reason"]
