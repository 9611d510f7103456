"""Post-hoc EMA against chosen-in-advance EMAs: FID of the best length built after training, paired over seeds.

    python -m bench.post_hoc_ema                        # the 16x16 recipe, 830 steps, 3 seeds
    python -m bench.post_hoc_ema --quick                # 100 steps, 1 seed of each: a smoke run
    python -m bench.post_hoc_ema --config configs/ddpm_mnist.yaml --data-root data --steps 3000 --threads 2

Arms, each trained through ``lit_gen.fit`` as a user runs it, for the same number of optimizer steps
(830: what 240 s of the whole fit gave the 16x16 recipe on 2 threads; matching steps keeps the result
independent of the machine's load), on the yardstick's training digits (``bench.yardstick``):

- ``post_hoc``: the recipe with ``model.ema={name: power, sigma_rels: [0.05, 0.10], snapshot_every: steps/10}``,
  ``--seeds`` runs. After training ``lit_gen.ema`` builds the average of every length in ``LENGTHS`` from
  each run's snapshots; each is judged. The best length is the one of lowest mean held-out FID over the
  seeds (chosen on these runs, which favours post-hoc EMA: the record says so).
- ``default``: the recipe as shipped (its exponential EMA), ``--seeds`` runs.
- ``grid``: the recipe with exponential EMAs whose averaging lengths 1 / (1 - decay) are the shares ``GRID`` of
  the run (no warm-up: within a short run the warm-up's cap (1 + n) / (10 + n) would make every decay alike),
  one run each (seed 0). Where the best sits on an edge of the grid, ``EXTENSIONS`` more shares past that
  edge run (halving below it, doubling above it), so the grid arm is the exponential EMA at its best rather
  than at our guess. The grid's best decay then runs the other seeds (its seed-0 run is the grid's).

Samples: the config's default sampler, sampling seed 1000 + training seed, as many as the yardstick holds
out. Judged by ``bench.yardstick`` (held-out FID for the verdicts; training FID, precision/recall,
memorisation and haze recorded). Targets, paired by training seed (``bench.stats.paired_log_ratio``):
FID(best post-hoc length) / FID(default) <= 1 and / FID(grid best) <= 1. Recorded too: FID against
sigma_rel with its spread over seeds, the disk per snapshot and per run, and the seconds of a synthesis.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from bench.common import CACHE, REPO, Recorder, base_parser, sample_in_chunks, setup, worker_run
from bench.stats import mean_sd, paired_log_ratio
from bench.yardstick import Yardstick

CONFIG = "configs/ddpm_digits16.yaml"
STEPS = 830
#: The relative lengths built after training (EDM2's range around its tracked pair).
LENGTHS = (0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.16, 0.20)
#: The grid's exponential EMAs: averaging lengths 1 / (1 - decay) as shares of the run (as many as the
#: post-hoc arm's training runs; ``EXTENSIONS`` more where the best sits on an edge).
GRID = (0.1, 0.25, 0.6)
#: Shares run past the grid's edge where its best sits, all at once (side by side with ``--jobs``).
EXTENSIONS = 2


def beyond_edge(shares: list[float], best: float) -> list[float]:
    """The ``EXTENSIONS`` shares past the edge of ``shares`` where ``best`` sits (halving below the shortest,
    doubling above the longest, never past the whole run); none when ``best`` is inside the grid."""
    shares = sorted(shares)
    if best == shares[0]:
        return [round(best / 2 ** k, 6) for k in range(1, EXTENSIONS + 1)]
    if best == shares[-1] and best < 1.0:
        return sorted({min(1.0, round(best * 2 ** k, 6)) for k in range(1, EXTENSIONS + 1)})
    return []


def grid_decay(share: float, steps: int) -> float:
    """The decay whose averaging length 1 / (1 - decay) is ``share`` of ``steps``."""
    return round(1.0 - 1.0 / (share * steps), 6)


def power_overrides(steps: int) -> list[str]:
    return [f"model.ema={{name: power, sigma_rels: [0.05, 0.10], snapshot_every: {max(1, steps // 10)}}}"]


def judge_checkpoint(path: Path, yardstick: Yardstick, num_samples: int, seed: int) -> dict:
    from lit_gen.checkpoints import load_model

    model = load_model(path, map_location="cpu").eval()
    images = sample_in_chunks(model, num_samples, 1000 + seed)
    return yardstick.judge((images.clamp(0, 1) * 255).round() / 255.0, seed=seed)


def post_hoc_lengths(run_dir: Path, yardstick: Yardstick, num_samples: int, seed: int, out: Path) -> tuple[dict, dict]:
    """Every length of LENGTHS the snapshots reach, synthesised and judged; and the costs."""
    from lit_gen.callbacks.ema_snapshots import read_snapshots
    from lit_gen.checkpoints import read_checkpoint
    from lit_gen.commands.ema import plan, synthesised_checkpoint
    from lit_gen.errors import EvaluationError

    snapshots = read_snapshots(run_dir / "ema")
    step = snapshots[-1]["step"]
    state = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    judged, seconds = {}, []
    for sigma_rel in LENGTHS:
        try:
            started = time.perf_counter()
            (_, built), = plan(snapshots, step, [sigma_rel], 0.05)
            checkpoint = synthesised_checkpoint(state, snapshots, step, sigma_rel, built)
            seconds.append(time.perf_counter() - started)
        except EvaluationError:  # out of the snapshots' reach: no value, said so in the record
            continue
        path = out / f"sigma_rel_{sigma_rel:.3f}.ckpt"
        torch.save(checkpoint, path)
        judged[sigma_rel] = {**judge_checkpoint(path, yardstick, num_samples, seed),
                             "relative_error": round(built.relative_error, 5)}
    files = sorted((run_dir / "ema").glob("snapshot_*.pt"))
    costs = {"snapshots": len(files), "snapshot_mib": round(files[-1].stat().st_size / 2**20, 3) if files else None,
             "run_mib": round(sum(f.stat().st_size for f in files) / 2**20, 3),
             "synthesis_seconds_median": round(sorted(seconds)[len(seconds) // 2], 3) if seconds else None}
    return judged, costs


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=CONFIG, help=f"the diffusion config (default {CONFIG})")
    parser.add_argument("--data-root", default=None, help="dataset folder (MNIST's files)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds (default 3; the interval needs 3)")
    parser.add_argument("--steps", type=int, default=None, help=f"optimizer steps per run (default {STEPS}, quick 100)")
    parser.add_argument("--num-samples", type=int, default=None, help="samples per judged model (default: the held-out count)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2)")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (default 1; steps are matched, not time)")
    parser.add_argument("--keep", default=str(CACHE / "post_hoc_ema"), help="folder for runs and checkpoints")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the runs an interrupted invocation finished in --keep (same settings); the record says which")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or args.threads < 1:
        raise SystemExit("--seeds, --jobs and --threads must be at least 1")
    setup()
    from lit_gen.config import load_config

    cfg = load_config(REPO / args.config)
    seeds = 1 if args.quick else args.seeds
    steps = 100 if args.quick else args.steps or STEPS
    from lit_gen import registry

    resolution = cfg.data["image_size"] or registry.resolve("data", cfg.data["name"]).native_image_size
    yardstick = Yardstick.build(cfg.data["name"], resolution, data_root=args.data_root)
    num_samples = args.num_samples or (200 if args.quick else yardstick.n)
    rec = Recorder("post_hoc_ema", f"post-hoc EMA against the default and a grid of exponential EMAs, {args.config}, "
                   f"{steps} steps, {seeds} seeds")
    workdir = Path(args.keep)
    if workdir.exists() and not args.resume:
        shutil.rmtree(workdir)
    extra = [f"data.root={args.data_root}"] if args.data_root else []

    def train(arm: str, seed: int, overrides: list[str]) -> dict:
        folder = workdir / arm / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"arm": arm, "seed": seed, "overrides": [*extra, *overrides], "steps": steps, "num_samples": num_samples,
                "threads": args.threads, "dir": str(folder), "config": args.config, "sampler": {}}
        result = worker_run(folder, spec, "bench.ablations", args.threads, 4 * 3600, f"{arm} seed {seed}", args.resume)
        print(f"  {arm} seed {seed}: {result['steps_done']} steps, {result['seconds_per_step']:.3f} s/step, "
              f"load {result['load_average_before']}{' (reused)' if result.get('reused') else ''}", flush=True)
        return {**result, "folder": str(folder)}

    def judged_run(arm: str, seed: int, overrides: list[str]) -> dict:
        result = train(arm, seed, overrides)
        images = torch.load(result["samples"], weights_only=True)["images"].float() / 255.0
        return {**result, **yardstick.judge(images, seed=seed)}

    def post_hoc_run(seed: int) -> tuple[dict, dict, dict]:
        result = train("post_hoc", seed, power_overrides(steps))
        run_dir = next(Path(result["folder"]).rglob("last.ckpt")).parent.parent
        lengths_dir = Path(result["folder"]) / "lengths"
        lengths_dir.mkdir(exist_ok=True)
        judged, cost = post_hoc_lengths(run_dir, yardstick, num_samples, seed, lengths_dir)
        return {**result, "lengths": judged}, judged, cost

    def exponential(decay: float) -> list[str]:
        return [f"model.ema={{name: exponential, decay: {decay}, warmup: false}}"]

    runs: dict[str, dict[int, dict]] = {"default": {}, "post_hoc": {}, "grid_best": {}}
    lengths: dict[int, dict] = {}
    costs: dict[int, dict] = {}
    decays = {grid_decay(share, steps): share for share in GRID}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        # The grid first: its best decay decides the runs that close the queue.
        grid_jobs = {decay: pool.submit(judged_run, f"grid_{decay:g}", 0, exponential(decay)) for decay in decays}
        post_hoc_jobs = {seed: pool.submit(post_hoc_run, seed) for seed in range(seeds)}
        default_jobs = {seed: pool.submit(judged_run, "default", seed, []) for seed in range(seeds)}
        grid = {decay: {**job.result(), "share": decays[decay]} for decay, job in grid_jobs.items()}
        best_decay = min(grid, key=lambda d: grid[d]["fid"])
        extended = {grid_decay(share, steps): share for share in beyond_edge(list(decays.values()), decays[best_decay])}
        if extended:
            decays.update(extended)
            extension_jobs = {decay: pool.submit(judged_run, f"grid_{decay:g}", 0, exponential(decay)) for decay in extended}
            grid.update({decay: {**job.result(), "share": extended[decay]} for decay, job in extension_jobs.items()})
            best_decay = min(grid, key=lambda d: grid[d]["fid"])
        runs["grid_best"][0] = grid[best_decay]
        best_jobs = {seed: pool.submit(judged_run, "grid_best", seed, exponential(best_decay)) for seed in range(1, seeds)}
        for seed in range(seeds):
            runs["post_hoc"][seed], lengths[seed], costs[seed] = post_hoc_jobs[seed].result()
            runs["default"][seed] = default_jobs[seed].result()
        for seed, job in best_jobs.items():
            runs["grid_best"][seed] = job.result()

    reached = [s for s in LENGTHS if all(s in lengths[seed] for seed in range(seeds))]
    curve = {s: {"fids": [lengths[seed][s]["fid"] for seed in range(seeds)]} for s in reached}
    for s, row in curve.items():
        row["mean"], row["sd"] = (round(v, 3) for v in mean_sd(row["fids"]))
    best = min(reached, key=lambda s: curve[s]["mean"])
    post_hoc = curve[best]["fids"]
    default = [runs["default"][seed]["fid"] for seed in range(seeds)]
    grid_best = [runs["grid_best"][seed]["fid"] for seed in range(seeds)]
    for name, reference in (("the default exponential EMA", default), (f"the grid's best decay ({best_decay:g})", grid_best)):
        interval = paired_log_ratio(post_hoc, reference)
        rec.target(f"FID post-hoc EMA at its best length ({best:g}) / FID {name}", interval.estimate, "<=", 1.0, "x",
                   interval=interval)
    for arm, values in (("post-hoc, best length", post_hoc), ("default", default), ("grid best", grid_best)):
        mean, sd = mean_sd(values)
        rec.headline[f"FID {arm}"] = f"{mean:.2f} ± {sd:.2f} held out (n={len(values)})"
    rec.headline["FID against sigma_rel (mean ± sd over seeds)"] = ", ".join(
        f"{s:g}: {row['mean']:.2f} ± {row['sd']:.2f}" for s, row in curve.items())
    rec.headline["exponential grid (seed 0)"] = ", ".join(f"{d:g}: {g['fid']:.2f}" for d, g in grid.items())
    rec.headline["cost"] = (f"{costs[0]['snapshot_mib']} MiB a snapshot (both profiles), {costs[0]['run_mib']} MiB a run "
                            f"({costs[0]['snapshots']} snapshots), {costs[0]['synthesis_seconds_median']} s a synthesis")
    rec.notes.append("the best post-hoc length and the grid's best decay are chosen on these very runs; the targets pair "
                     "each seed's post-hoc value with the same seed's reference run")
    if extended:
        rec.notes.append(f"the grid's first best decay sat on its edge, so shares {', '.join(f'{s:g}' for s in extended.values())} "
                         "of the run were added past that edge (seed 0)")
    if best_decay in (min(grid), max(grid)):
        rec.notes.append(f"the grid's best decay ({best_decay:g}) lies on the grid's edge"
                         + (" even after its extension" if extended else "")
                         + ": a decay beyond it, not run here, might score better, so the grid arm may be weaker "
                         "than the best exponential EMA")
    if args.jobs > 1:
        rec.notes.append(f"{args.jobs} runs went side by side ({args.threads} thread(s) each): the steps are matched, "
                         "so only the seconds per step (recorded, not compared) feel it")
    reused = [f"{arm} seed {seed}" for arm, by_seed in runs.items() for seed, r in by_seed.items() if r.get("reused")]
    reused += [f"grid decay {decay:g} seed 0" for decay, r in grid.items() if r.get("reused")]
    if reused:
        rec.notes.append("runs finished by an earlier, interrupted invocation with the same settings and reused here "
                         "(--resume): " + ", ".join(sorted(set(reused))))
    rec.numbers.update(config=args.config, steps=steps, seeds=seeds, threads=args.threads, jobs=args.jobs, num_samples=num_samples, lengths=list(LENGTHS),
                       grid=dict(sorted((share, decay) for decay, share in decays.items())), best_length=best, best_decay=best_decay, curve=curve, costs=costs,
                       floors=yardstick.floors(num_samples), runs=runs, grid_runs=grid,
                       unreachable=[s for s in LENGTHS if s not in reached])
    path = rec.write(args.out)
    rec.report(path)


if __name__ == "__main__":
    main()
