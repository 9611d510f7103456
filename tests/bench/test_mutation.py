"""bench.mutation: how mutmut's results become the record (statuses, equivalents and their staleness, the score)."""

from __future__ import annotations

import pytest

from bench import mutation
from bench.stats import verdict


@pytest.fixture
def diffs(monkeypatch):
    table = {
        "m.f__mutmut_1": "--- a\n+++ b\n-    return x * 2\n+    return x * 3",
        "m.f__mutmut_2": "--- a\n+++ b\n-    y = x + 0.0\n+    y = x - 0.0",
        "m.f__mutmut_3": "--- a\n+++ b\n-    z = a < b\n+    z = a <= b",
        "m.g__mutmut_1": "--- a\n+++ b\n-    return 1\n+    return 2",
    }
    monkeypatch.setattr(mutation, "diff_of", lambda name, path: table[name])
    return table


def test_statuses_follow_mutmuts_exit_codes():
    assert [mutation.status_of(c) for c in (1, 3, 0, 33, 5, 36, None, 34, -11)] == [
        "killed", "killed", "survived", "no tests", "no tests", "timeout", "not run", "not run", "suspicious"]


def test_equivalents_count_apart_only_while_their_line_still_matches(diffs):
    results = {"m.py": {"m.f__mutmut_1": 1, "m.f__mutmut_2": 0, "m.f__mutmut_3": 0, "m.g__mutmut_1": 36}}
    equivalents = {
        "m.f__mutmut_2": {"mutant": "m.f__mutmut_2", "line": "y = x - 0.0", "reason": "adding or subtracting zero"},
        # Written for an older version of the function: the mutant changed since, so it counts as a survivor again.
        "m.f__mutmut_3": {"mutant": "m.f__mutmut_3", "line": "z = a >= b", "reason": "ties cannot occur"},
    }
    summary = mutation.summarise(results, equivalents)
    assert summary["total"] == {"killed": 1, "equivalent": 1, "survived": 1, "timeout": 1}
    assert summary["killed"] == 2 and summary["judged"] == 3  # timeouts count as killed, equivalents leave the count
    assert summary["score"] == pytest.approx(2 / 3)
    assert [s["mutant"] for s in summary["survivors"]] == ["m.f__mutmut_3"]
    assert summary["stale_equivalents"] == ["m.f__mutmut_3"]
    assert summary["equivalent"][0]["reason"] == "adding or subtracting zero"


def test_no_tests_and_unrun_mutants_are_not_kills(diffs):
    summary = mutation.summarise({"m.py": {"m.f__mutmut_1": 33, "m.g__mutmut_1": None}}, {})
    assert summary["killed"] == 0 and summary["judged"] == 1 and summary["score"] == 0.0
    assert summary["not_run"] == ["m.g__mutmut_1"]


def test_the_shipped_equivalents_file_reads_and_gives_a_reason_for_each():
    entries = mutation.load_equivalents()
    for name, entry in entries.items():
        assert entry["line"].strip() and len(entry["reason"]) > 10, name


def test_the_whole_core_share_is_bounded_by_the_mutants_not_run(diffs):
    # 9 of 10 run mutants killed, 10 not run: over the whole core the share lies in [9/20, 19/20].
    codes = {f"m.f__mutmut_{i}": (1 if i < 9 else 0) for i in range(10)}
    codes.update({f"m.g__mutmut_{i}": None for i in range(10)})
    diffs.update({f"m.f__mutmut_{i}": "+x" for i in range(10)})
    summary = mutation.summarise({"m.py": codes}, {})
    core = mutation.whole_core_share(summary)
    assert (core.estimate, core.low, core.high, core.n) == (pytest.approx(0.9), pytest.approx(9 / 20),
                                                             pytest.approx(19 / 20), (20,))
    assert verdict(core, ">=", 0.9).outcome == "inconclusive"
    everything = mutation.summarise({"m.py": {k: v for k, v in codes.items() if v is not None}}, {})
    assert verdict(mutation.whole_core_share(everything), ">=", 0.9).outcome == "met"
    assert mutation.whole_core_share(mutation.summarise({"m.py": {"m.g__mutmut_1": None}}, {})) is None


def test_the_rerun_command_names_whole_modules_or_the_functions_whose_mutants_all_ran():
    results = {
        "pkg/done.py": {"pkg.done.f__mutmut_1": 1, "pkg.done.xǁCǁg__mutmut_1": 0},
        "pkg/part.py": {"pkg.part.f__mutmut_1": 1, "pkg.part.f__mutmut_2": 36, "pkg.part.g__mutmut_1": None,
                        "pkg.part.h__mutmut_1": 1, "pkg.part.h__mutmut_2": None},
        "pkg/none.py": {"pkg.none.f__mutmut_1": None},
    }
    assert mutation.rerun_patterns(results) == ["pkg.done*", "pkg.part.f__mutmut_*"]
