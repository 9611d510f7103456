"""Fewer sampling steps: DDPM-1000 (ancestral) against DDIM-50 and DDIM-100 on a trained digits DDPM.

    python -m bench.sampling                         # trains the DDPM quickstart first (or reuses it)
    python -m bench.sampling --ckpt runs/ddpm_digits/<id>/checkpoints/last.ckpt --num-samples 2000
    python -m bench.sampling --quick --ckpt runs/bench/peer/lit_gen/ddpm_digits/peer/checkpoints/last.ckpt

Without ``--ckpt`` the eps digits model (``python -m lit_gen.fit --config configs/ddpm_digits.yaml``, W&B off,
on the yardstick's training digits) trains into ``runs/bench/`` and is reused by later runs (``--retrain``
trains again); its FID with DDIM-50 is recorded as its FID.

The three samplers draw the same number of images from generators with the same seed, a batch of
each in turn (so the load of the machine hits all three alike); time ratios are medians over
those rounds. FID: ``bench.yardstick`` at the checkpoint's resolution (a classifier trained at it), against
the 423 digits held out from training (the checkpoint must have trained on the yardstick's training
digits: ``data.train_split=train data.seed=0``); real training digits at the same N against the same
reference are recorded as the floor a perfect model would reach.
Targets: FID(DDIM-50) within 15% of FID(DDPM-1000), at least 15x less time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.common import CACHE, REPO, Recorder, base_parser, child_env, median, setup, sync
from bench.stats import paired_median_ratio, ratio_of_means
from bench.yardstick import TRAIN_OVERRIDES, Yardstick

SAMPLERS = {"ddpm1000": {"sampler": "ddpm", "steps": 1000}, "ddim50": {"sampler": "ddim", "steps": 50},
            "ddim100": {"sampler": "ddim", "steps": 100},
            # Not in lit_gen: DDIM-50 over Song et al.'s quadratic timestep spacing (their CIFAR-10 choice), built
            # here from lit_gen's schedule to see whether the spacing is what limits DDIM-50.
            "ddim50_quadratic": {"sampler": "ddim", "steps": 50, "spacing": "quadratic"},
            # Optional (--samplers ... ddim200): how close the deterministic sampler gets with many steps.
            "ddim200": {"sampler": "ddim", "steps": 200}}
DEFAULT_SAMPLERS = ["ddpm1000", "ddim50", "ddim100", "ddim50_quadratic"]
FID_TOLERANCE = 1.15
SPEEDUP = 15.0


def train_quickstart(epochs: int | None, threads: int, retrain: bool) -> tuple[Path, dict]:
    """The ddpm_digits quickstart's last.ckpt and summary (trained now, or reused from an earlier run)."""
    run_id = "quickstart" if epochs is None else f"quickstart-{epochs}ep"
    run_dir = CACHE / "ddpm_digits" / run_id
    summary_path = run_dir / "summary.json"
    if summary_path.is_file() and not retrain:
        return run_dir / "checkpoints" / "last.ckpt", {**json.loads(summary_path.read_text()), "reused": True}
    command = [sys.executable, "-m", "lit_gen.fit", "--config", "configs/ddpm_digits.yaml", "--run-id", run_id,
               "--resume", "never", "logger.wandb=false", f"run.output_dir={CACHE}", "eval.report=false", *TRAIN_OVERRIDES]
    if epochs is not None:
        command.append(f"trainer.max_epochs={epochs}")
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    print(f"training the DDPM quickstart ({' '.join(command[1:])}) ...", flush=True)
    result = subprocess.run(command, cwd=REPO, env=child_env(OMP_NUM_THREADS=str(threads)), capture_output=True, text=True)
    if result.returncode != 0 or not summary_path.is_file():
        raise SystemExit(f"training the quickstart failed:\n{result.stderr[-3000:]}")
    return run_dir / "checkpoints" / "last.ckpt", {**json.loads(summary_path.read_text()), "reused": False,
                                                   "command": " ".join(["python", *command[1:]])}


def quadratic_schedule(schedule, steps: int):
    """``schedule`` kept at Song et al.'s quadratic timesteps (t_i ~ (i * sqrt(0.8 T) / (steps - 1))^2)."""
    from lit_gen.diffusion.schedule import NoiseSchedule

    T = len(schedule)
    kept = torch.unique((torch.linspace(0, (0.8 * T) ** 0.5, steps, dtype=torch.float64) ** 2).round().long())
    alphas_cumprod = torch.cumprod(1.0 - schedule.betas.detach().cpu().double(), dim=0)[kept]
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    return NoiseSchedule.from_betas(1.0 - alphas_cumprod / previous, schedule.timestep_map.cpu()[kept]).to(schedule.betas.device)


@torch.no_grad()
def quadratic_batches(model, n: int, batch_size: int, generator: torch.Generator, steps: int):
    """DDIM (eta 0, EMA weights, x0 clipped) over the quadratic spacing, through lit_gen's own DDIM."""
    from lit_gen.diffusion.objectives import VPObjective
    from lit_gen.diffusion.samplers import sample
    from lit_gen.models.base import to_unit_range

    objective = VPObjective.from_schedule(quadratic_schedule(model.objective.schedule, steps), model.objective.prediction)
    net = model.ema.averaged if model.ema is not None else model.unet
    net.eval()
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        x = sample(lambda x, t: net(x, t), objective, (b, *model.diffusion_shape), sampler="ddim", clip_x0=True,
                   generator=generator)
        done += b
        yield to_unit_range(x)


def compare(model, extractor, reference, num_samples: int, batch_size: int, seed: int, names: list[str]) -> dict:
    """Generate with each sampler a batch at a time, in turn; stream features; time each batch."""
    from lit_gen.metrics.fid import FeatureMoments, frechet_distance_of
    from lit_gen.metrics.sampling import generate_batches

    def stream(options: dict):
        generator = torch.Generator().manual_seed(seed)
        if options.get("spacing") == "quadratic":
            return quadratic_batches(model, num_samples, batch_size, generator, options["steps"])
        return generate_batches(model, num_samples, batch_size, generator, options)

    streams = {name: stream(SAMPLERS[name]) for name in names}
    moments = {name: FeatureMoments(extractor.num_features) for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in names}
    rounds = 0
    while True:
        order = list(names) if rounds % 2 == 0 else list(reversed(names))
        produced = False
        for name in order:
            started, cpu_started = time.perf_counter(), time.thread_time()
            images = next(streams[name], None)
            if images is None:
                continue
            sync(images.device)
            seconds[name].append(time.perf_counter() - started)
            cpu_seconds[name].append(time.thread_time() - cpu_started)
            moments[name].update(extractor.extract(images).features)
            produced = True
        if not produced:
            break
        rounds += 1
        print(f"  round {rounds}: " + ", ".join(f"{n} {s[-1]:.1f} s" for n, s in seconds.items()), flush=True)
    # With one thread on a CPU, the sampling thread's CPU time is immune to other jobs' preemption, which
    # otherwise hits a 10-minute DDPM-1000 batch and a 30-second DDIM batch very differently.
    on_cpu = next(model.parameters()).device.type == "cpu" and torch.get_num_threads() == 1
    basis = cpu_seconds if on_cpu else seconds
    out = {"time_basis": "CPU time of the sampling thread" if on_cpu else "wall time"}
    for name in names:
        out[name] = {**SAMPLERS[name], "fid": round(frechet_distance_of(reference, moments[name].stats()), 3),
                     "seconds": round(sum(seconds[name]), 1), "cpu_seconds": round(sum(cpu_seconds[name]), 1),
                     "seconds_per_batch": [round(s, 3) for s in seconds[name]],
                     "cpu_seconds_per_batch": [round(s, 3) for s in cpu_seconds[name]], "images": moments[name].count}
    for name in (n for n in names if n != "ddpm1000" and "ddpm1000" in names):
        out[name]["speedup_vs_ddpm1000"] = round(median([a / b for a, b in zip(basis["ddpm1000"], basis[name])]), 2)
        out[name]["speedup_wall"] = round(median([a / b for a, b in zip(seconds["ddpm1000"], seconds[name])]), 2)
        out[name]["fid_ratio_vs_ddpm1000"] = round(out[name]["fid"] / out["ddpm1000"]["fid"], 3)
    return out


def pool_seeds(per_seed: dict[int, dict], names: list[str]) -> dict:
    """One row per sampler over all seeds: FID mean and values, pooled per-batch times, median time ratios."""
    first = next(iter(per_seed.values()))
    basis_key = "cpu_seconds_per_batch" if first["time_basis"].startswith("CPU") else "seconds_per_batch"
    out: dict = {"time_basis": first["time_basis"], "basis_key": basis_key}
    for name in names:
        rows = [r[name] for r in per_seed.values()]
        fids = [r["fid"] for r in rows]
        out[name] = {**SAMPLERS[name], "fid": round(sum(fids) / len(fids), 3), "fids": fids,
                     "seconds": round(sum(r["seconds"] for r in rows), 1), "images": sum(r["images"] for r in rows),
                     "seconds_per_batch": [t for r in rows for t in r["seconds_per_batch"]],
                     "cpu_seconds_per_batch": [t for r in rows for t in r["cpu_seconds_per_batch"]]}
    for name in (n for n in names if n != "ddpm1000" and "ddpm1000" in names):
        ref, row = out["ddpm1000"], out[name]
        row["speedup_vs_ddpm1000"] = round(median([a / b for a, b in zip(ref[basis_key], row[basis_key])]), 2)
        row["speedup_wall"] = round(median([a / b for a, b in zip(ref["seconds_per_batch"], row["seconds_per_batch"])]), 2)
        row["fid_ratio_vs_ddpm1000"] = round(row["fid"] / ref["fid"], 3)
    return out


def explain_fid(results: dict, floor: float, num_samples: int) -> str:
    """The numbers behind a DDIM-50 miss, every one measured by this run (no sentence of an earlier run)."""
    d50, ddpm = results["ddim50"], results["ddpm1000"]
    parts = [f"DDIM-50 {d50['fid']:.2f} vs DDPM-1000 {ddpm['fid']:.2f} ({num_samples} samples per sampler and seed; real "
             f"training digits against the same reference: {floor:.2f})"]
    for name in ("ddim100", "ddim200", "ddim50_quadratic"):
        if name in results:
            r = results[name]
            parts.append(f"{name} scores {r['fid']:.2f} (x{r['fid_ratio_vs_ddpm1000']:.2f})")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=None, help="a digits DDPM checkpoint (default: train or reuse the quickstart)")
    parser.add_argument("--num-samples", type=int, default=None, help="images per sampler (default 1000, quick 100)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per sample() call (default 250, quick 50)")
    parser.add_argument("--epochs", type=int, default=None, help="train the quickstart for this many epochs (default: the config's 60)")
    parser.add_argument("--retrain", action="store_true", help="train the quickstart again even if runs/bench has it")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="first sampling seed (default 0)")
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds per sampler (default 3; the interval needs 3)")
    parser.add_argument("--samplers", nargs="+", default=DEFAULT_SAMPLERS, choices=list(SAMPLERS),
                        help="which samplers to compare (the targets need ddpm1000 and ddim50)")
    args = parser.parse_args(argv)
    setup()
    torch.set_num_threads(args.threads)
    num_samples = args.num_samples or (100 if args.quick else 1000)
    # At least 10 interleaved batch pairs over the seeds for the time interval (bench.stats.MIN_PAIRS).
    batch_size = args.batch_size or (25 if args.quick else 250)
    rec = Recorder("sampling", "digits DDPM: DDPM-1000 vs DDIM-50/100, time and FID against held-out digits")

    if args.ckpt:
        checkpoint, training = Path(args.ckpt), {"checkpoint_given": args.ckpt}
    else:
        checkpoint, training = train_quickstart(args.epochs, args.threads, args.retrain)
    from lit_gen.checkpoints import load_model
    from lit_gen.metrics.yardstick import stats_of

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(checkpoint, map_location=device).eval()
    yardstick = Yardstick.build("digits", model.diffusion_shape[-1])
    extractor = yardstick.extractor.to(device)
    reference = stats_of(yardstick.heldout_features)  # the digits the checkpoint never trained on
    floor = yardstick.floors(num_samples)["fid_heldout"]

    seeds = [args.seed + i for i in range(args.seeds)]
    per_seed = {seed: compare(model, extractor, reference, num_samples, batch_size, seed, args.samplers) for seed in seeds}
    results = pool_seeds(per_seed, args.samplers)
    rec.numbers.update(checkpoint=str(checkpoint), training=training, samplers=results, per_seed=per_seed, device=str(device),
                       fid_protocol={"features": f"digits domain classifier ({yardstick.classifier.relative_to(REPO)})",
                                     "reference": f"digits val + test splits, held out from training ({reference.count})",
                                     "generated_per_sampler_and_seed": num_samples, "batch_size": batch_size, "seeds": seeds,
                                     "weights": "EMA", "floors": yardstick.floors(num_samples)})
    trained = training if "global_step" in training else None
    if trained and "ddim50" in results:
        label = "quickstart" if args.epochs is None else f"ddpm_digits trained {args.epochs} epochs,"
        rec.headline[f"{label} FID (DDIM-50)"] = (f"{results['ddim50']['fid']:.2f} after {trained['global_step']} steps "
                                                    f"({trained['seconds']:.0f} s of training)")
    for name in args.samplers:
        r = results[name]
        rec.headline[f"{name} FID, time"] = (f"{r['fid']:.2f}, {r['seconds']:.0f} s for {r['images']} images"
                                             + (f" (FID x{r['fid_ratio_vs_ddpm1000']:.2f}, {r['speedup_vs_ddpm1000']:.1f}x faster "
                                                "than DDPM-1000)" if "speedup_vs_ddpm1000" in r else ""))
    rec.headline["real-data floor (training digits against the held-out ones, same N)"] = f"{floor:.2f}"
    rec.fid_varies = ("sampler", "steps", "eta")
    for seed, seed_results in per_seed.items():
        for name in args.samplers:
            r = seed_results[name]
            rec.add_fid_value(name, seed, r["fid"], yardstick.protocol("heldout", sampler=r["sampler"], steps=r["steps"],
                                                                       generated_count=r["images"]), yardstick.feature())
    if "ddpm1000" in results and "ddim50" in results:
        d50, basis = results["ddim50"], results["basis_key"]
        rec.target("FID(DDIM-50) / FID(DDPM-1000)", d50["fid_ratio_vs_ddpm1000"], "<=", FID_TOLERANCE, "x",
                   explain_fid(results, floor, num_samples),
                   interval=ratio_of_means(d50["fids"], results["ddpm1000"]["fids"]))
        rec.target("time DDPM-1000 / DDIM-50", d50["speedup_vs_ddpm1000"], ">=", SPEEDUP, "x",
                   f"median time ratio {d50['speedup_vs_ddpm1000']:.1f}x over {len(d50[basis])} interleaved batches",
                   interval=paired_median_ratio(results["ddpm1000"][basis], d50[basis]))
    rec.notes.append(f"torch threads {torch.get_num_threads()}; samplers interleaved batch by batch in one process; "
                     f"speed-ups from {results['time_basis']} (wall-time ratios recorded too); FIDs are means over "
                     f"{len(seeds)} sampling seeds (per-seed values in the fid entries).")
    if args.quick and args.ckpt:
        rec.notes.append("quick mode on a given checkpoint: the quickstart's own FID is recorded by the full run "
                         "(python -m bench.sampling).")
    path = rec.write(args.out)
    rec.report(path)


if __name__ == "__main__":
    main()
