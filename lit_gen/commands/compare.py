"""Put runs of any family side by side: one table, shared plots, and a likelihood column in bits/dim.

    python -m lit_gen.compare runs/ae_digits/<id> runs/vae_digits/<id> runs/ddpm_digits/<id> --out comparison
    python -m lit_gen.compare --glob 'runs/*/*' --measure
    python -m lit_gen.compare --sweep sweeps/store/vae_digits --out comparison

Writes ``<out>/report.md`` with its figures in ``<out>/figures/`` and ``<out>/report.html``, the same
report with every figure embedded (one file to mail or attach). Each run is one row: family, trained
parameters, steps, training images seen, wall time, sampling speed, FID / KID / IS (one column per
measuring protocol), reconstruction error, and bits per dimension where the family defines a
likelihood (``lit_gen.metrics.likelihood``); a blank carries its reason.

The table is read from the runs' files. ``--measure`` first computes what a run lacks (sampling
speed and a fixed-seed grid, reconstruction error, the likelihood record) and stores it in the run
folder, so later comparisons are instant. ``--sweep STORE`` adds the sweep's trials sorted by its
metric, a parallel-coordinates plot and Optuna's parameter importances, and compares the trials'
runs. When a W&B run is active or W&B is configured online, the table is also logged as a W&B
Table; offline, only files are written.

Exit codes: 0 success, 2 a user error (not a run folder, an empty glob, not a sweep store).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from lit_gen.comparing.collect import RunInfo, find_runs, read_run
from lit_gen.comparing.document import Block, Grid, Heading, Image, Text, to_html, to_markdown
from lit_gen.comparing.table import Cell, build_table
from lit_gen.errors import ConfigError

log = logging.getLogger("lit_gen.compare")


def compare(runs: list[RunInfo], out: str | Path, *, sweep=None, environ: dict[str, str] | None = None) -> dict[str, Path]:
    """Write the comparison of ``runs`` (and of ``sweep``, a ``SweepView``) into ``out``; the written paths."""
    from lit_gen.comparing import plots
    from lit_gen.comparing.wandb_table import log_table

    out = Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    table = build_table(runs)
    blocks: list[Block] = [Heading(f"Comparison of {len(runs)} runs", 1)]
    if sweep is not None:
        blocks += _sweep_blocks(sweep, figures)
    blocks += [
        Heading("Runs"),
        Text("Bits/dim: -log2 P(x) per dimension, each pixel value of [-1, 1] a bin of width 2/255 (256 levels), the "
             "same convention for every family; bounds (ELBO, IWAE, VLB) are upper bounds on it. FID columns differ "
             "when their measuring protocol does (named in the title); a dash is a blank, its note says why."),
        Grid(table.columns, table.rows, table.notes),
        Heading("Plots"),
    ]
    drawn = [*plots.plot_losses(runs, figures), plots.plot_fid_vs_images(runs, figures),
             plots.plot_sample_grids(runs, figures), plots.plot_fid_vs_cost(runs, figures),
             plots.plot_rate_distortion(runs, figures)]
    for figure in drawn:
        blocks.append(Heading(figure.title, 3))
        blocks.append(Image(figure.path, figure.caption) if figure.path else Text(f"Not drawn: {figure.caption}."))
    markdown = out / "report.md"
    markdown.write_text(to_markdown(blocks, out))
    page = out / "report.html"
    page.write_text(to_html(blocks, f"lit_gen comparison of {len(runs)} runs"))
    written = {"markdown": markdown, "html": page}
    target = log_table(table, dict(os.environ) if environ is None else environ)
    if target:
        log.info("logged the comparison table to W&B run %s", target)
    return written


def _sweep_blocks(view, figures: Path) -> list[Block]:
    from lit_gen.comparing.sweeps import flat_params, param_importances, plot_parallel_coordinates

    blocks: list[Block] = [Heading(f"Sweep {view.name}"),
                           Text(f"Store {view.store}; trials sorted by {view.metric} ({view.goal}), best first.")]
    names = sorted({k for t in view.trials for k in flat_params(t.params)})
    rows = []
    for rank, trial in enumerate(view.trials, 1):
        params = flat_params(trial.params)
        value = trial.last_value
        rows.append([Cell(rank, str(rank)), Cell(trial.trial_id, trial.trial_id), Cell(trial.state, trial.state),
                     Cell(value, f"{value:.5g}") if value is not None else Cell(None, "", trial.attrs.get("reason") or
                                                                                "the trial reported no metric"),
                     *[Cell(params[n], str(params[n])) if n in params else Cell(None, "", "not set") for n in names]])
    blocks.append(Grid(["rank", "trial", "state", str(view.metric), *names], rows))
    path, caption = plot_parallel_coordinates(view, figures / "sweep_parallel.png")
    blocks.append(Image(path, caption) if path else Text(f"Parallel coordinates not drawn: {caption}."))
    importances, reason = param_importances(view)
    if importances:
        blocks.append(Grid(["parameter", f"importance for {view.metric}"],
                           [[Cell(k, k), Cell(v, f"{v:.3f}")] for k, v in importances.items()]))
        blocks.append(Text("Importances: Optuna's fANOVA evaluator (seed 0) over the complete trials; they sum to 1."))
    else:
        blocks.append(Text(f"No parameter importances: {reason}."))
    return blocks


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lit_gen.compare",
                                     description="Compare runs of any family: a Markdown + HTML report with plots.")
    parser.add_argument("runs", nargs="*", help="run folders (runs/<name>/<id>)")
    parser.add_argument("--glob", default=None, help="a glob of run folders, e.g. 'runs/*/*' (quote it)")
    parser.add_argument("--sweep", default=None, help="a sweep store (lit_gen.sweep --store): its trials and their runs")
    parser.add_argument("--out", default="comparison", help="output folder (default ./comparison)")
    measure = parser.add_argument_group("measuring what the runs lack")
    measure.add_argument("--measure", action="store_true",
                         help="compute sampling speed, reconstruction error and bits/dim where missing (kept in each run)")
    measure.add_argument("--refresh", action="store_true", help="with --measure: recompute even what is present")
    measure.add_argument("--split", default="test", choices=("train", "val", "test"), help="data split (default test)")
    measure.add_argument("--count", type=int, default=512, help="images for bits/dim (default 512; 0 = the whole split)")
    measure.add_argument("--bpd-samples", type=int, default=16, help="VAE importance samples k (default 16)")
    measure.add_argument("--bpd-terms", type=int, default=None, help="diffusion: L_t terms (default all T-1)")
    measure.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    from lit_gen.cli import setup_logging

    args = parse_args(argv)
    setup_logging()
    view = None
    paths = find_runs(args.runs, args.glob) if (args.runs or args.glob) else []
    if args.sweep:
        from lit_gen.comparing.sweeps import read_sweep

        view = read_sweep(args.sweep)
        paths += [p.resolve() for p in view.run_dirs if p.resolve() not in paths]
    if not paths and view is None:
        raise ConfigError("nothing to compare: pass run folders, --glob 'runs/*/*' or --sweep STORE")
    if args.count < 0 or args.bpd_samples < 1:
        raise ConfigError("--count must be >= 0 (0 = the whole split) and --bpd-samples >= 1")
    runs = [read_run(p) for p in paths]
    if args.measure:
        from lit_gen.comparing.measure import measure_run
        from lit_gen.metrics.sampling import pick_device

        device = pick_device(args.device)
        for run in runs:
            started = time.perf_counter()
            measure_run(run, device=device, split=args.split, count=args.count or None, samples=args.bpd_samples,
                        terms=args.bpd_terms, refresh=args.refresh)
            log.info("measured %s in %.1f s", run.label, time.perf_counter() - started)
    started = time.perf_counter()
    written = compare(runs, args.out, sweep=view)
    print(f"compared   {len(runs)} runs in {time.perf_counter() - started:.1f} s (report only)")
    for kind, path in written.items():
        print(f"{kind:<10} {path}")
    return 0
