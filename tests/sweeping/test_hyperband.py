"""Hyperband: W&B's bands and thresholds, and weak trial processes really stopped and recorded as pruned."""

from __future__ import annotations

import json

import pytest

from lit_gen.errors import SweepError
from lit_gen.sweeping.agent import SweepAgent
from lit_gen.sweeping.hyperband import Hyperband, bands
from lit_gen.sweeping.space import HyperbandSpec, load_sweep, parse_sweep
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


# W&B's rule (sweeps' hyperband_stop_runs, with its schema defaults eta: 3 and strict: true):
#   bands: min_iter * eta^k, or, whenever max_iter is given, int(max_iter / eta^k) for k = 1..s (>= 1);
#   threshold at band b: sort the b-th values of every trial with >= b values (maximize: negated),
#   take index int(n / eta);
#   a running trial is judged at its latest band b <= len(history) only: it stops when
#   (strict) its b-th value, or (not strict) its best value so far, is worse than the threshold.
# Each verdict below is worked out by hand from that rule, never by the code under test.
# Columns: early_terminate as written in the file, goal, the running trial's history, the other
# trials' histories, then None (continues) or (band, value, threshold) in the metric's own sign.
VERDICTS = [
    # bands 2, 6, ...; at 2: [5, 2, 3] -> [2, 3, 5][int(3/3) = 1] = 3; strict (the default): 5 > 3
    ({"min_iter": 2, "eta": 3}, "minimize", [1.0, 5.0], [[2.0, 2.0], [3.0, 3.0]], (2, 5.0, 3.0)),
    # same, not strict: best so far 1 <= 3
    ({"min_iter": 2, "eta": 3, "strict": False}, "minimize", [1.0, 5.0], [[2.0, 2.0], [3.0, 3.0]], None),
    # bands 8/2 = 4, 4/2 = 2 -> [2, 4]; 3 values -> band 2; at 2: [6, 3, 2, 5] -> [2, 3, 5, 6][2] = 5; 6 > 5
    ({"max_iter": 8, "s": 2, "eta": 2}, "minimize", [3.0, 6.0, 1.0],
     [[4.0, 3.0, 2.0, 1.0], [4.0, 2.0, 2.0, 2.0], [5.0, 5.0]], (2, 6.0, 5.0)),
    # same, not strict: best so far 1 <= 5
    ({"max_iter": 8, "s": 2, "eta": 2, "strict": False}, "minimize", [3.0, 6.0, 1.0],
     [[4.0, 3.0, 2.0, 1.0], [4.0, 2.0, 2.0, 2.0], [5.0, 5.0]], None),
    # 4 values -> band 4; at 4: [4, 1, 2] ([5, 5] is too short) -> [1, 2, 4][int(3/2) = 1] = 2; 4 > 2
    ({"max_iter": 8, "s": 2, "eta": 2, "strict": True}, "minimize", [3.0, 2.0, 2.0, 4.0],
     [[4.0, 3.0, 2.0, 1.0], [4.0, 2.0, 2.0, 2.0], [5.0, 5.0]], (4, 4.0, 2.0)),
    # same, not strict: best so far 2 is not worse than 2 (equal continues)
    ({"max_iter": 8, "s": 2, "eta": 2, "strict": False}, "minimize", [3.0, 2.0, 2.0, 4.0],
     [[4.0, 3.0, 2.0, 1.0], [4.0, 2.0, 2.0, 2.0], [5.0, 5.0]], None),
    # s = 2: bands 27/3 = 9, 9/3 = 3 -> [3, 9]; at 3: [5, 1, 2] -> [1, 2, 5][1] = 2; 5 > 2
    ({"max_iter": 27, "s": 2, "eta": 3}, "minimize", [5.0] * 4, [[1.0] * 4, [2.0] * 4], (3, 5.0, 2.0)),
    # s = 1: only band 9, not reached after 4 values
    ({"max_iter": 27, "s": 1, "eta": 3}, "minimize", [5.0] * 4, [[1.0] * 4, [2.0] * 4], None),
    # maximize, bands 1, 2, 4; 3 values -> band 2; negated at 2: [-0.3, -0.8, -0.7] ([0.4] too short)
    # -> [-0.8, -0.7, -0.3][int(3/2) = 1] = -0.7; strict: -0.3 > -0.7, i.e. 0.3 is below 0.7
    ({"min_iter": 1, "eta": 2}, "maximize", [0.9, 0.3, 0.5], [[0.5, 0.8], [0.6, 0.7], [0.4]], (2, 0.3, 0.7)),
    # same, not strict: best so far 0.9 (-0.9 <= -0.7)
    ({"min_iter": 1, "eta": 2, "strict": False}, "maximize", [0.9, 0.3, 0.5], [[0.5, 0.8], [0.6, 0.7], [0.4]],
     None),
    # maximize, not strict: threshold -0.7 as above from [-0.3, -0.8, -0.7]; best so far 0.3 (-0.3 > -0.7)
    ({"min_iter": 1, "eta": 2, "strict": False}, "maximize", [0.2, 0.3], [[0.5, 0.8], [0.6, 0.7]], (2, 0.3, 0.7)),
    # eta 1.5: bands int(2), int(3), int(4.5), int(6.75), ... = 2, 3, 4, 6; 5 values -> band 4;
    # at 4: [9, 1, 2, 3] -> [1, 2, 3, 9][int(4 / 1.5) = 2] = 3; strict: 9 > 3
    ({"min_iter": 2, "eta": 1.5}, "minimize", [0.5, 9.0, 9.0, 9.0, 9.0], [[1.0] * 5, [2.0] * 5, [3.0] * 4],
     (4, 9.0, 3.0)),
    # same, not strict: best so far 0.5 <= 3
    ({"min_iter": 2, "eta": 1.5, "strict": False}, "minimize", [0.5, 9.0, 9.0, 9.0, 9.0],
     [[1.0] * 5, [2.0] * 5, [3.0] * 4], None),
    # only the latest band counts: bands 1, 3; at 3: [1, 1, 2] -> [1, 1, 2][1] = 1; 1 is not worse than 1
    # (at band 1 the 5 would have lost to [1, 2, 5][1] = 2, but that band is behind it)
    ({"min_iter": 1, "eta": 3}, "minimize", [5.0, 1.0, 1.0], [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], None),
    # max_iter beside min_iter: W&B takes bands [2, 4] from max_iter, so 1 value reaches no band
    ({"min_iter": 1, "max_iter": 8, "s": 2, "eta": 2}, "minimize", [5.0], [[1.0], [2.0]], None),
    # before the first band (3) nothing is judged
    ({"min_iter": 3}, "minimize", [9.0, 9.0], [[1.0, 1.0, 1.0]], None),
    # two trials at band 1: [2, 1] -> [1, 2][int(2/3) = 0] = 1; 2 > 1
    ({"min_iter": 1}, "minimize", [2.0], [[1.0]], (1, 2.0, 1.0)),
    # alone at band 1: [7][0] = 7; 7 is not worse than itself
    ({"min_iter": 1}, "minimize", [7.0], [], None),
]


@pytest.mark.parametrize("early, goal, history, others, verdict", VERDICTS)
def test_stop_decisions_match_wandbs_rule_worked_by_hand(early, goal, history, others, verdict):
    spec = parse_sweep({"method": "random", "program": "train.py", "metric": {"name": "val/loss", "goal": goal},
                        "parameters": {"x": {"value": 1}}, "early_terminate": {"type": "hyperband", **early}})
    stop = Hyperband(spec.early_terminate, spec.metric.goal).decide(history, others)
    if verdict is None:
        assert stop is None, stop
    else:
        assert stop is not None
        assert (stop.band, stop.value, stop.threshold) == pytest.approx(verdict)


def test_max_iter_needs_s_even_beside_min_iter():
    with pytest.raises(SweepError, match="max_iter needs s"):
        parse_sweep({"method": "random", "program": "t.py", "metric": {"name": "val/loss"}, "parameters": {"x": {"value": 1}},
                     "early_terminate": {"type": "hyperband", "min_iter": 1, "max_iter": 9}})


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
