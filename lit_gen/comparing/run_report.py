"""A Markdown report of one run: config, final metrics, FID records, loss curves and the last sample grid.

``write_report(run_dir)`` writes ``<run>/report.md`` and its figures in ``<run>/report/`` (one PNG per
logged quantity, from the CSV log ``metrics.csv``). ``lit_gen.fit`` calls it when a fit ends;
``python -m lit_gen.report RUN_DIR`` (``lit_gen.commands.report``) refreshes the report of any run,
finished or not. The readers of a run's files here (metrics, FID records, the last grid) also serve
``lit_gen.comparing``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from pathlib import Path

from lit_gen.errors import LitGenError

log = logging.getLogger(__name__)

Series = dict[str, list[tuple[int, float]]]


def read_metrics_csv(path: str | Path) -> Series:
    """Every numeric column of Lightning's CSV log as (step, value) points; empty cells are skipped."""
    series: Series = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                step = int(float(row.get("step") or 0))
            except ValueError:
                continue
            for key, cell in row.items():
                if key in ("step", "epoch") or key is None or cell in ("", None):
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    continue
                if math.isfinite(value):
                    series.setdefault(key, []).append((step, value))
    return series


def group_name(column: str) -> str:
    """``train/loss_step``, ``train/loss_epoch`` and ``val/loss`` all belong to the ``loss`` figure."""
    name = re.sub(r"_(step|epoch)$", "", column)
    return name.split("/", 1)[1] if name.startswith(("train/", "val/", "test/")) else name


def plot_curves(series: Series, folder: str | Path) -> list[Path]:
    """One PNG per quantity (``loss``, ``kl``, ``fid``...) with its train-step, train-epoch and val curves."""
    from matplotlib.figure import Figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[str]] = {}
    for column in sorted(series):
        groups.setdefault(group_name(column), []).append(column)
    paths = []
    for group, columns in sorted(groups.items(), key=lambda item: (item[0] != "loss", item[0])):
        figure = Figure(figsize=(6, 3.5), dpi=110)
        ax = figure.add_subplot()
        for column in columns:
            steps, values = zip(*sorted(series[column]))
            per_step = column.endswith("_step")
            ax.plot(steps, values, label=column, linewidth=0.8 if per_step else 1.6, alpha=0.45 if per_step else 1.0,
                    marker=None if per_step or len(steps) > 30 else "o", markersize=3)
        ax.set_xlabel("step")
        ax.set_title(group)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', group)}.png"
        figure.savefig(path, bbox_inches="tight")
        paths.append(path)
    return paths


def last_sample_grid(run_dir: Path, summary: dict) -> Path | None:
    """The grid named in summary.json, else ``samples/final.png``, else the latest epoch grid."""
    named = summary.get("samples")
    samples = run_dir / "samples"
    # Prefer the file inside this folder: summary.json holds absolute paths, stale once a run is moved.
    if named and (samples / Path(named).name).is_file():
        return samples / Path(named).name
    if named and Path(named).is_file():
        return Path(named)
    if (samples / "final.png").is_file():
        return samples / "final.png"
    grids = sorted(samples.glob("epoch_*.png")) if samples.is_dir() else []
    return grids[-1] if grids else None


def fid_records(run_dir: Path) -> list[dict]:
    records = []
    fid_log = run_dir / "fid.jsonl"
    if fid_log.is_file():
        records += [json.loads(line) for line in fid_log.read_text().splitlines() if line.strip()]
    for path in sorted((run_dir / "evaluations").glob("*.json")) if (run_dir / "evaluations").is_dir() else []:
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            log.warning("skipping unreadable evaluation record %s", path)
    return records


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def describe_parameters(summary: dict) -> str:
    """``"1,001,729 parameters (+1,001,729 EMA copy)"``: the trained count, then EMA copies and frozen parts."""
    counts = summary.get("parameter_counts") or {"trained": summary.get("parameters", 0), "ema": 0, "frozen": 0}
    extra = [f"+{counts[k]:,} {what}" for k, what in (("ema", "EMA copy"), ("frozen", "frozen")) if counts.get(k)]
    return f"{counts['trained']:,} parameters" + (f" ({', '.join(extra)})" if extra else "")


def _format(value) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.md`` (and ``run_dir/report/*.png``) and return its path."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise LitGenError(f"{run_dir} is not a run folder (no config.yaml); pass runs/<name>/<id>")
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    lines = [f"# Run {summary.get('name', run_dir.parent.name)} / {run_dir.name}", ""]
    if summary:
        lines += [f"{summary.get('model')} ({describe_parameters(summary)}) on {summary.get('data')}: "
                  f"{summary.get('global_step')} steps, {summary.get('epochs')} epochs in {summary.get('seconds')} s.",
                  "", f"Last checkpoint: `{summary.get('last_checkpoint')}`", ""]
    else:
        lines += ["The run has no summary.json: it did not finish (or is still running).", ""]

    metrics = summary.get("metrics") or {}
    if not metrics and (run_dir / "metrics.jsonl").is_file():
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        metrics = rows[-1] if rows else {}
    lines += ["## Final metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_format(v)} |" for k, v in sorted(metrics.items())]
    else:
        lines += ["No metrics were recorded."]
    lines.append("")

    records = fid_records(run_dir)
    if records:
        lines += ["## FID", "", "| metric | value | generated | real | sampler | steps | guidance | weights | epoch | features sha256 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in records:
            sha = (r.get("feature_weights_sha256") or "")[:12]
            cells = [r["metric"], f"{r['value']:.4f}", r["generated_count"],
                     f"{r['real_count']} {r['real_dataset']}/{r['real_split']}", r.get("sampler"), r.get("steps"),
                     r.get("guidance"), r.get("weights"), r.get("epoch"), sha]
            lines.append("| " + " | ".join("–" if c in (None, "") else str(c) for c in cells) + " |")
        lines += ["", "FID-<dataset>-classifier values use a domain classifier's features: compare them only with each other.", ""]

    csv_path = run_dir / "metrics.csv"
    lines += ["## Curves", ""]
    if csv_path.is_file():
        for figure in plot_curves(read_metrics_csv(csv_path), run_dir / "report"):
            lines += [f"![{figure.stem}]({_relative(figure, run_dir)})", ""]
    else:
        lines += ["No metrics.csv in this run.", ""]

    grid = last_sample_grid(run_dir, summary)
    lines += ["## Samples", ""]
    lines += [f"![samples]({_relative(grid, run_dir)})", ""] if grid else ["No sample grid was written.", ""]

    lines += ["## Config", "", "```yaml", (run_dir / "config.yaml").read_text().rstrip(), "```", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
