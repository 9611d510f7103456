"""Few-step samplers against each checkpoint's own 50-step sampler, paired over training seeds.

    python -m bench.few_step                                   # the 16x16 checkpoints bench.diffusers_peer kept
    python -m bench.few_step --runs runs/bench/peer --out bench/results/few_step_8.json   # the 8x8 ones
    python -m bench.few_step --runs runs/bench/peer16 --arms lit_gen lit_gen_flow --num-samples 1000

Reads the lit_gen checkpoints a ``bench.diffusers_peer`` run kept (``<runs>/<arm>/seed<k>/``, one per
training seed; ``--resolution 16`` keeps them in ``runs/bench/peer16``) and samples each with the
50-step reference (DDIM, eta 0, EMA weights; Euler for the continuous objectives, their ODE's DDIM)
and with every few-step sampler at 10 network evaluations or fewer: DPM-Solver++(2M) 10 steps,
Heun 5 steps (9 evaluations: the last step is Euler), Euler 10 steps (Karras spacing);
for objective ddpm also the 50-step DDIM as other libraries run it: with the network's own eps
(``--no-recompute-eps``, diffusers' default) and with their "leading" and "trailing" spacings.
The sampling seed is the peer bench's (1000 + training seed, ``sample_in_chunks``), so each reference FID
repeats that record's value for the same checkpoint.

Judged by ``bench.yardstick`` at the checkpoints' resolution (a classifier trained at that resolution):
N = 423 samples per checkpoint and sampler, FID against the 423 digits every arm held out (the ratios)
and against the training digits, and the background haze, all recorded. Target, by the interval rule
of ``bench/stats.py``: FID(few-step) / FID(50-step) <= 1.1, the geometric mean of the per-checkpoint
ratios with a paired t interval over the seeds (``paired_log_ratio``), for the best few-step sampler of
each arm; every sampler's ratio is recorded. The best few-step sampler of the recipe's arm is the one
its config samples with by default (``model.default_sampler``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from bench.common import CACHE, SAMPLE_CHUNK, Recorder, base_parser, sample_in_chunks, setup
from bench.stats import mean_sd, paired_log_ratio
from bench.yardstick import Yardstick

#: (name, sampler, steps, options): the reference first. Network evaluations are counted, not assumed.
REFERENCE = ("50-step", "ddim", 50, {})
FEW_STEP = (("dpmpp_2m-10", "dpmpp_2m", 10, {}), ("heun-5", "heun", 5, {}), ("euler-10", "euler", 10, {}))
#: The 50-step DDIM as other libraries run it (objective ddpm only): the network's own eps instead of
#: the eps rebuilt from the clipped x0 (diffusers' default), and their timestep spacings.
DDIM_VARIANTS = (("ddim-50 network eps", "ddim", 50, {"recompute_eps": False}),
                 ("ddim-50 leading", "ddim", 50, {"spacing": "leading"}),
                 ("ddim-50 trailing", "ddim", 50, {"spacing": "trailing"}))
MAX_EVALUATIONS = 10
BOUND = 1.1


def checkpoints(runs: Path, arm: str) -> dict[int, Path]:
    """``{training seed: last.ckpt}`` of one arm of a peer-bench folder."""
    found = {}
    for folder in sorted((runs / arm).glob("seed*")):
        last = sorted(folder.rglob("last.ckpt"))
        if last and folder.name[4:].isdigit():
            found[int(folder.name[4:])] = last[-1]
    return found


def draw(model, n: int, seed: int, sampler: str, steps: int, options: dict) -> tuple[torch.Tensor, float, float]:
    """``n`` samples in [0, 1] quantised to 8 bits as the peer bench stores them, the seconds taken and
    the U-Net evaluations per sample (counted by a forward hook)."""
    calls = []
    network = model.ema.averaged if model.ema is not None else model.unet  # sample() uses the EMA weights
    hook = network.register_forward_hook(lambda *_: calls.append(1))
    started = time.perf_counter()
    try:
        images = sample_in_chunks(model, n, seed, sampler=sampler, steps=steps, **options)
    finally:
        hook.remove()
    seconds = time.perf_counter() - started
    return (images.clamp(0, 1) * 255).round() / 255.0, seconds, len(calls) / math.ceil(n / SAMPLE_CHUNK)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=str(CACHE / "peer16"), help="a bench.diffusers_peer --keep folder")
    parser.add_argument("--arms", nargs="+", default=["lit_gen"], help="its lit_gen arms to sample (default lit_gen)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="samples per checkpoint (default: the yardstick's 423 held-out digits' count; quick 200)")
    args = parser.parse_args(argv)
    setup()
    from lit_gen.checkpoints import load_model
    from lit_gen.diffusion.samplers import sampler_that_runs

    runs = Path(args.runs)
    found = {arm: checkpoints(runs, arm) for arm in args.arms}
    if not any(found.values()):
        raise SystemExit(f"no checkpoints under {runs}/<arm>/seed<k>/: run python -m bench.diffusers_peer first "
                         f"(it keeps them in runs/bench/peer at 8x8, runs/bench/peer16 with --resolution 16)")
    rec = Recorder("few_step", "few-step samplers (<= 10 network evaluations) against the 50-step sampler on the same "
                   "checkpoints, paired over training seeds")
    yardstick = None
    results: dict[str, dict[str, list[dict]]] = {}
    for arm, seeds in found.items():
        results[arm] = {}
        for seed, path in sorted(seeds.items()):
            model = load_model(path, map_location="cpu").eval()
            if yardstick is None:
                yardstick = Yardstick.build("digits", model.diffusion_shape[-1])
                num_samples = args.num_samples or (200 if args.quick else yardstick.n)
                rec.numbers.update(resolution=yardstick.resolution, floors=yardstick.floors(num_samples),
                                   default_sampler=model.sample_defaults())
            continuous = not model.objective.discrete
            for name, sampler, steps, options in (REFERENCE, *FEW_STEP, *(() if continuous else DDIM_VARIANTS)):
                runs_as = sampler_that_runs(sampler, discrete=not continuous)
                images, seconds, nfe = draw(model, num_samples, 1000 + seed, sampler, steps, options)
                assert steps == 50 or nfe <= MAX_EVALUATIONS, (name, nfe)
                judged = yardstick.judge(images, seed=seed)
                results[arm].setdefault(name, []).append({"seed": seed, **judged, "sampler": runs_as,
                                                          "steps": steps, "options": options,
                                           "network_evaluations": nfe, "images_per_second": round(num_samples / seconds, 1),
                                           "checkpoint": str(path)})
                for reference, key in (("heldout", "fid"), ("train", "fid_train")):
                    protocol = yardstick.protocol(reference, sampler=runs_as, steps=steps, generated_count=num_samples)
                    rec.add_fid_value(f"{arm} {name}" + ("" if reference == "heldout" else " (train)"), seed, judged[key],
                                      protocol, yardstick.feature())
                print(f"  {arm} seed {seed} {name} ({runs_as}, {nfe} evaluations): FID {judged['fid']:.2f} held out, "
                      f"{judged['fid_train']:.2f} train, haze {judged['haze']:.4f} ({num_samples / seconds:.0f} images/s)",
                      flush=True)
    rec.fid_varies = ("sampler", "steps", "eta", "real_split", "real_count")

    rec.numbers.update(num_samples=num_samples, runs=str(runs), bound=BOUND, results=results,
                       samplers={name: {"sampler": s, "steps": k, "options": o}
                                 for name, s, k, o in (REFERENCE, *FEW_STEP, *DDIM_VARIANTS)},
                       max_network_evaluations=MAX_EVALUATIONS)
    for arm, by_sampler in results.items():
        base = [r["fid"] for r in by_sampler[REFERENCE[0]]]
        if not base:
            rec.notes.append(f"{arm}: no checkpoints under {runs / arm}")
            continue
        mean, sd = mean_sd(base)
        haze = mean_sd([r["haze"] for r in by_sampler[REFERENCE[0]]])[0]
        rec.headline[f"{arm} 50-step FID"] = f"{mean:.2f} ± {sd:.2f} held out (n={len(base)}); haze {haze:.4f}"
        ratios = {}
        for name, values in ((n, [r["fid"] for r in rs]) for n, rs in by_sampler.items() if n != REFERENCE[0]):
            ratios[name] = paired_log_ratio(values, base)
            m, s = mean_sd(values)
            interval = ratios[name]
            span = f" [{interval.low:.3f}, {interval.high:.3f}]" if interval.low is not None else ""
            haze = mean_sd([r["haze"] for r in by_sampler[name]])[0]
            rec.headline[f"{arm} {name} FID"] = (f"{m:.2f} ± {s:.2f} held out; ratio to 50-step {interval.estimate:.3f}{span} "
                                                 f"({by_sampler[name][0]['network_evaluations']:g} evaluations); haze {haze:.4f}")
        rec.numbers.setdefault("ratios", {})[arm] = {name: r.as_dict() for name, r in ratios.items()}
        few = [name for name, *_ in FEW_STEP]
        best = min(few, key=lambda name: ratios[name].estimate)
        rec.target(f"{arm}: FID {best} / FID 50-step (the best few-step sampler, chosen on these runs)",
                   ratios[best].estimate, "<=", BOUND, "x", interval=ratios[best])
    path = rec.write(args.out)
    rec.report(path)


if __name__ == "__main__":
    main()
