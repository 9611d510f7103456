"""The trial store: shared by concurrent agents, a grid point is claimed once; dead agents' points come back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from lit_gen.errors import SweepError
from lit_gen.sweeping.agent import SweepAgent
from lit_gen.sweeping.space import load_sweep, parse_sweep
from lit_gen.sweeping.store import COMPLETE, FAILED, RUNNING, TrialStore
from tests.sweeping.fake_program import write_sweep

REPO = Path(__file__).resolve().parents[2]


def grid_spec(values=(1, 2, 3), **top):
    return parse_sweep({"method": "grid", "program": "t.py", "metric": {"name": "loss"},
                        "parameters": {"a": {"values": list(values)}}, **top}, source="t.yaml")


def test_trials_survive_reopening_and_are_seen_by_another_handle(tmp_path):
    store = TrialStore(tmp_path, grid_spec())
    with store.claim():
        trial = store.create(params={"a": 1}, coords={}, grid_index=0)
    store.report(trial, 0.7)
    store.report(trial, 0.5)
    store.finish(trial, COMPLETE, 0.5, {"run_dir": "/x"})
    other = TrialStore(tmp_path, grid_spec())
    assert other.sweep_id == store.sweep_id and other.sweep_id.startswith("sweep-")
    [seen] = other.trials()
    assert (seen.trial_id, seen.state, seen.value, seen.history) == (f"{store.sweep_id}-000", COMPLETE, 0.5, [0.7, 0.5])
    assert (seen.params, seen.grid_index, seen.attrs["run_dir"]) == ({"a": 1}, 0, "/x")


def test_a_store_refuses_a_different_sweep(tmp_path):
    TrialStore(tmp_path, grid_spec())
    with pytest.raises(SweepError, match="belongs to another sweep config .*differs in: parameters"):
        TrialStore(tmp_path, grid_spec(values=(1, 2)))


def test_a_trial_without_heartbeat_is_released_and_its_grid_point_runs_again(tmp_path):
    agent = SweepAgent(grid_spec(values=(1, 2)), tmp_path, stale_after=60)
    dead, _ = agent.next_trial()
    agent.store.set_attr(dead, "heartbeat", time.time() - 3600)  # its agent died an hour ago
    retry, _ = agent.next_trial()
    assert retry.params == {"a": 1} and retry.grid_index == dead.grid_index
    released = agent.store.trials()[0]
    assert released.state == FAILED and released.released and "no heartbeat" in released.attrs["reason"]
    # The dead agent waking up cannot overwrite the released trial.
    assert agent.store.finish(dead, COMPLETE, 1.0) is False
    assert agent.store.trials()[0].state == FAILED


def claimer_spec():
    return parse_sweep({"method": "grid", "program": "t.py", "metric": {"name": "loss"},
                        "parameters": {"a": {"min": 1, "max": 40}}})


# Each racing agent claims grid points and finishes them at once, printing what it got.
CLAIMER = textwrap.dedent("""
    import sys, time
    from lit_gen.sweeping.agent import SweepAgent
    from lit_gen.sweeping.space import parse_sweep
    spec = parse_sweep({"method": "grid", "program": "t.py", "metric": {"name": "loss"},
                        "parameters": {"a": {"min": 1, "max": 40}}})
    agent = SweepAgent(spec, sys.argv[1])
    while True:
        trial, reason = agent.next_trial()
        if trial is None:
            break
        time.sleep(0.05)  # a trial that takes a moment, so the two agents interleave
        agent.complete(trial, float(trial.params["a"]))
        print(trial.params["a"], flush=True)
""")


def test_racing_agents_never_claim_a_grid_point_twice(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    claimed = Counter(int(a) for out in outputs for a in out)
    assert claimed == Counter(range(1, 41))
    assert min(len(out) for out in outputs) >= 5, [len(out) for out in outputs]
    store = TrialStore(tmp_path, claimer_spec())
    assert sorted(t.grid_index for t in store.trials()) == list(range(40))
    assert [t.number for t in store.trials()] == list(range(40))


def test_two_agent_processes_share_one_grid(tmp_path):
    sweep = write_sweep(tmp_path, "  quality:\n    values: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]\n"
                                  "  sleep:\n    value: 0.25\n")
    store = tmp_path / "store"
    args = [sys.executable, "-m", "lit_gen.sweep", str(sweep), "--count", "8", "--store", str(store),
            "--poll-interval", "0.02"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not list((store / "logs").glob("*.log")) and time.time() < deadline:
        time.sleep(0.05)  # the second agent joins once the first one is running a trial
    second = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outs = [p.communicate(timeout=120)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    summary = json.loads((store / "summary.json").read_text())
    trials = summary["trials"]
    assert len(trials) == 8 and all(t["state"] == COMPLETE for t in trials)
    assert sorted(t["params"]["quality"] for t in trials) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    ran = [int(out.split("this agent ran ")[1].split()[0]) for out in outs]
    assert sum(ran) == 8 and min(ran) >= 1, outs
    assert summary["best"]["params"] == {"quality": 0.1, "sleep": 0.25}
    assert all("the grid is complete" in out or "ran the 8 trials" in out for out in outs)
    assert not [t for t in TrialStore(store, load_sweep(sweep)).trials() if t.state == RUNNING]
