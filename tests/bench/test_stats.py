"""bench/stats.py against closed forms and independent references: every field of every interval.

Each interval is compared whole (estimate, ends, method, counts, reason), so a change to any of them
fails here. The references: Welch's interval from ``scipy.stats.ttest_ind``, the mean's from
``scipy.stats.t.interval``, the delta-method ratio written out by hand with tabled t quantiles, and
the exact bootstrap distribution of a median (a binomial tail) for the percentile bootstrap.
"""

import math
import random
import statistics

import pytest
from scipy import stats as scipy_stats

from bench.stats import (Interval, Verdict, difference_of_means, lower_is_better_effect, mean_interval, mean_sd,
                         paired_log_ratio, paired_median_ratio, ratio_of_means, verdict)

#: Two-sided 95% t quantiles, from a table.
T_2, T_3, T_4 = 4.302652729749462, 3.1824463052837078, 2.7764451051977934

RATIO = "welch-t on log ratio of means, 95%"
DIFFERENCE = "welch-t on the difference of means, 95%"
MEAN = "t-interval of the mean, 95%"
PAIRED_LOG = "paired t on log ratios (geometric mean), 95%"
MEDIAN = "median of paired ratios, percentile bootstrap (10000 resamples, seed 0), 95%"


def assert_interval(got: Interval, estimate, low, high, method: str, n: tuple, reason: str = "") -> None:
    assert isinstance(got, Interval)
    for name, value, want in (("estimate", got.estimate, estimate), ("low", got.low, low), ("high", got.high, high)):
        if want is None:
            assert value is None, f"{name}: expected None, got {value}"
        else:
            assert value == pytest.approx(want, rel=1e-9, abs=1e-12), name
    assert (got.method, got.n, got.reason) == (method, n, reason)


# ----------------------------------------------------------------------------------- mean and sd
def test_mean_sd_is_the_mean_and_the_sample_standard_deviation():
    assert mean_sd([5.0]) == (5.0, 0.0)
    mean, sd = mean_sd([1, 3])
    assert mean == 2.0 and sd == pytest.approx(math.sqrt(2.0))
    assert mean_sd([1.0, 2.0, 6.0]) == pytest.approx((3.0, math.sqrt(7.0)))


# ----------------------------------------------------------------------------------- ratio of means
def test_ratio_of_means_is_the_delta_method_welch_interval_on_the_log():
    # Unequal counts and unequal relative spreads, values below 1: swapping the arms' counts, their
    # variances or a power in the delta method moves the ends.
    a, b = [0.2, 0.4, 0.9], [0.5, 0.6, 0.8, 0.9]
    ma, mb = 0.5, 0.7
    va = statistics.variance(a) / (3 * ma**2)  # 0.13 / 0.75
    vb = statistics.variance(b) / (4 * mb**2)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    assert df == pytest.approx(2.3963388877574796)
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert_interval(ratio_of_means(a, b), ma / mb, ma / mb * math.exp(-half), ma / mb * math.exp(half), RATIO, (3, 4))
    assert_interval(ratio_of_means(a, b), 0.7142857142857142, 0.14293503897237905, 3.5694822298348097, RATIO, (3, 4))


def test_ratio_of_means_with_one_flat_arm_takes_its_degrees_of_freedom_from_the_other():
    a, b = [0.3, 0.3, 0.3], [0.5, 0.6, 0.8, 0.9]
    vb = statistics.variance(b) / (4 * 0.7**2)
    half = T_3 * math.sqrt(vb)  # df = vb^2 / (vb^2 / 3) = 3
    assert_interval(ratio_of_means(a, b), 0.3 / 0.7, 0.3 / 0.7 * math.exp(-half), 0.3 / 0.7 * math.exp(half), RATIO, (3, 4))
    assert_interval(ratio_of_means(b, a), 0.7 / 0.3, 0.7 / 0.3 * math.exp(-half), 0.7 / 0.3 * math.exp(half), RATIO, (4, 3))


def test_ratio_of_means_of_two_flat_arms_is_a_point():
    assert_interval(ratio_of_means([2.0] * 3, [4.0] * 3), 0.5, 0.5, 0.5, RATIO, (3, 3))


@pytest.mark.parametrize("a,b,estimate,reason", [
    ([], [1.0, 2.0, 3.0], None, "no values"),
    ([1.0, 2.0, 3.0], [], None, "no values"),
    ([0.5, 0.0, 1.0], [1.0, 2.0, 3.0], None, "a ratio interval needs positive values"),
    ([1.0, 2.0, 3.0], [2.0, -1.0, 2.0], None, "a ratio interval needs positive values"),
    ([0.25, 0.5], [0.5, 0.5, 0.5], 0.75, "need at least 3 values per arm, got 2 and 3"),
    ([0.5, 0.5, 0.5, 0.5], [0.25], 2.0, "need at least 3 values per arm, got 4 and 1"),
])
def test_ratio_of_means_without_an_interval_says_why(a, b, estimate, reason):
    assert_interval(ratio_of_means(a, b), estimate, None, None, RATIO, (len(a), len(b)), reason)


def test_ratio_of_means_accepts_positive_values_below_one():
    interval = ratio_of_means([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    assert interval.low is not None and interval.low < 0.4 < interval.high


# ----------------------------------------------------------------------------------- difference of means
@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy, on the flat side
@pytest.mark.parametrize("a,b", [
    ([-1.0, 2.0, 5.5], [0.5, 0.75, 1.5, 3.0]),  # unequal counts and spreads
    ([1.0, 2.0, 3.0], [11.0, 12.0, 13.0]),  # equal variances: va - vb = 0 is no degenerate case
    ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0]),  # one flat side: its term drops out of the degrees of freedom
    ([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0]),
])
def test_difference_of_means_is_welchs_interval(a, b):
    reference = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    centre = statistics.fmean(a) - statistics.fmean(b)
    assert_interval(difference_of_means(a, b), centre, reference.low, reference.high, DIFFERENCE, (len(a), len(b)))


def test_difference_of_means_hand_worked():
    # [1, 2, 3] - [11, 12, 13]: -10, each variance 1/3, df = (2/3)^2 / (2 (1/3)^2 / 2) = 4.
    half = T_4 * math.sqrt(2 / 3)
    assert_interval(difference_of_means([1, 2, 3], [11, 12, 13]), -10.0, -10.0 - half, -10.0 + half, DIFFERENCE, (3, 3))
    half = T_3 * math.sqrt(statistics.variance([1, 2, 3, 4]) / 4)
    assert_interval(difference_of_means([2, 2, 2], [1, 2, 3, 4]), -0.5, -0.5 - half, -0.5 + half, DIFFERENCE, (3, 4))


def test_difference_of_means_of_two_flat_sides_is_a_point():
    assert_interval(difference_of_means([5.0] * 3, [2.0] * 4), 3.0, 3.0, 3.0, DIFFERENCE, (3, 4))


@pytest.mark.parametrize("a,b,estimate,reason", [
    ([], [1.0, 2.0, 3.0], None, "no values"),
    ([1.0, 2.0], [], None, "no values"),
    ([4.0], [1.0, 2.0, 3.0], 2.0, "need at least 3 values per side, got 1 and 3"),
    ([1.0, 2.0, 3.0, 4.0], [-1.0, 0.0], 3.0, "need at least 3 values per side, got 4 and 2"),
])
def test_difference_of_means_without_an_interval_says_why(a, b, estimate, reason):
    assert_interval(difference_of_means(a, b), estimate, None, None, DIFFERENCE, (len(a), len(b)), reason)


# ----------------------------------------------------------------------------------- mean interval
def test_mean_interval_is_the_t_interval():
    values = [1.0, 2.0, 3.0, 6.0]
    reference = scipy_stats.t.interval(0.95, 3, loc=3.0, scale=statistics.stdev(values) / 2)
    assert_interval(mean_interval(values), 3.0, *reference, MEAN, (4,))
    half = T_2 * 1.0 / math.sqrt(3)
    assert_interval(mean_interval([4.0, 5.0, 6.0]), 5.0, 5.0 - half, 5.0 + half, MEAN, (3,))


@pytest.mark.parametrize("values,estimate,reason", [
    ([], None, "no values"),
    ([2.5], 2.5, "need at least 3 values, got 1"),
    ([1.0, 2.0], 1.5, "need at least 3 values, got 2"),
])
def test_mean_interval_without_an_interval_says_why(values, estimate, reason):
    assert_interval(mean_interval(values), estimate, None, None, MEAN, (len(values),), reason)


# ----------------------------------------------------------------------------------- paired log ratio
def test_paired_log_ratio_skips_pairs_with_a_non_positive_value():
    # The last three pairs hold a zero or a negative value and are left out; values below 1 are kept.
    a, b = [0.5, 0.25, 0.8, 0.0, 1.0, -2.0], [1.0, 0.5, 0.4, 2.0, 0.0, -1.0]
    logs = [math.log(0.5), math.log(0.5), math.log(2.0)]
    centre, half = statistics.fmean(logs), T_2 * statistics.stdev(logs) / math.sqrt(3)
    assert_interval(paired_log_ratio(a, b), math.exp(centre), math.exp(centre - half), math.exp(centre + half),
                    PAIRED_LOG, (3,))
    assert_interval(paired_log_ratio(a, b), 0.7937005259840998, 0.10868550969410977, 5.796177675574516, PAIRED_LOG, (3,))


@pytest.mark.parametrize("a,b,estimate,reason", [
    ([0.0, 1.0], [1.0, 0.0], None, "no values"),
    ([0.5, 2.0], [1.0, 1.0], 1.0, "need at least 3 pairs, got 2"),
])
def test_paired_log_ratio_without_an_interval_says_why(a, b, estimate, reason):
    got = paired_log_ratio(a, b)
    assert_interval(got, estimate, None, None, PAIRED_LOG, (0 if estimate is None else 2,), reason)


@pytest.mark.parametrize("function", [paired_log_ratio, paired_median_ratio])
def test_paired_intervals_refuse_unequal_lengths_naming_both(function):
    with pytest.raises(ValueError, match=r"paired values need equal lengths, got 2 and 3"):
        function([1.0, 2.0], [1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------------- paired median ratio
def exact_bootstrap_median_quantile(sorted_values: list[float], p: float) -> float:
    """The p-quantile of the median of n values drawn with replacement from n distinct values (n odd):
    the median is at most the k-th smallest when at least (n + 1) / 2 draws are, a binomial tail."""
    n = len(sorted_values)
    for k in range(1, n + 1):
        if scipy_stats.binom.sf((n + 1) // 2 - 1, n, k / n) >= p:
            return sorted_values[k - 1]
    raise AssertionError("unreachable")


def test_paired_median_ratio_matches_the_exact_bootstrap_distribution():
    # Eleven distinct ratios: the bootstrap median's cdf is 0.0072 at the 2nd smallest and 0.0512 at the
    # 3rd, 0.9488 at the 9th and 0.9928 at the 10th, far from 2.5% and 97.5% for 10000 resamples.
    ratios = [0.80, 0.86, 0.91, 0.95, 0.98, 1.00, 1.03, 1.07, 1.12, 1.18, 1.30]
    b = [2.0] * 11
    a = [r * 2.0 for r in ratios[::-1]]  # any order: the pairs are resampled
    low, high = exact_bootstrap_median_quantile(ratios, 0.025), exact_bootstrap_median_quantile(ratios, 0.975)
    assert (low, high) == (0.91, 1.12)
    assert_interval(paired_median_ratio(a, b), 1.00, low, high, MEDIAN, (11,))


def bootstrap_medians(ratios: list[float], resamples: int, seed: int) -> list[float]:
    """The sorted medians of ``resamples`` draws with replacement, drawn as the documented protocol says."""
    rng = random.Random(seed)
    return sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))


def test_paired_median_ratio_ranks_with_few_resamples():
    # 40 resamples: the ends are the 1st and the 40th smallest of the 40 medians (ranks 0.025 x 39 and
    # 0.975 x 39, floored and ceiled), so they span every median drawn. Seed 1 draws distinct values at
    # both ends, so a rank one off shows.
    ratios = [0.80 + 0.02 * i for i in range(21)]
    medians = bootstrap_medians(ratios, 40, seed=1)
    assert medians[0] != medians[1] and medians[-2] != medians[-1]
    method = "median of paired ratios, percentile bootstrap (40 resamples, seed 1), 95%"
    assert_interval(paired_median_ratio(ratios, [1.0] * 21, resamples=40, seed=1), 1.00, medians[0], medians[-1],
                    method, (21,))
    # 81 resamples: ranks floor(0.025 x 80) = 2 and ceil(0.975 x 80) = 78.
    medians = bootstrap_medians(ratios, 81, seed=3)
    got = paired_median_ratio(ratios, [1.0] * 21, resamples=81, seed=3)
    assert (got.low, got.high) == (medians[2], medians[78])
    assert medians[1] != medians[2] or medians[78] != medians[79]


def test_paired_median_ratio_seed_changes_the_draw_not_the_estimate():
    ratios = [0.80 + 0.02 * i for i in range(21)]
    seeded = {seed: paired_median_ratio(ratios, [1.0] * 21, resamples=40, seed=seed) for seed in (0, 1)}
    assert seeded[0].estimate == seeded[1].estimate == pytest.approx(1.0)
    assert (seeded[0].low, seeded[0].high) != (seeded[1].low, seeded[1].high)


@pytest.mark.parametrize("a,b,estimate,reason,n", [
    ([1.0, 2.0], [0.0, -1.0], None, "no values", 0),
    ([1.0, 2.0, 3.0], [1.0, 1.0, 0.0], 1.5, "need at least 10 interleaved pairs, got 2", 2),
    ([float(i) for i in range(1, 10)], [1.0] * 9, 5.0, "need at least 10 interleaved pairs, got 9", 9),
])
def test_paired_median_ratio_without_an_interval_says_why(a, b, estimate, reason, n):
    assert_interval(paired_median_ratio(a, b), estimate, None, None, MEDIAN, (n,), reason)


def test_ten_pairs_are_enough_for_a_median_interval():
    got = paired_median_ratio([1.0 + 0.01 * i for i in range(10)], [1.0] * 10)
    assert got.low is not None and got.low <= got.estimate <= got.high and got.reason == ""


# ----------------------------------------------------------------------------------- effects and verdicts
@pytest.mark.parametrize("low,high,effect", [
    (0.5, 0.99, "better"), (0.5, 1.0, "not resolved"), (0.5, 1.5, "not resolved"),
    (1.0, 1.5, "not resolved"), (1.01, 1.5, "worse"), (1.5, 2.5, "worse"),
])
def test_an_effect_is_decided_only_by_the_whole_interval(low, high, effect):
    assert lower_is_better_effect(Interval(1.0, low, high, "m", (3,))) == effect


@pytest.mark.parametrize("low,high", [(None, None), (None, 2.0), (0.5, None)])
def test_an_effect_without_both_ends_is_not_resolved_with_the_reason(low, high):
    assert lower_is_better_effect(Interval(1.0, low, high, "m", (2,), "too few")) == "not resolved (too few)"
    assert lower_is_better_effect(Interval(1.0, low, high, "m", (2,))) == "not resolved (no interval)"


@pytest.mark.parametrize("op,bound,outcome,reason", [
    ("<=", 2.0, "met", "95% interval [0.5, 2] lies entirely <= 2"),  # the worst end on the bound still holds
    ("<=", 0.5, "inconclusive", "95% interval [0.5, 2] contains 0.5: the measurement cannot tell"),
    ("<=", 0.4999, "missed", "95% interval [0.5, 2] lies entirely outside <= 0.4999"),
    (">=", 0.5, "met", "95% interval [0.5, 2] lies entirely >= 0.5"),
    (">=", 2.0, "inconclusive", "95% interval [0.5, 2] contains 2: the measurement cannot tell"),
    (">=", 2.0001, "missed", "95% interval [0.5, 2] lies entirely outside >= 2.0001"),
])
def test_verdict_at_the_interval_ends(op, bound, outcome, reason):
    interval = Interval(1.0, 0.5, 2.0, "m", (3, 3))
    assert verdict(interval, op, bound) == Verdict(outcome, interval, op, bound, reason)


@pytest.mark.parametrize("low,high", [(None, None), (None, 2.0), (0.5, None)])
def test_verdict_without_both_ends_is_inconclusive_with_the_reason(low, high):
    interval = Interval(1.0, low, high, "m", (2, 2), "need at least 3")
    assert verdict(interval, "<=", 1.5) == Verdict("inconclusive", interval, "<=", 1.5, "no interval: need at least 3")
    bare = Interval(1.0, low, high, "m", (2, 2))
    assert verdict(bare, ">=", 1.5) == Verdict("inconclusive", bare, ">=", 1.5, "no interval: no interval")


def test_verdict_refuses_an_unknown_operator_naming_it():
    with pytest.raises(ValueError, match=r"op must be '<=' or '>=', got '<'"):
        verdict(Interval(1.0, 0.5, 2.0, "m", (3,)), "<", 1.0)


# ----------------------------------------------------------------------------------- records
def test_interval_as_dict_rounds_to_six_places_and_keeps_the_reason_only_when_there_is_one():
    assert Interval(1.23456789, None, 2.0000004, "m", (3, 4), "why").as_dict() == {
        "estimate": 1.234568, "low": None, "high": 2.0, "method": "m", "n": [3, 4], "reason": "why"}
    assert Interval(0.1234565, 0.1, 0.2, "m", (3,)).as_dict() == {
        "estimate": round(0.1234565, 6), "low": 0.1, "high": 0.2, "method": "m", "n": [3]}
    assert isinstance(Interval(1, 1, 1, "m", (3,)).as_dict()["estimate"], float)


def test_verdict_as_dict_carries_the_target_and_the_interval():
    interval = Interval(0.75, 0.5, 1.0, "m", (3, 3))
    assert verdict(interval, "<=", 1.0).as_dict() == {
        "outcome": "met", "target": "<= 1", "reason": "95% interval [0.5, 1] lies entirely <= 1",
        "estimate": 0.75, "low": 0.5, "high": 1.0, "method": "m", "n": [3, 3]}
