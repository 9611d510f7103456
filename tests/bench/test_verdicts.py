"""The verdict rule of bench/stats.py on synthetic numbers: met, missed, inconclusive, and too few values."""

import math

import pytest

from bench.common import Target
from bench.stats import paired_log_ratio, paired_median_ratio, ratio_of_means, verdict


def test_clear_win_is_met():
    # lit_gen's FID about a third of the peer's, little spread: the whole interval is below 0.5.
    interval = ratio_of_means([10.0, 11.0, 10.5], [30.0, 31.0, 29.5])
    v = verdict(interval, "<=", 0.5)
    assert v.outcome == "met"
    assert interval.low < interval.estimate < interval.high < 0.5


def test_clear_loss_is_missed():
    interval = ratio_of_means([20.0, 21.0, 20.5], [30.0, 31.0, 29.5])
    v = verdict(interval, "<=", 0.5)
    assert v.outcome == "missed"
    assert interval.low > 0.5


def test_mean_meets_bound_but_spread_is_wide_is_inconclusive():
    # The point estimate is 0.4 (below 0.5), yet the seeds spread so much that the upper end passes 0.5:
    # the old point rule called this "met".
    interval = ratio_of_means([4.0, 12.0, 8.0], [20.0, 18.0, 22.0])
    assert interval.estimate == pytest.approx(0.4)
    v = verdict(interval, "<=", 0.5)
    assert v.outcome == "inconclusive"
    assert interval.low < 0.5 < interval.high
    assert "cannot tell" in v.reason


def test_interval_uses_t_quantile_for_few_seeds():
    # Same means and sd: with 3 seeds the interval must be much wider than with 30 (t(2) = 4.30 vs ~2.0).
    few = ratio_of_means([9.0, 10.0, 11.0], [20.0] * 3)
    many = ratio_of_means([9.0, 10.0, 11.0] * 10, [20.0] * 30)
    assert math.log(few.high / few.low) > 3 * math.log(many.high / many.low)


def test_ge_target_uses_lower_end_as_worst():
    interval = ratio_of_means([30.0, 31.0, 29.0], [10.0, 10.5, 9.5])
    assert verdict(interval, ">=", 2.0).outcome == "met"
    assert verdict(interval, ">=", 4.0).outcome == "missed"
    assert verdict(interval, ">=", 3.0).outcome == "inconclusive"


@pytest.mark.parametrize("a,b", [([10.0, 11.0], [30.0, 31.0, 29.0]), ([10.0], [30.0])])
def test_fewer_than_three_seeds_is_inconclusive_with_reason(a, b):
    interval = ratio_of_means(a, b)
    assert interval.low is None and interval.high is None
    assert interval.estimate == pytest.approx(sum(a) / len(a) / (sum(b) / len(b)))
    v = verdict(interval, "<=", 0.5)
    assert v.outcome == "inconclusive"
    assert "at least 3" in v.reason


def test_non_positive_values_give_no_ratio_interval():
    v = verdict(ratio_of_means([0.0, 1.0, 2.0], [3.0, 3.0, 3.0]), "<=", 0.5)
    assert v.outcome == "inconclusive" and "positive" in v.reason


def test_paired_median_ratio_three_outcomes():
    base = [100.0 + 3 * i for i in range(12)]
    fast = [x * r for x, r in zip(base, [0.95, 0.97, 0.96, 0.98, 0.94, 0.96, 0.97, 0.95, 0.96, 0.98, 0.95, 0.97])]
    slow = [x * r for x, r in zip(base, [1.10, 1.12, 1.09, 1.11, 1.13, 1.10, 1.12, 1.11, 1.10, 1.09, 1.12, 1.11])]
    # Ratios spread around 1.05 (0.90 .. 1.20): the median is near the bound and the interval straddles it.
    noisy = [x * r for x, r in zip(base, [0.90, 1.20, 1.00, 1.10, 0.95, 1.15, 1.02, 1.08, 0.92, 1.18, 1.04, 1.06])]
    assert verdict(paired_median_ratio(fast, base), "<=", 1.05).outcome == "met"
    assert verdict(paired_median_ratio(slow, base), "<=", 1.05).outcome == "missed"
    assert verdict(paired_median_ratio(noisy, base), "<=", 1.05).outcome == "inconclusive"


def test_three_repeats_cannot_resolve_overhead():
    # The old record: three repeats (0.885, 0.879, 1.120) were reported "met" from the median alone.
    interval = paired_median_ratio([0.885, 0.879, 1.120], [1.0, 1.0, 1.0])
    v = verdict(interval, "<=", 1.05)
    assert v.outcome == "inconclusive" and "at least 10" in v.reason


def test_bootstrap_is_deterministic():
    a = [1.0 + 0.01 * (i % 5) for i in range(15)]
    b = [1.0] * 15
    assert paired_median_ratio(a, b) == paired_median_ratio(a, b)


def test_paired_lengths_must_match():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_median_ratio([1.0] * 10, [1.0] * 9)


def test_target_record_carries_the_verdict():
    inconclusive = Target("FID ratio", 0.4, "<=", 0.5, interval=ratio_of_means([4.0, 12.0, 8.0], [20.0, 18.0, 22.0]))
    d = inconclusive.to_dict()
    assert d["met"] is None and d["verdict"] == "inconclusive"
    assert d["interval"]["low"] < 0.5 < d["interval"]["high"]
    met = Target("FID ratio", 0.34, "<=", 0.5, interval=ratio_of_means([10.0, 11.0, 10.5], [30.0, 31.0, 29.5])).to_dict()
    assert met["met"] is True and met["verdict"] == "met"
    point = Target("peak", 1.0, "<=", 2.0).to_dict()
    assert point["verdict"] == "point estimate"


def test_absolute_targets_over_repeated_measurements():
    from bench.stats import difference_of_means, mean_interval

    # Peak memory of three runs, bound 2 GiB: clearly under, clearly over, straddling.
    assert verdict(mean_interval([1.00, 1.02, 0.99]), "<=", 2.0).outcome == "met"
    assert verdict(mean_interval([2.50, 2.52, 2.49]), "<=", 2.0).outcome == "missed"
    assert verdict(mean_interval([1.5, 2.5, 2.0]), "<=", 2.0).outcome == "inconclusive"
    assert verdict(mean_interval([1.0, 1.0]), "<=", 2.0).outcome == "inconclusive"
    # Growth of a peak between two counts (3 runs each), bound 50 MiB.
    growth = difference_of_means([1019.0, 1030.0, 1010.0], [1032.0, 1025.0, 1040.0])
    assert growth.estimate == pytest.approx(-12.666, abs=1e-2)
    assert verdict(growth, "<=", 50.0).outcome == "met"
    assert verdict(difference_of_means([1200.0, 1210.0, 1190.0], [1000.0, 1005.0, 995.0]), "<=", 50.0).outcome == "missed"


def test_paired_log_ratio_is_the_geometric_mean_with_a_t_interval_on_the_logs():
    # Ratios 1.0, 1.1, 1.2 on three checkpoints: mean log ratio and its t interval (2 degrees of freedom).
    a, b = [10.0, 22.0, 36.0], [10.0, 20.0, 30.0]
    logs = [math.log(1.0), math.log(1.1), math.log(1.2)]
    centre = sum(logs) / 3
    sd = math.sqrt(sum((x - centre) ** 2 for x in logs) / 2)
    interval = paired_log_ratio(a, b)
    assert interval.estimate == pytest.approx(math.exp(centre))
    assert interval.high == pytest.approx(math.exp(centre + 4.302653 * sd / math.sqrt(3)), rel=1e-5)
    assert verdict(interval, "<=", 1.1).outcome == "inconclusive"
    # The checkpoints' own quality (10, 20, 30) cancels: steady ratios resolve a 10% bound.
    steady = paired_log_ratio([10.2, 20.4, 30.3], [10.0, 20.0, 30.0])
    assert verdict(steady, "<=", 1.1).outcome == "met"
    assert verdict(paired_log_ratio([13.0, 26.5, 39.0], [10.0, 20.0, 30.0]), "<=", 1.1).outcome == "missed"
    assert paired_log_ratio([1.0, 2.0], [1.0, 2.0]).low is None  # two pairs: no interval


def test_an_ablation_is_better_or_worse_only_when_its_whole_interval_says_so():
    from bench.stats import lower_is_better_effect

    assert lower_is_better_effect(paired_log_ratio([2.0, 2.1, 1.9], [4.0, 4.1, 4.0])) == "better"
    assert lower_is_better_effect(paired_log_ratio([4.0, 4.1, 4.0], [2.0, 2.1, 1.9])) == "worse"
    assert lower_is_better_effect(paired_log_ratio([2.0, 4.0, 3.0], [3.0, 3.0, 3.1])) == "not resolved"
    assert lower_is_better_effect(paired_log_ratio([2.0, 2.1], [4.0, 4.1])).startswith("not resolved (need at least 3")
