"""Training-side ablations of a digits diffusion recipe: one setting changed per arm, paired over training seeds.

    python -m bench.ablations                              # every arm, 830 steps, 3 seeds
    python -m bench.ablations --arms no_warmup constant_lr # the recipe and these arms
    python -m bench.ablations --arm wd=model.weight_decay=0.01   # one more arm of your own (repeatable)
    python -m bench.ablations --jobs 2 --threads 1         # two runs side by side (step-matched, see below)
    python -m bench.ablations --quick                      # 100 steps: a smoke run
    python -m bench.ablations --arms --arm ng8_add="model.conditioning=add;model.norm_groups=8" \
        --arm ng8=model.norm_groups=8 --out bench/results/ablations_conditioning.json   # how blocks take t
    python -m bench.ablations --config configs/ddpm_digits_cond.yaml --steps 1260 --sampler ddim:50 ...
                                                           # a conditional config: also each class's accuracy

The recipe is ``configs/ddpm_digits16.yaml`` by default (``--config`` another digits config), run through
``lit_gen.fit`` as a user runs it, on the yardstick's training digits (``bench.yardstick``: 1,374 digits of
one fixed partition; the 423 others are held out from every arm). Every arm trains for the same number
of optimizer steps: 830, what 240 s of the whole fit gave the 16x16 recipe on 2 threads. Matching steps
rather than seconds compares what a step learns, and keeps the result independent of the machine's
load, so ``--jobs 2`` may run two single-thread runs side by side; each arm's seconds per step are
recorded, since some (attention heads, GroupNorm groups) also change a step's cost.

Samples: the config's own sampler by default (``model.default_sampler``; ``--sampler NAME:STEPS`` for
another), EMA weights, sampling seed 1000 + training seed, as many as the yardstick holds out (423).
Judged by ``bench.yardstick`` at the config's resolution: FID against the held-out digits (the verdicts)
and against the training digits, precision/recall, memorisation and background haze, all recorded. A
class-conditional config samples every class equally, guided as its ``run.sample_options`` say, and
each run also records the share of samples the yardstick's classifier assigns to their class.

Verdict per arm: the geometric mean of FID(arm) / FID(recipe) over training seeds, paired by seed (the
same seed gives both the same initial weights where the architecture is the same, and the same data
order), with a 95% t interval (``bench.stats.paired_log_ratio``): "better" when the whole interval lies
below 1, "worse" when above, otherwise "not resolved" (the measurement cannot tell). The class accuracy
gets the same paired comparison (higher is better).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from bench.common import (CACHE, REPO, Recorder, answer_as_worker, base_parser, median, parse_named_overrides,
                          sample_in_chunks, setup, worker_run)
from bench.stats import lower_is_better_effect, mean_interval, mean_sd, paired_log_ratio
from bench.yardstick import HAZE_BOUND, TRAIN_OVERRIDES, Yardstick

CONFIG = "configs/ddpm_digits16.yaml"
STEPS = 830
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
    "uniform_t": ["model.objective.time_sampling=uniform"],
    "lr_4e-3": ["model.lr=4.0e-3"],
}


# ----------------------------------------------------------------------------------- one run (a worker process)
def worker(spec: dict) -> dict:
    from lit_gen import fit
    from lit_gen.checkpoints import load_model

    torch.set_num_threads(spec["threads"])
    workdir = Path(spec["dir"])
    argv = ["--config", str(REPO / spec["config"]), "--run-id", f"seed{spec['seed']}", "--resume", "never",
            f"seed={spec['seed']}", *TRAIN_OVERRIDES, *spec["overrides"], f"trainer.max_steps={spec['steps']}",
            "trainer.max_epochs=-1", f"run.output_dir={workdir}", "trainer.accelerator=cpu"]
    started = time.perf_counter()
    if fit.main(argv) != 0:
        raise SystemExit("lit_gen.fit failed")
    seconds = time.perf_counter() - started
    summary = json.loads(next(workdir.rglob("summary.json")).read_text())
    model = load_model(next(workdir.rglob("last.ckpt")), map_location="cpu").eval()
    options = dict(spec["sampler"])
    # A conditional model draws every class equally often, in order (guided as its default_sampler says).
    labels = torch.arange(spec["num_samples"]) % model.num_classes if model.conditional else None
    samples = sample_in_chunks(model, spec["num_samples"], 1000 + spec["seed"], labels=labels, **options)
    path = workdir / "samples.pt"
    torch.save({"images": (samples.clamp(0, 1) * 255).round().to(torch.uint8), "labels": labels}, path)
    return {"steps_done": summary["global_step"], "fit_seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / max(1, summary["global_step"]), 4), "samples": str(path),
            "sampler": {**model.sample_defaults(), **options}}


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
    parser.add_argument("--sampler", default=None, help="NAME:STEPS of lit_gen.sample (default: the config's own)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="samples per run (default: as many as the yardstick holds out, 423; quick 200)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2)")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (default 1; steps are matched, not time)")
    parser.add_argument("--keep", default=str(CACHE / "ablations"), help="folder for the runs' checkpoints and samples")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the runs an interrupted invocation finished in --keep (same settings); the record says which")
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
    sampler: dict = {}
    if args.sampler:
        name, _, count = args.sampler.partition(":")
        if not count.isdigit():
            raise SystemExit(f"--sampler {args.sampler!r}: expected NAME:STEPS, e.g. dpmpp_2m:10")
        sampler = {"sampler": name, "steps": int(count)}

    from lit_gen.config import load_config

    cfg = load_config(REPO / args.config)
    if cfg.data["name"] != "digits" or cfg.model["name"] != "diffusion":
        raise SystemExit(f"--config {args.config}: expected a diffusion config on the digits data")
    resolution = cfg.data["image_size"] or 8
    yardstick = Yardstick.build("digits", resolution)
    num_samples = args.num_samples or (200 if args.quick else yardstick.n)
    conditional = cfg.model.get("num_classes") is not None
    rec = Recorder("ablations", f"training-side ablations of {args.config} at {steps} steps, FID paired over "
                   f"{args.seeds} seeds")
    floors = yardstick.floors(num_samples)

    workdir = Path(args.keep)
    if workdir.exists() and not args.resume:
        shutil.rmtree(workdir)
    # Seed-major order, alternating direction, so slow drift of the machine touches every arm alike.
    order = [(arm, seed) for seed in range(args.seeds) for arm in (list(arms) if seed % 2 == 0 else list(arms)[::-1])]

    def one(arm: str, seed: int) -> dict:
        folder = workdir / arm / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"arm": arm, "seed": seed, "overrides": arms[arm], "steps": steps, "num_samples": num_samples,
                "threads": args.threads, "dir": str(folder), "config": args.config, "sampler": sampler}
        result = worker_run(folder, spec, "bench.ablations", args.threads, 3600, f"{arm} seed {seed}", args.resume)
        saved = torch.load(result["samples"], weights_only=True)
        images = saved["images"].float() / 255.0
        judged = yardstick.judge(images, seed=seed)
        if saved["labels"] is not None:
            judged["class_accuracy"] = round(float((yardstick.extractor.extract(images).logits.argmax(1)
                                                    == saved["labels"]).double().mean()), 4)
        print(f"  {arm} seed {seed}: {judged} ({result['steps_done']} steps, {result['seconds_per_step']:.3f} s/step, "
              f"load {result['load_average_before']})", flush=True)
        return {"arm": arm, "seed": seed, **judged, **result}

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(lambda job: one(*job), order))

    seeds = list(range(args.seeds))
    ran = runs[0]["sampler"]
    for r in runs:
        for reference, key in (("heldout", "fid"), ("train", "fid_train")):
            protocol = yardstick.protocol(reference, sampler=r["sampler"]["sampler"], steps=r["sampler"]["steps"],
                                          generated_count=num_samples, guidance=r["sampler"].get("guidance"))
            rec.add_fid_value(r["arm"] if reference == "heldout" else f"{r['arm']} (train)", r["seed"], r[key],
                              protocol, yardstick.feature())
    rec.fid_varies = ("real_split", "real_count")
    measures = ["fid", "fid_train", "precision", "recall", "nn_ratio", "haze"] + (["class_accuracy"] if conditional else [])
    summary, ratios = {}, {}
    for arm in arms:
        per_seed = {m: [next(r[m] for r in runs if r["arm"] == arm and r["seed"] == s) for s in seeds] for m in measures}
        per_step = [r["seconds_per_step"] for r in runs if r["arm"] == arm]
        summary[arm] = {"overrides": arms[arm], "seconds_per_step_median": round(median(per_step), 4),
                        **{f"{m}_mean": round(mean_sd(per_seed[m])[0], 4) for m in measures},
                        **{f"{m}_sd": round(mean_sd(per_seed[m])[1], 4) for m in measures}, "fids": per_seed["fid"]}
        line = (f"FID {summary[arm]['fid_mean']:.2f} ± {summary[arm]['fid_sd']:.2f} held out, "
                f"{summary[arm]['fid_train_mean']:.2f} train; haze {summary[arm]['haze_mean']:.4f}")
        if conditional:
            line += f"; class accuracy {summary[arm]['class_accuracy_mean']:.3f}"
        if arm != "recipe":
            recipe = {m: [next(r[m] for r in runs if r["arm"] == "recipe" and r["seed"] == s) for s in seeds]
                      for m in measures}
            interval = paired_log_ratio(per_seed["fid"], recipe["fid"])
            ratios[arm] = {"fid": interval.as_dict(), "fid_train": paired_log_ratio(per_seed["fid_train"],
                                                                                  recipe["fid_train"]).as_dict()}
            effect = lower_is_better_effect(interval)
            summary[arm]["effect"] = effect
            haze_ratio = paired_log_ratio(per_seed["haze"], recipe["haze"])
            ratios[arm]["haze"] = haze_ratio.as_dict()
            summary[arm]["haze_effect"] = lower_is_better_effect(haze_ratio)
            line += f"; x{interval.estimate:.2f} the recipe's held-out FID" + (
                f" [{interval.low:.2f}, {interval.high:.2f}]" if interval.low is not None else "") + f": {effect}"
            line += f"; haze x{haze_ratio.estimate:.2f}: {summary[arm]['haze_effect']}"
            if conditional:
                accuracy = paired_log_ratio(recipe["class_accuracy"], per_seed["class_accuracy"])  # < 1: the arm is better
                ratios[arm]["class_accuracy_recipe_over_arm"] = accuracy.as_dict()
                summary[arm]["class_accuracy_effect"] = lower_is_better_effect(accuracy)
                line += f"; class accuracy: {summary[arm]['class_accuracy_effect']}"
        rec.headline[f"{arm} ({'; '.join(arms[arm]) or args.config})"] = line
        # The haze bound of the peer comparison, for every arm: an arm may trade FID for cleaner backgrounds.
        if len(seeds) > 1:
            haze = mean_interval(per_seed["haze"])
            rec.target(f"background haze, {arm} (real digits: {floors['haze_heldout']:.4f} held out)", haze.estimate,
                       "<=", HAZE_BOUND, interval=haze)
    rec.headline["real-data floors"] = (f"FID {floors['fid_heldout']:.2f} held out, {floors['fid_train']:.2f} train "
                                        f"(N={floors['n']}); haze {floors['haze_heldout']:.4f}")
    rec.numbers.update(config=args.config, steps=steps, seeds=args.seeds, num_samples=num_samples, threads=args.threads,
                       jobs=args.jobs, sampler=ran, arms=summary, ratios_to_recipe=ratios, floors=floors,
                       train_overrides=TRAIN_OVERRIDES, runs=runs)
    if args.jobs > 1:
        rec.notes.append(f"{args.jobs} runs went side by side: the steps are matched, so only the seconds per step "
                         "(recorded, not compared) feel it")
    reused = [f"{r['arm']} seed {r['seed']}" for r in runs if r.get("reused")]
    if reused:
        rec.notes.append("runs finished by an earlier, interrupted invocation with the same settings and reused here "
                         "(--resume): " + ", ".join(reused))
    path = rec.write(args.out)
    rec.report(path)


if __name__ == "__main__":
    main()
