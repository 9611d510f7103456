"""The table of a sweep's trials and its best config, as text, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_gen.sweeping.command import build_argv
from lit_gen.sweeping.space import SweepSpec
from lit_gen.sweeping.store import COMPLETE, TrialRecord


@dataclass
class Summary:
    """Every trial as a row, and the best complete trial (None when none completed)."""

    sweep_id: str
    spec: SweepSpec
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        metric = self.spec.metric
        return {
            "sweep_id": self.sweep_id,
            "name": self.spec.name,
            "method": self.spec.method,
            "metric": {"name": metric.name, "goal": metric.goal} if metric else None,
            "best": self.best,
            "trials": self.rows,
        }


def summarize(spec: SweepSpec, sweep_id: str, trials: list[TrialRecord]) -> Summary:
    """Rows of ``trials`` and the best complete one for the sweep's metric goal."""
    rows = []
    for t in trials:
        value = t.last_value
        rows.append({
            "trial_id": t.trial_id,
            "state": "released" if t.released else t.state,
            "value": value if value is None or math.isfinite(value) else None,
            "iterations": len(t.history),
            "params": t.params,
            "reason": t.attrs.get("reason", ""),
            "run_dir": t.attrs.get("run_dir"),
        })
    best = None
    metric = spec.metric
    if metric is not None:
        done = [t for t in trials if t.state == COMPLETE and t.value is not None and math.isfinite(t.value)]
        if done:
            top = min(done, key=lambda t: t.value if metric.goal == "minimize" else -t.value)
            rerun = build_argv(spec, spec.nest(top.params), display=True,
                               json_file=Path(f"{top.trial_id}.json"))
            best = {"trial_id": top.trial_id, "value": top.value, "params": top.params,
                    "run_dir": top.attrs.get("run_dir"), "command": shlex.join(rerun)}
    return Summary(sweep_id, spec, rows, best)


def format_table(summary: Summary) -> str:
    """A plain-text table of the trials, then the best config."""
    metric = summary.spec.metric
    metric_name = metric.name if metric else "metric"
    header = ["trial", "state", metric_name, "iters", "parameters"]
    lines = [[r["trial_id"], r["state"], _number(r["value"]), str(r["iterations"]),
              " ".join(f"{k}={_short(v)}" for k, v in r["params"].items())] for r in summary.rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    best = summary.best
    if best is not None:
        out += ["", f"best: {best['trial_id']} with {metric_name} = {_number(best['value'])} ({metric.goal})"]
        out += [f"  {k} = {v!r}" for k, v in best["params"].items()]
        if best.get("run_dir"):
            out.append(f"  run folder: {best['run_dir']}")
        out.append(f"  rerun: {best['command']}")
    elif metric is not None:
        out += ["", "best: no trial has completed yet"]
    return "\n".join(out)


def write_summary(directory: Path, summary: Summary) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.csv`` into the store (atomically: agents may race)."""
    data = summary.to_json()
    json_path = directory / "summary.json"
    _atomic_write(json_path, json.dumps(data, indent=2, default=str) + "\n")
    names = sorted({k for r in summary.rows for k in r["params"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial_id", "state", summary.spec.metric.name if summary.spec.metric else "value",
                     "iterations", *names, "reason"])
    for r in summary.rows:
        writer.writerow([r["trial_id"], r["state"], "" if r["value"] is None else r["value"], r["iterations"],
                         *(r["params"].get(n, "") for n in names), r["reason"]])
    csv_path = directory / "summary.csv"
    _atomic_write(csv_path, buffer.getvalue())
    return json_path, csv_path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    return f"{value:.4g}" if isinstance(value, float) and len(text) > 8 else text
