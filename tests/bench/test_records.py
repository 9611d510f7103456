"""Every verdict in bench/results/ follows the interval rule: it has an interval, and re-deciding it from
that interval and its bound gives the verdict the record states."""

import json
import re

import pytest

from bench.common import RESULTS
from bench.stats import Interval, verdict

RECORDS = sorted(RESULTS.glob("*.json"))


def targets_of(path):
    return [(path.name, t) for t in json.loads(path.read_text()).get("targets") or []]


@pytest.mark.parametrize("name,target", [pair for path in RECORDS for pair in targets_of(path)],
                         ids=lambda x: x if isinstance(x, str) else x["name"][:40])
def test_each_recorded_verdict_comes_from_its_interval(name, target):
    interval = target.get("interval")
    assert interval, f"{name}: '{target['name']}' has no interval (a single measurement cannot be a verdict)"
    op, bound = re.match(r"(<=|>=) ([-+0-9.eE]+)", target["target"]).groups()
    expected = verdict(Interval(interval["estimate"], interval["low"], interval["high"], interval["method"],
                                tuple(interval["n"])), op, float(bound))
    assert target["verdict"] == expected.outcome, f"{name}: '{target['name']}'"
