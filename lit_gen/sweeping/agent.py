"""A sweep agent: claim a trial, run it, record it; as many times as asked.

Several agents (processes, SLURM array tasks, nodes) may work on one store at once. Each claim
happens under the store's claim lock, so a grid point is run once, and ``run_cap`` and
``metric.target`` hold across agents. A trial whose agent dies stops sending heartbeats; the next
agent to claim marks it failed and released, and its grid point is run again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_gen.sweeping.command import build_argv, require_flag_style
from lit_gen.sweeping.hyperband import Hyperband, Stop
from lit_gen.sweeping.runner import TrialOutcome, run_trial
from lit_gen.sweeping.space import SweepSpec
from lit_gen.sweeping.store import COMPLETE, FAILED, PRUNED, TrialRecord, TrialStore
from lit_gen.sweeping.strategies import make_strategy

log = logging.getLogger(__name__)


@dataclass
class AgentResult:
    """The trials this agent ran and why it stopped."""

    trials: list[TrialRecord] = field(default_factory=list)
    reason: str = ""


class SweepAgent:
    """Runs the trials of a sweep into a store.

    Args:
        spec (SweepSpec): the sweep.
        store (str | Path | TrialStore): the store folder (shared by all agents of the sweep).
        seed (int, default 0): seeds random draws and TPE with each trial's number.
        poll_interval (float, default 1.0): seconds between reads of a running trial's metrics.
        kill_grace (float, default 30.0): seconds between SIGTERM and SIGKILL when stopping a trial.
        heartbeat_interval (float, default 60.0): how often a running trial's agent says it is alive.
        stale_after (float, default 600.0): a running trial without a heartbeat for this long is
            released (its agent is gone); must exceed heartbeat_interval by a wide margin.
        max_consecutive_failures (int, default 5): stop after this many failed trials in a row
            (a broken config would otherwise burn through the whole count).
    """

    def __init__(self, spec: SweepSpec, store: str | Path | TrialStore, *, seed: int = 0,
                 poll_interval: float = 1.0, kill_grace: float = 30.0, heartbeat_interval: float = 60.0,
                 stale_after: float = 600.0, max_consecutive_failures: int = 5) -> None:
        require_flag_style(spec)  # before the store exists: a command the engine cannot drive is a file error
        self.spec = spec
        self.store = store if isinstance(store, TrialStore) else TrialStore(store, spec)
        self.strategy = make_strategy(spec, seed)
        self.hyperband = Hyperband(spec.early_terminate, spec.metric.goal) if spec.early_terminate else None
        self.poll_interval = poll_interval
        self.kill_grace = kill_grace
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.max_consecutive_failures = max_consecutive_failures
        self.runs_root = self.store.directory / "runs"

    # ------------------------------------------------------------------------------ claiming
    def next_trial(self) -> tuple[TrialRecord | None, str]:
        """Claim the next trial: ``(record, "")``, or ``(None, why the sweep has nothing left)``."""
        with self.store.claim():
            self.store.release_stale(self.stale_after)
            trials = self.store.trials()
            live = [t for t in trials if not t.released]
            if self.spec.run_cap is not None and len(live) >= self.spec.run_cap:
                return None, f"run_cap reached ({self.spec.run_cap} trials)"
            metric = self.spec.metric
            for t in trials:
                if metric and t.state == COMPLETE and t.value is not None and metric.reached(t.value):
                    return None, f"{t.trial_id} reached the target {metric.name} {metric.target:g}"
            suggestion = self.strategy.suggest(trials, len(trials))
            if suggestion is None:
                return None, f"the grid is complete ({self.strategy.size} points)"
            record = self.store.create(params=suggestion.params, coords=suggestion.coords,
                                       grid_index=suggestion.grid_index)
        return record, ""

    def complete(self, record: TrialRecord, value: float, attrs: dict[str, Any] | None = None) -> None:
        """Record a trial's final metric (for in-process objectives and the subprocess path alike)."""
        self.store.finish(record, COMPLETE, value, attrs)

    # ------------------------------------------------------------------------------ running
    def argv(self, record: TrialRecord) -> list[str]:
        """The command line of a claimed trial."""
        return build_argv(
            self.spec, self.spec.nest(record.params), run_id=record.trial_id,
            extras={"run.output_dir": str(self.runs_root), "logger.group": self.store.sweep_id},
            json_file=self.store.directory / "args" / f"{record.trial_id}.json",
        )

    def run(self, count: int | None = None) -> AgentResult:
        """Run up to ``count`` trials (None: until the grid, run_cap or target ends the sweep)."""
        result = AgentResult()
        failures = 0
        while count is None or len(result.trials) < count:
            record, reason = self.next_trial()
            if record is None:
                result.reason = reason
                return result
            result.trials.append(record)
            interrupted = self.run_one(record)
            if interrupted:
                raise KeyboardInterrupt
            failures = failures + 1 if record.state == FAILED else 0
            if failures >= self.max_consecutive_failures:
                result.reason = (f"{failures} trials failed in a row; see their logs in {self.store.directory / 'logs'}")
                return result
        result.reason = f"ran the {count} trials asked for"
        return result

    def run_one(self, record: TrialRecord) -> bool:
        """Run a claimed trial to its end and record it; True when the agent was interrupted."""
        argv = self.argv(record)
        log_path = self.store.directory / "logs" / f"{record.trial_id}.log"
        self.store.set_attr(record, "command", argv)
        shown = ", ".join(f"{k}={v}" for k, v in record.params.items())
        log.info("trial %s started: %s", record.trial_id, shown)
        watcher = _Watcher(self, record)
        outcome = run_trial(argv, run_id=record.trial_id, runs_root=self.runs_root,
                            metric=self.spec.metric.name if self.spec.metric else "",
                            log_path=log_path, on_progress=watcher, poll_interval=self.poll_interval,
                            kill_grace=self.kill_grace)
        self._record(record, outcome, log_path)
        return outcome.interrupted

    def _record(self, record: TrialRecord, outcome: TrialOutcome, log_path: Path) -> None:
        attrs: dict[str, Any] = {"exit_code": outcome.exit_code, "log": str(log_path)}
        if outcome.run_dir is not None:
            attrs["run_dir"] = str(outcome.run_dir)
        metric = self.spec.metric
        if outcome.interrupted:
            attrs.update(released=True, reason="the agent was interrupted", log_tail=outcome.log_tail)
            self.store.finish(record, FAILED, attrs=attrs)
            log.warning("trial %s interrupted; its point is free for another agent", record.trial_id)
        elif outcome.stop is not None:
            attrs["reason"] = outcome.stop.describe(metric.name)
            self.store.finish(record, PRUNED, attrs=attrs)
            log.info("trial %s %s", record.trial_id, attrs["reason"])
        elif outcome.exit_code != 0:
            attrs.update(reason=f"exit code {outcome.exit_code}", log_tail=outcome.log_tail)
            self.store.finish(record, FAILED, attrs=attrs)
            log.warning("trial %s failed with exit code %s; last lines of %s:\n%s", record.trial_id,
                        outcome.exit_code, log_path, outcome.log_tail)
        elif metric is not None and outcome.final is None:
            attrs.update(reason=f"the trial never reported {metric.name!r}", log_tail=outcome.log_tail)
            self.store.finish(record, FAILED, attrs=attrs)
            log.warning("trial %s finished without reporting %r (check metric.name)", record.trial_id, metric.name)
        else:
            value = outcome.final if outcome.final is not None else float("nan")
            self.store.finish(record, COMPLETE, value, attrs)
            log.info("trial %s complete: %s = %s", record.trial_id, metric.name if metric else "metric", value)


class _Watcher:
    """The runner's progress callback: report new metric values, beat, and ask hyperband."""

    # Re-check thresholds this often even without a new value: other trials may raise the bar.
    RECHECK_SECONDS = 10.0

    def __init__(self, agent: SweepAgent, record: TrialRecord) -> None:
        self.agent = agent
        self.record = record
        self.last_beat = time.monotonic()
        self.last_check = 0.0

    def __call__(self, new: list[float], history: list[float]) -> Stop | None:
        store = self.agent.store
        for value in new:
            store.report(self.record, value)
        now = time.monotonic()
        if now - self.last_beat >= self.agent.heartbeat_interval:
            store.heartbeat(self.record)
            self.last_beat = now
        hyperband = self.agent.hyperband
        if hyperband is None or not history or (not new and now - self.last_check < self.RECHECK_SECONDS):
            return None
        self.last_check = now
        others = [t.history for t in store.trials() if t.number != self.record.number and t.history]
        return hyperband.decide(history, others)

