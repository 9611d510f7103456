"""Post-hoc EMA: build the weight average of any length from a run's power-EMA snapshots, after training.

    python -m lit_gen.ema runs/ddpm_digits16/<id> --sigma-rel 0.04,0.07,0.12
    python -m lit_gen.ema runs/ddpm_digits16/<id> --sigma-rel 0.03,0.05,0.07,0.10,0.15 --evaluate \\
        --feature classifier:weights/digits16_classifier.pt --num-samples 2000

The run must have trained with ``model.ema: {name: power, sigma_rels: [...], snapshot_every: N}``, which
saves every tracked average every N steps into ``<run>/ema/``. For each ``--sigma-rel`` this combines the
snapshots up to ``--step`` (default: the last) by least squares (``lit_gen.nn.post_hoc_ema``; Karras et al.
2024, EDM2, appendix C) and writes a checkpoint, ``<run>/ema/post_hoc/sigma_rel_<s>_step_<t>.ckpt``, that
``lit_gen.sample``, ``lit_gen.evaluate`` and ``lit_gen.compare`` load like any other: its EMA is the
synthesised average (``model.ema: {name: post_hoc, sigma_rel, step, sources, relative_error}``), and the
checkpoint records the snapshots and weights it was built from. A length the snapshots cannot reach (the
best combination's profile further than ``--max-error`` from the wanted one) is refused, naming the lengths
they do reach, before anything is written.

``--evaluate`` then measures each checkpoint as ``python -m lit_gen.evaluate`` does (same options, same
protocol record) and prints FID against sigma_rel; the records go to ``<out>/fid_vs_sigma_rel.json``.

As a sweep's trial program (an offline sweep over the length, no retraining), it takes the sweep engine's
arguments: ``--run-id T`` and ``sigma_rel=<value> run.output_dir=<dir> logger.group=<id>`` after the run
folder, and writes ``<dir>/ema_<run name>/<T>/metrics.jsonl`` and ``summary.json`` with the FID, the way a
fit does, so ``python -m lit_gen.sweep`` runs it and ``lit_gen.compare --sweep`` draws FID against sigma_rel.
See docs/post-hoc-ema.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from lit_gen.callbacks.ema_snapshots import read_snapshots
from lit_gen.checkpoints import load_model, read_checkpoint
from lit_gen.errors import EvaluationError
from lit_gen.metrics.reference import run_dir_of
from lit_gen.nn.post_hoc_ema import combine, gamma_of, synthesis

log = logging.getLogger("lit_gen.ema")
#: The largest relative L2 distance of a synthesised profile from the wanted one that is accepted.
MAX_ERROR = 0.05


def parse_args(argv: list[str]) -> argparse.Namespace:
    from lit_gen.metrics.yardstick import MAX_POINTS

    parser = argparse.ArgumentParser(prog="python -m lit_gen.ema", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run folder (runs/<name>/<id>) or a checkpoint inside it")
    parser.add_argument("sweep", nargs="*", metavar="KEY=VALUE",
                        help="a sweep trial's arguments: sigma_rel=<value>, run.output_dir=<dir>, logger.group=<id>")
    parser.add_argument("--sigma-rel", default=None, help="relative lengths, comma-separated (e.g. 0.04,0.07,0.12)")
    parser.add_argument("--step", type=int, default=None, help="use the snapshots up to this step (default: all)")
    parser.add_argument("--max-error", type=float, default=MAX_ERROR,
                        help=f"refuse a length whose synthesised profile is further than this from the wanted one, "
                             f"relative L2 (default {MAX_ERROR})")
    parser.add_argument("--out", default=None, help="folder of the checkpoints (default <run>/ema/post_hoc)")
    parser.add_argument("--run-id", default=None, help="a sweep trial's id (set by python -m lit_gen.sweep)")
    measure = parser.add_argument_group("--evaluate: FID of each length, as python -m lit_gen.evaluate measures it")
    measure.add_argument("--evaluate", action="store_true", help="measure each synthesised checkpoint")
    measure.add_argument("--num-samples", type=int, default=10000, help="generated images per length (default 10000)")
    measure.add_argument("--batch-size", type=int, default=256)
    measure.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every length (default 0)")
    measure.add_argument("--feature", default="inception", help="inception (default) | classifier:PATH")
    measure.add_argument("--fid-weights-path", default=None, help="Inception weights file")
    measure.add_argument("--real-split", default="test", choices=("train", "val", "test"))
    measure.add_argument("--data-root", default=None, help="dataset folder (default: the one in the run's config)")
    measure.add_argument("--memorization-points", type=int, default=MAX_POINTS)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return parser.parse_intermixed_args(argv)  # a sweep puts its KEY=VALUE arguments after the options


def sweep_arguments(pairs: list[str]) -> dict[str, str]:
    """The KEY=VALUE arguments a sweep trial gets, checked: sigma_rel, run.output_dir, logger.group."""
    known = ("sigma_rel", "run.output_dir", "logger.group")
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise EvaluationError(f"argument {pair!r}: a trial of an EMA-length sweep takes {', '.join(known)} "
                                  f"as KEY=VALUE; the sweep's parameter must be named sigma_rel")
        out[key] = value
    return out


def lengths(args: argparse.Namespace, sweep: dict[str, str]) -> list[float]:
    text = sweep.get("sigma_rel", args.sigma_rel)
    if text is None:
        raise EvaluationError("give the lengths to build: --sigma-rel 0.04,0.07,0.12 (or sigma_rel=<value> from a sweep)")
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise EvaluationError(f"--sigma-rel {text!r}: expected numbers separated by commas, e.g. 0.04,0.07") from None
    for value in values:
        if not 0 < value < 0.2886:
            raise EvaluationError(f"sigma_rel {value}: a relative length lies in (0, 0.2886) (0.2887 is a plain mean)")
    return values


def plan(snapshots: list[dict], step: int, wanted: list[float], max_error: float):
    """(sigma_rel, Synthesis) for every wanted length, or EvaluationError naming the ones out of reach."""
    sources = [(s["step"], profile["gamma"]) for s in snapshots for profile in s["profiles"]]
    plans = [(sigma_rel, synthesis(sources, step, gamma_of(sigma_rel))) for sigma_rel in wanted]
    far = [(s, p.relative_error) for s, p in plans if p.relative_error > max_error]
    if far:
        tracked = sorted({profile["sigma_rel"] for s in snapshots for profile in s["profiles"]})
        reach = [s for s in (0.02, 0.03, 0.04, 0.05, 0.07, 0.1, 0.12, 0.15, 0.2, 0.25)
                 if synthesis(sources, step, gamma_of(s)).relative_error <= max_error]
        missed = ", ".join(f"{s:g} (profile {100 * e:.1f}% off)" for s, e in far)
        raise EvaluationError(
            f"sigma_rel {missed}: the {len(snapshots)} snapshots of lengths {', '.join(map(str, tracked))} up to step "
            f"{step} cannot build it within {100 * max_error:g}%; of 0.02 .. 0.25 they reach "
            f"{', '.join(map(str, reach)) or 'none'} (track a profile nearer to it, or keep more snapshots)")
    return plans


def synthesised_checkpoint(state: dict, snapshots: list[dict], step: int, sigma_rel: float, built) -> dict:
    """A loadable checkpoint whose EMA is the average of length ``sigma_rel`` at ``step``."""
    averages = [profile["state_dict"] for s in snapshots for profile in s["profiles"]]
    weights = combine(averages, built.weights)
    hparams = dict(state["hyper_parameters"])
    hparams["ema"] = {"name": "post_hoc", "sigma_rel": sigma_rel, "step": step, "sources": len(averages),
                      "relative_error": round(built.relative_error, 6)}
    state_dict = {k: v for k, v in state["state_dict"].items() if not k.startswith("ema.")}
    state_dict.update({f"ema.averaged.{k}": v for k, v in weights.items()})
    return {"state_dict": state_dict, "hyper_parameters": hparams, "lit_gen": dict(state["lit_gen"]),
            "global_step": step, "epoch": state.get("epoch"),
            "post_hoc_ema": {"sigma_rel": sigma_rel, "step": step, "relative_error": built.relative_error,
                             "snapshots": [s["path"] for s in snapshots],
                             "weights": [{"snapshot": s["path"], "sigma_rel": profile["sigma_rel"], "weight": w}
                                         for (s, profile), w in zip(((s, p) for s in snapshots for p in s["profiles"]),
                                                                    built.weights)]}}


def main(argv: list[str]) -> int:
    from lit_gen.cli import setup_logging

    args = parse_args(argv)
    setup_logging()
    sweep = sweep_arguments(args.sweep)
    wanted = lengths(args, sweep)
    run = Path(args.run)
    run = run_dir_of(run) if run.is_file() else run
    last = run / "checkpoints" / "last.ckpt"
    state = read_checkpoint(last)
    snapshots = read_snapshots(run / "ema", up_to=args.step)
    if not snapshots:
        raise EvaluationError(f"{run / 'ema'} holds no snapshots up to step {args.step or 'the last'}: train with "
                              "model.ema={name: power, sigma_rels: [0.05, 0.10], snapshot_every: N} to keep them")
    step = snapshots[-1]["step"]
    started = time.perf_counter()
    plans = plan(snapshots, step, wanted, args.max_error)
    out = Path(args.out) if args.out else run / "ema" / "post_hoc"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for sigma_rel, built in plans:
        path = out / f"sigma_rel_{sigma_rel:.3f}_step_{step:09d}.ckpt"
        torch.save(synthesised_checkpoint(state, snapshots, step, sigma_rel, built), path)
        written.append((sigma_rel, built, path, step))
        print(f"sigma_rel {sigma_rel:.3f}  from {len(snapshots)} snapshots x {len(snapshots[0]['profiles'])} profiles, "
              f"profile {100 * built.relative_error:.2f}% off  -> {path}")
    log.info("synthesis took %.2f s", time.perf_counter() - started)
    if not args.evaluate:
        return 0
    return evaluate_lengths(args, run, written, sweep)


def evaluate_lengths(args: argparse.Namespace, run: Path, written: list, sweep: dict[str, str]) -> int:
    """FID of each synthesised checkpoint (lit_gen.evaluate's protocol), printed against sigma_rel and recorded."""
    from lit_gen.commands.evaluate import evaluate_model
    from lit_gen.metrics.features import build_extractor
    from lit_gen.metrics.reference import datamodule_for_checkpoint
    from lit_gen.metrics.sampling import pick_device

    device = pick_device(args.device)
    extractor = build_extractor(args.feature, fid_weights_path=args.fid_weights_path, device=device)
    rows = []
    for sigma_rel, built, path, step in written:
        model = load_model(path, map_location=device)
        datamodule, name = datamodule_for_checkpoint(run / "checkpoints" / "last.ckpt", data_root=args.data_root)
        datamodule.prepare_data()
        record = evaluate_model(model, datamodule, name, extractor, num_samples=args.num_samples,
                                batch_size=args.batch_size, seed=args.seed, real_split=args.real_split,
                                checkpoint=str(path), global_step=step, kid=False,
                                memorization_points=args.memorization_points)
        rows.append({"sigma_rel": sigma_rel, "relative_error": built.relative_error, **record.to_dict()})
        print(f"sigma_rel {sigma_rel:.3f}  {record.metric} {record.value:.4f}")
    out = path.parent / "fid_vs_sigma_rel.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"record     {out}")
    if "run.output_dir" in sweep:
        write_trial(Path(sweep["run.output_dir"]), f"ema_{run.parent.name}", args.run_id or "trial", rows[-1])
    return 0


def write_trial(output_dir: Path, name: str, run_id: str, row: dict) -> Path:
    """A sweep trial's run folder, as lit_gen.fit leaves one: metrics.jsonl then summary.json (its end)."""
    folder = output_dir / name / run_id
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"fid": row["value"], row["metric"]: row["value"], "sigma_rel": row["sigma_rel"], "step": row["global_step"]}
    (folder / "metrics.jsonl").write_text(json.dumps(metrics) + "\n")
    (folder / "summary.json").write_text(json.dumps({"metrics": metrics, "sigma_rel": row["sigma_rel"],
                                                     "checkpoint": row["checkpoint"]}, indent=2) + "\n")
    return folder
