"""Training-side ablations of the 16x16 digits recipe: one setting changed per arm, paired over training seeds.

    python -m bench.ablations                              # every arm, 830 steps, 3 seeds, 1000 samples each
    python -m bench.ablations --arms no_warmup constant_lr # the recipe and these arms
    python -m bench.ablations --arm wd=model.weight_decay=0.01   # one more arm of your own (repeatable)
    python -m bench.ablations --jobs 2 --threads 1         # two runs side by side (step-matched, see below)
    python -m bench.ablations --quick                      # 100 steps, 200 samples: a smoke run
    python -m bench.ablations --config configs/ddpm_digits.yaml --steps 1260 --sampler dpmpp_2m:10 --arms \
        --arm flow=model.objective=flow                    # the 8x8 quickstart: eps against rectified flow

The recipe is ``configs/ddpm_digits16.yaml`` (rectified flow, 3 U-Net levels, all 1,797 digits, batch 64,
lr 2e-3 with 100 warm-up steps and a cosine decay, clipping at 1, EMA 0.999 with warm-up), run through
``lit_gen.fit`` as a user runs it. Every arm trains for the same number of optimizer steps: 830, what
240 s of the whole fit gave the recipe on 2 threads in ``diffusers_peer_16.json``. Matching steps rather
than seconds compares what a step learns, and keeps the result independent of the machine's load, so
``--jobs 2`` may run two single-thread runs side by side; each arm's seconds per step are recorded,
since some (attention heads, GroupNorm groups) also change a step's cost.

Samples: Heun, 5 steps by default (8 network evaluations; ``bench/results/few_step.json`` found it
within the 50-step Euler FID on these checkpoints; ``--sampler NAME:STEPS`` for another), EMA weights,
sampling seed 1000 + training seed. FID on the digits classifier's features against the images the
config trains on (``data.train_split``: all 1,797 digits for the 16x16 recipe), at its resolution.
``--config`` ablates another digits config the same way.

Verdict per arm: the geometric mean of FID(arm) / FID(recipe) over training seeds, paired by seed (the
same seed gives both the same initial weights where the architecture is the same, and the same data
order), with a 95% t interval (``bench.stats.paired_log_ratio``): "better" when the whole interval lies
below 1, "worse" when above, otherwise "not resolved" (the measurement cannot tell).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from bench.common import (CACHE, REPO, Recorder, answer_as_worker, base_parser, call_worker, digits_classifier, digits_fid_protocol, feature_of,
                          load_average, median, parse_named_overrides, sample_in_chunks, score_samples, setup)
from bench.stats import lower_is_better_effect, mean_sd, paired_log_ratio

CONFIG = "configs/ddpm_digits16.yaml"
STEPS = 830
SAMPLER = "heun:5"
#: Each arm: the one change to the recipe, as config overrides. The issue's list: warm-up and schedule, AdamW
#: settings, clipping, GroupNorm groups, attention heads, loss weighting (for flow: how t is drawn), and the
#: learning rate around the recipe's.
ARMS: dict[str, list[str]] = {
    "recipe": [],
    "no_warmup": ["model.warmup_steps=0"],
    "constant_lr": ["model.lr_schedule=constant"],
    "adam_beta2_0.99": ["model.betas=[0.9, 0.99]"],
    "no_clipping": ["trainer.gradient_clip_val=null"],
    "norm_groups_8": ["model.norm_groups=8"],
    "attention_heads_4": ["model.attention_heads=4"],
    "uniform_t": ["model.flow_time_sampling=uniform"],
    "lr_4e-3": ["model.lr=4.0e-3"],
}


# ----------------------------------------------------------------------------------- one run (a worker process)
def worker(spec: dict) -> dict:
    from lit_gen import fit
    from lit_gen.checkpoints import load_model

    torch.set_num_threads(spec["threads"])
    workdir = Path(spec["dir"])
    argv = ["--config", str(REPO / spec["config"]), "--run-id", f"seed{spec['seed']}", "--resume", "never",
            f"seed={spec['seed']}", *spec["overrides"], f"trainer.max_steps={spec['steps']}", "trainer.max_epochs=-1",
            f"run.output_dir={workdir}", "trainer.accelerator=cpu"]
    started = time.perf_counter()
    if fit.main(argv) != 0:
        raise SystemExit("lit_gen.fit failed")
    seconds = time.perf_counter() - started
    summary = json.loads(next(workdir.rglob("summary.json")).read_text())
    model = load_model(next(workdir.rglob("last.ckpt")), map_location="cpu").eval()
    samples = sample_in_chunks(model, spec["num_samples"], 1000 + spec["seed"], **spec["sampler"])
    path = workdir / "samples.pt"
    torch.save((samples.clamp(0, 1) * 255).round().to(torch.uint8), path)
    return {"steps_done": summary["global_step"], "fit_seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / max(1, summary["global_step"]), 4), "samples": str(path)}


# ----------------------------------------------------------------------------------- the driver
def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=CONFIG, help=f"the digits config to ablate (default {CONFIG})")
    parser.add_argument("--arms", nargs="*", choices=[a for a in ARMS if a != "recipe"], default=None,
                        help="arms to run besides the recipe (default: all; none with --arms alone)")
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=KEY=VALUE[;KEY=VALUE]",
                        help="one more arm with these config overrides (repeatable)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per arm (default 3; the interval needs 3)")
    parser.add_argument("--steps", type=int, default=None, help=f"optimizer steps per run (default {STEPS}, quick 100)")
    parser.add_argument("--sampler", default=SAMPLER, help=f"NAME:STEPS of lit_gen.sample (default {SAMPLER})")
    parser.add_argument("--num-samples", type=int, default=None, help="samples per run (default 1000, quick 200)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2)")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (default 1; steps are matched, not time)")
    parser.add_argument("--keep", default=str(CACHE / "ablations"), help="folder for the runs' checkpoints and samples")
    parser.add_argument("--worker-spec", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if answer_as_worker(args.worker_spec, worker):
        return
    setup()
    if args.seeds < 1 or args.jobs < 1 or args.threads < 1:
        raise SystemExit("--seeds, --jobs and --threads must be at least 1")
    arms = {"recipe": []}
    arms.update({name: ARMS[name] for name in (args.arms if args.arms is not None else [a for a in ARMS if a != "recipe"])})
    arms.update(dict(parse_named_overrides(text, "--arm") for text in args.arm))
    steps = 100 if args.quick else args.steps or STEPS  # --quick is a smoke run whatever --steps says
    num_samples = args.num_samples or (200 if args.quick else 1000)
    name, _, count = args.sampler.partition(":")
    if not count.isdigit():
        raise SystemExit(f"--sampler {args.sampler!r}: expected NAME:STEPS, e.g. dpmpp_2m:10")
    sampler = {"sampler": name, "steps": int(count)}

    from lit_gen.config import load_config
    from lit_gen.data.digits import DigitsDataModule
    from lit_gen.metrics.features import ClassifierFeatures
    from lit_gen.metrics.reference import reference_statistics

    cfg = load_config(REPO / args.config)
    if cfg.data["name"] != "digits" or cfg.model["name"] != "ddpm":
        raise SystemExit(f"--config {args.config}: expected a ddpm config on the digits data")
    rec = Recorder("ablations", f"training-side ablations of {args.config} at {steps} steps, FID paired over "
                   f"{args.seeds} seeds")
    classifier = digits_classifier()
    extractor = ClassifierFeatures.from_file(classifier)
    feature = feature_of(classifier)
    data = DigitsDataModule(train_split=cfg.data["train_split"], image_size=cfg.data["image_size"])
    reference = reference_statistics(data, "digits", "train", extractor, cache_dir=None).stats
    protocol = digits_fid_protocol(extractor, "train", reference.count, data, sampler=sampler["sampler"],
                                   steps=sampler["steps"], generated_count=num_samples)

    workdir = Path(args.keep)
    if workdir.exists():
        shutil.rmtree(workdir)
    # Seed-major order, alternating direction, so slow drift of the machine touches every arm alike.
    order = [(arm, seed) for seed in range(args.seeds) for arm in (list(arms) if seed % 2 == 0 else list(arms)[::-1])]

    def one(arm: str, seed: int) -> dict:
        folder = workdir / arm / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"arm": arm, "seed": seed, "overrides": arms[arm], "steps": steps, "num_samples": num_samples,
                "threads": args.threads, "dir": str(folder), "config": args.config, "sampler": sampler}
        load = load_average()
        result = call_worker("bench.ablations", spec, args.threads, 3600, f"{arm} seed {seed}")
        fid = score_samples(result["samples"], extractor, reference)
        print(f"  {arm} seed {seed}: FID {fid:.2f} ({result['steps_done']} steps, {result['seconds_per_step']:.3f} s/step, "
              f"load {load})", flush=True)
        return {"arm": arm, "seed": seed, "fid": round(fid, 3), "load_average_before": load, **result}

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(lambda job: one(*job), order))

    fids = {arm: {r["seed"]: r["fid"] for r in runs if r["arm"] == arm} for arm in arms}
    seeds = list(range(args.seeds))
    for r in runs:
        rec.add_fid_value(r["arm"], r["seed"], r["fid"], protocol, feature)
    summary, ratios = {}, {}
    for arm in arms:
        values = [fids[arm][s] for s in seeds]
        mean, sd = mean_sd(values)
        per_step = [r["seconds_per_step"] for r in runs if r["arm"] == arm]
        summary[arm] = {"overrides": arms[arm], "fid_mean": round(mean, 3), "fid_sd": round(sd, 3), "fids": values,
                        "seconds_per_step_median": round(median(per_step), 4)}
        line = f"{mean:.2f} ± {sd:.2f}"
        if arm != "recipe":
            interval = paired_log_ratio(values, [fids["recipe"][s] for s in seeds])
            ratios[arm] = interval.as_dict()
            effect = lower_is_better_effect(interval)
            summary[arm]["effect"] = effect
            line += f"; x{interval.estimate:.2f} the recipe" + (
                f" [{interval.low:.2f}, {interval.high:.2f}]" if interval.low is not None else "") + f": {effect}"
        rec.headline[f"{arm} ({'; '.join(arms[arm]) or args.config})"] = line
    rec.numbers.update(config=args.config, steps=steps, seeds=args.seeds, num_samples=num_samples, threads=args.threads,
                       jobs=args.jobs, sampler=sampler, arms=summary, ratios_to_recipe=ratios, runs=runs)
    if args.jobs > 1:
        rec.notes.append(f"{args.jobs} runs went side by side: the steps are matched, so only the seconds per step "
                         "(recorded, not compared) feel it")
    path = rec.write(args.out)
    rec.report(path)


if __name__ == "__main__":
    main()
