"""Run one trial as a subprocess and watch the metric it writes.

The trial program (``lit_gen.fit``) appends one JSON line per validation epoch to
``<run dir>/metrics.jsonl`` and writes ``<run dir>/summary.json`` at the end; the run folder is
``<output_dir>/<name>/<run id>/``, found here by the run id. Every ``poll_interval`` seconds the
runner reads the new complete lines, hands the metric values to ``on_progress`` (which reports
them and may answer with a hyperband ``Stop``), and stops the trial's whole process group when
told to: SIGTERM, then SIGKILL after ``kill_grace`` seconds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_gen.sweeping.hyperband import Stop

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 30
LOG_TAIL_CHARS = 4000


@dataclass
class TrialOutcome:
    """What happened to one trial process."""

    exit_code: int | None
    history: list[float] = field(default_factory=list)
    final: float | None = None
    summary: dict[str, Any] | None = None
    stop: Stop | None = None
    run_dir: Path | None = None
    log_tail: str = ""
    interrupted: bool = False


class MetricsReader:
    """Reads the complete new lines of a growing metrics.jsonl and keeps the metric's history."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.path: Path | None = None
        self._offset = 0
        self.history: list[float] = []
        self.reported: list[str] = []  # metric names seen, to explain a wrong metric.name

    def read(self) -> list[float]:
        """The metric values of the lines added since the last call."""
        if self.path is None or not self.path.is_file():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # a line still being written
        self._offset += end + 1
        new = []
        for line in chunk[: end + 1].splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: skipping a line that is not JSON: %r", self.path, line[:80])
                continue
            if not self.reported and isinstance(row, dict):
                self.reported = sorted(row)
            value = metric_value(row, self.metric)
            if value is not None:
                new.append(value)
        self.history += new
        return new


def metric_value(row: Any, metric: str) -> float | None:
    """The finite number ``row[metric]``, else None (W&B skips such rows in a metric's history)."""
    if not isinstance(row, dict):
        return None
    value = row.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def find_run_dir(runs_root: Path, run_id: str) -> Path | None:
    """The folder ``<runs_root>/<name>/<run_id>`` of a trial, once the program created it."""
    for candidate in (runs_root / run_id, *runs_root.glob(f"*/{run_id}")):
        if candidate.is_dir():
            return candidate
    return None


def log_tail(path: Path) -> str:
    """The last lines of a trial's log (what a failed trial's record keeps)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16 * LOG_TAIL_CHARS))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])[-LOG_TAIL_CHARS:]


def run_trial(
    argv: list[str],
    *,
    run_id: str,
    runs_root: Path,
    metric: str,
    log_path: Path,
    on_progress: Callable[[list[float], list[float]], Stop | None] | None = None,
    poll_interval: float = 1.0,
    kill_grace: float = 30.0,
) -> TrialOutcome:
    """Run ``argv`` until it exits or ``on_progress(new_values, history)`` returns a ``Stop``.

    A KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by the CLI) stops the trial's process
    group and returns an outcome with ``interrupted=True``.
    """
    reader = MetricsReader(metric)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    outcome = TrialOutcome(exit_code=None)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the log tail must hold the last words of a killed trial
    with open(log_path, "ab") as log_file:
        log_file.write(("$ " + " ".join(argv) + "\n").encode())
        log_file.flush()
        # A new session: stopping the trial reaches its dataloader workers and DDP children too.
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            while True:
                exited = process.poll() is not None
                if reader.path is None:
                    outcome.run_dir = find_run_dir(runs_root, run_id)
                    reader.path = outcome.run_dir / "metrics.jsonl" if outcome.run_dir else None
                new = reader.read()
                if on_progress is not None and outcome.stop is None and not exited:
                    outcome.stop = on_progress(new, reader.history)
                    if outcome.stop is not None:
                        _stop(process, kill_grace)
                        exited = True
                elif on_progress is not None and new:
                    on_progress(new, reader.history)
                if exited:
                    break
                time.sleep(poll_interval)
        except KeyboardInterrupt:
            outcome.interrupted = True
            _stop(process, kill_grace)
        except BaseException:
            _stop(process, kill_grace)  # never leave a trial running without its agent
            raise
        outcome.exit_code = process.wait()
    # Lines written between the last poll and the exit.
    if reader.path is None:
        outcome.run_dir = find_run_dir(runs_root, run_id)
        reader.path = outcome.run_dir / "metrics.jsonl" if outcome.run_dir else None
    new = reader.read()
    if new and on_progress is not None and not outcome.interrupted:
        on_progress(new, reader.history)
    outcome.history = list(reader.history)
    outcome.summary = _read_summary(outcome.run_dir)
    final = metric_value((outcome.summary or {}).get("metrics", outcome.summary), metric)
    if final is None and outcome.summary is not None:
        final = metric_value(outcome.summary, metric)
    outcome.final = final if final is not None else (outcome.history[-1] if outcome.history else None)
    outcome.log_tail = log_tail(log_path)
    if outcome.final is None and reader.reported:
        outcome.log_tail += f"\n[lit_gen.sweep] metrics.jsonl has no {metric!r}; it reports: {', '.join(reader.reported)}"
    return outcome


def _read_summary(run_dir: Path | None) -> dict | None:
    if run_dir is None or not (run_dir / "summary.json").is_file():
        return None
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return summary if isinstance(summary, dict) else None


def _stop(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM the trial's process group, SIGKILL it if still alive after ``grace`` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("trial process %d ignored SIGTERM for %.0f s; killing it", process.pid, grace)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
