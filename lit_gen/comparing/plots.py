"""The comparison's figures, one PNG each; a figure without data is not drawn (its reason is returned).

Wall time: the CSV log has steps, not clock times, so the time axis spreads each run's total
training seconds (``summary.json``) evenly over its steps; the caption says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lit_gen.comparing.collect import RunInfo
from lit_gen.comparing.table import latest_by_protocol, protocol_of

LOSS_COLUMNS = ("val/loss", "train/loss_epoch", "train/loss", "train/loss_step")


@dataclass
class Figure:
    """A drawn figure (``path``) or a missing one (``path`` None) with the reason in ``caption``."""

    title: str
    path: Path | None
    caption: str


def _figure(width: float = 6.5, height: float = 3.8):
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=(width, height), dpi=110)
    return figure, figure.add_subplot()


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path


def loss_curve(run: RunInfo) -> tuple[str, list[tuple[int, float]]] | None:
    for column in LOSS_COLUMNS:
        if run.curves.get(column):
            return column, sorted(run.curves[column])
    return None


def plot_losses(runs: list[RunInfo], folder: Path) -> list[Figure]:
    """Loss against steps and against (evenly spread) wall time, every run overlaid."""
    curves = [(run, loss_curve(run)) for run in runs]
    curves = [(run, c) for run, c in curves if c]
    if not curves:
        reason = "no run has a loss curve (metrics.csv)"
        return [Figure("Loss against steps", None, reason), Figure("Loss against wall time", None, reason)]
    out = []
    for axis in ("steps", "wall time"):
        figure, ax = _figure()
        drawn = 0
        for run, (column, points) in curves:
            steps, values = zip(*points)
            if axis == "wall time":
                if not run.seconds or not run.steps:
                    continue
                steps = [s * run.seconds / run.steps for s in steps]
            ax.plot(steps, values, label=f"{run.label} ({column})", marker="o" if len(steps) < 30 else None, markersize=3)
            drawn += 1
        if all(v > 0 for _, (_, points) in curves for _, v in points):
            ax.set_yscale("log")
        ax.set_xlabel("training step" if axis == "steps" else "wall time (s, run time spread evenly over steps)")
        ax.set_ylabel("loss (each family in its own units)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        name = "loss_steps.png" if axis == "steps" else "loss_wall_time.png"
        caption = ("Each family's loss is in its own units (VAE: negative ELBO in nats per image; DDPM: noise MSE; "
                   "prior: nats per code): compare shapes and runs of one family, not heights across families.")
        if axis == "wall time":
            caption += " Time per step is the run's total training time divided by its steps."
        out.append(Figure(f"Loss against {axis}", _save(figure, folder / name) if drawn else None,
                          caption if drawn else "no run has both a loss curve and a wall time"))
    return out


def _main_protocol(runs: list[RunInfo]):
    counts: dict[tuple, int] = {}
    for run in runs:
        for p in latest_by_protocol(run):
            counts[p] = counts.get(p, 0) + 1
    return max(counts, key=counts.get) if counts else None


def plot_fid_vs_images(runs: list[RunInfo], folder: Path) -> Figure:
    """FID (the protocol most runs share) against training images seen, one line per run."""
    protocol = _main_protocol(runs)
    title = "FID against training images seen"
    if protocol is None:
        return Figure(title, None, "no run has an FID record")
    figure, ax = _figure()
    for run in runs:
        batch = run.images_seen / run.steps if run.images_seen and run.steps else None
        points = sorted((r["global_step"] * batch, r["value"]) for r in run.fid_records
                        if protocol_of(r) == protocol and r.get("global_step") is not None and batch)
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=run.label)
    ax.set_xlabel("training images seen")
    ax.set_ylabel(protocol[0])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Figure(title, _save(figure, folder / "fid_images_seen.png"), f"{protocol[0]} with one protocol: real "
                  f"{protocol[2]}/{protocol[3]} N={protocol[4]}, generated N={protocol[5]}.")


def plot_fid_vs_cost(runs: list[RunInfo], folder: Path) -> Figure:
    """FID against the sampling cost (seconds per image with the default sampler)."""
    protocol = _main_protocol(runs)
    title = "FID against sampling cost"
    points = []
    for run in runs:
        record = latest_by_protocol(run).get(protocol) if protocol else None
        sampling = run.measures.get("sampling")
        if record and sampling and sampling.get("images_per_second"):
            points.append((1.0 / sampling["images_per_second"], record["value"], run.label))
    if not points:
        return Figure(title, None, "needs runs with both an FID record and a sampling measurement (--measure)")
    figure, ax = _figure()
    for cost, fid, label in points:
        ax.scatter([cost], [fid], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image (default sampler)")
    ax.set_ylabel(protocol[0])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Figure(title, _save(figure, folder / "fid_sampling_cost.png"), "Lower left is better.")


def quantizer_kind(record: dict) -> str:
    """A reconstruction record's quantizer as a short name: vq, vq + rotation, fsq, lfq."""
    section = record.get("quantizer") or {}
    name = section.get("name", "codes")
    return f"{name} + rotation" if section.get("rotation_trick") else name


def plot_rate_distortion(runs: list[RunInfo], folder: Path) -> Figure:
    """Reconstruction error against bits per image for the runs that code images (any quantizer).

    Runs of one family and quantizer kind with the same code count (seeds of one setting) are one point:
    their mean, with bars from the lowest to the highest run; a kind's code counts are joined by a line."""
    import statistics

    title = "Reconstruction against bits per image"
    groups: dict[tuple[str, str], dict[int, list[tuple[float, float]]]] = {}
    for run in runs:
        record = run.measures.get("reconstruction") or {}
        if record.get("mse") is None or record.get("entropy_bits_per_image") is None:
            continue
        series = (run.family, quantizer_kind(record))
        groups.setdefault(series, {}).setdefault(record["num_codes"], []).append(
            (record["entropy_bits_per_image"], record["mse"]))
    if not groups:
        return Figure(title, None, "needs runs of a VQ family measured with --measure (reconstruction and its codes)")
    figure, ax = _figure()
    several_families = len({family for family, _ in groups}) > 1
    for (family, kind), by_count in sorted(groups.items()):
        xs, ys, low, high = [], [], [], []
        for count in sorted(by_count):
            points = by_count[count]
            mses = [mse for _, mse in points]
            xs.append(statistics.fmean(bits for bits, _ in points))
            ys.append(statistics.fmean(mses))
            low.append(ys[-1] - min(mses))
            high.append(max(mses) - ys[-1])
        label = f"{family} {kind}" if several_families else kind
        ax.errorbar(xs, ys, yerr=[low, high], marker="o", markersize=4, capsize=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("bits per image (entropy of the codes on the split)")
    ax.set_ylabel("reconstruction MSE ([0, 1] pixels)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Figure(title, _save(figure, folder / "rate_distortion.png"),
                  "One point per quantizer and code count: the mean over its runs, bars from the lowest to the highest "
                  "run. Bits: entropy of the codes on the measured split (h * w * log2 K at face value is in the "
                  "table). Lower left is better.")


def plot_sample_grids(runs: list[RunInfo], folder: Path) -> Figure:
    """The runs' sample grids side by side: the fixed-seed grid of --measure, else the run's last grid."""
    from PIL import Image

    grids = []
    for run in runs:
        sampling = run.measures.get("sampling")
        measured = run.path / "measures" / sampling["grid"] if sampling and sampling.get("grid") else None
        if measured is not None and measured.is_file():
            grids.append((run.label, measured, f"seed {sampling['seed']}"))
        elif run.sample_grid is not None:
            grids.append((run.label, run.sample_grid, f"training grid, seed {run.config.get('seed')}"))
    title = "Samples side by side"
    if not grids:
        return Figure(title, None, "no run has a sample grid")
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=(2.4 * len(grids), 2.8), dpi=110)
    for i, (label, path, seed) in enumerate(grids):
        ax = figure.add_subplot(1, len(grids), i + 1)
        ax.imshow(Image.open(path).convert("RGB"))
        ax.set_title(f"{label}\n{seed}", fontsize=7)
        ax.axis("off")
    seeds = {seed for _, _, seed in grids}
    caption = "Every grid comes from the same seed." if len(seeds) == 1 else "Grids from different seeds: " + ", ".join(sorted(seeds))
    return Figure(title, _save(figure, folder / "samples.png"), caption)
