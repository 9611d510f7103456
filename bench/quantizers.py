"""Rate and distortion of the VQ-VAE's quantizers: reconstruction error against bits per image, 3 seeds.

    python -m bench.quantizers                                   # digits 8x8: 3 code counts x 4 quantizers x 3 seeds
    python -m bench.quantizers --dataset mnist --data-root data  # real MNIST 28x28 at the budget below
    python -m bench.quantizers --quick                           # 1 code count, 1 seed, 100 steps: a smoke run
    python -m bench.quantizers --resume                          # reuse the runs a stopped invocation finished

Arms, each ``lit_gen.fit`` with the dataset's VQ-VAE config (``CONFIGS``) as a user runs it, the same number
of optimizer steps (``--steps``; matched steps keep the result independent of the machine's load, so runs go
``--jobs`` at a time), on the yardstick's training split (``bench.yardstick``: the held-out images never
trained on), one run per seed:

- ``vq``: the config's learned codebook (EMA updates, dead-code restarts) with ``num_codes`` K;
- ``vq_rotation``: the same with ``rotation_trick: true`` (Fifty et al. 2024);
- ``fsq``: finite scalar quantization with the levels ``FSQ_LEVELS[K]`` (the paper's set for 2^8);
- ``lfq``: lookup-free quantization with K codes (log2 K binary channels).

Measured by ``lit_gen.compare --measure`` on the held-out test split (every image of it): reconstruction
MSE on [0, 1] pixels, LPIPS where its backbone weights are on disk and the images are large enough (they
are not here: 8x8 and 28x28 digits are below LPIPS' minimum and no VGG weights are offline; the record
says so), and bits per image, both at face value (h * w * log2 K) and as the codes' entropy on the split.
The comparison's ``rate_distortion.png`` is copied to ``docs/images/``.

Verdicts, by the interval rule over the seeds (``bench.stats.paired_log_ratio``, paired by seed): at each
code count, MSE(arm) / MSE(vq) for every other arm; the target asks the best arm of the count (lowest mean
MSE, chosen on these runs) to beat the learned codebook, MSE ratio <= 1. Then, for the two arms of lowest
mean MSE at ``--prior-codes``, a code prior (``configs/prior_vqvae_digits.yaml``, digits only) is trained
on each seed's first stage and its samples are judged by the yardstick (held-out FID, training FID).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from bench.common import CACHE, REPO, Recorder, base_parser, child_env, python_command, setup
from bench.stats import mean_interval, mean_sd, paired_log_ratio
from bench.yardstick import TRAIN_OVERRIDES, Yardstick

CONFIGS = {"digits": "configs/vqvae_digits.yaml", "mnist": "configs/vqvae_mnist.yaml"}
#: Optimizer steps per run: digits, the config's 60 epochs of the 1,374 training digits at batch 64; MNIST,
#: a CPU budget of 1,500 steps at batch 128 (about 3.5 epochs).
STEPS = {"digits": 1260, "mnist": 1500}
SIZES = {"digits": (16, 64, 256), "mnist": (64, 256)}
#: FSQ levels per code count: the paper's set for 2^8 (240 codes), and even splits below it.
FSQ_LEVELS = {16: (4, 4), 64: (8, 8), 256: (8, 6, 5), 1024: (8, 5, 5, 5)}
ARMS = ("vq", "vq_rotation", "fsq", "lfq")
PRIOR_CONFIG = "configs/prior_vqvae_digits.yaml"


def arm_overrides(arm: str, codes: int) -> list[str]:
    if arm == "vq":
        return [f"model.quantizer.num_codes={codes}"]
    if arm == "vq_rotation":
        return [f"model.quantizer.num_codes={codes}", "model.quantizer.rotation_trick=true"]
    if arm == "fsq":
        return [f"model.quantizer={{name: fsq, levels: {list(FSQ_LEVELS[codes])}}}"]
    if arm == "lfq":
        return [f"model.quantizer={{name: lfq, num_codes: {codes}}}"]
    raise ValueError(arm)


def run_dir(root: Path, arm: str, codes: int, seed: int) -> Path:
    return root / f"{arm}_K{codes}_s{seed}"


def fit(config: str, folder: Path, overrides: list[str], threads: int, resume: bool) -> Path:
    """Train one run into ``folder`` (``<folder>/<config name>/run``); reuse it when ``resume`` and it finished."""
    name = Path(config).stem
    run = folder / name / "run"
    spec = {"config": config, "overrides": overrides}
    spec_file = folder / "spec.json"
    if (resume and (run / "summary.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
            and spec_file.is_file() and json.loads(spec_file.read_text()) == spec):
        return run
    shutil.rmtree(folder, ignore_errors=True)
    command = python_command("-m", "lit_gen.fit", "--config", config, "--run-id", "run", f"run.output_dir={folder}",
                             "logger.wandb=false", "run.num_samples=0", "trainer.accelerator=cpu", "eval.report=false",
                             "trainer.max_epochs=100000", *overrides)
    result = subprocess.run(command, cwd=REPO, env=child_env(OMP_NUM_THREADS=str(threads)), capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    spec_file.write_text(json.dumps(spec) + "\n")  # what --resume checks before reusing the run
    return run


def compare(runs: list[Path], out: Path, count: int | None) -> None:
    command = python_command("-m", "lit_gen.compare", *map(str, runs), "--measure", "--out", str(out))
    if count is not None:
        command += ["--count", str(count)]
    result = subprocess.run(command, cwd=REPO, env=child_env(OMP_NUM_THREADS="2"), capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"lit_gen.compare failed:\n{result.stderr[-3000:]}")


def judge_prior(run: Path, yardstick: Yardstick, seed: int) -> dict:
    from lit_gen.checkpoints import load_model

    model = load_model(run / "checkpoints" / "last.ckpt").eval()
    with torch.no_grad():
        samples = torch.cat([model.sample(min(256, yardstick.n - i), generator=torch.Generator().manual_seed(1000 * seed + i))
                             for i in range(0, yardstick.n, 256)])
    return yardstick.judge(samples, seed=seed)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(CONFIGS), default="digits")
    parser.add_argument("--data-root", default=None, help="dataset folder (MNIST's raw idx files under <root>/MNIST/raw)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: STEPS of the dataset)")
    parser.add_argument("--sizes", default=None, help="code counts, comma-separated (default: SIZES of the dataset)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at a time (steps are matched, so load does not bias)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--prior-codes", type=int, default=64, help="code count whose two best arms get a prior (digits)")
    parser.add_argument("--prior-steps", type=int, default=630, help="optimizer steps of each prior (30 epochs of digits)")
    parser.add_argument("--resume", action="store_true", help="reuse the finished runs of an earlier invocation")
    args = parser.parse_args()
    setup()
    dataset = args.dataset
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(SIZES[dataset][1:2] if args.quick else SIZES[dataset])
    seeds = list(range(1 if args.quick else args.seeds))
    steps = args.steps or (100 if args.quick else STEPS[dataset])
    root = CACHE / ("quantizers_quick" if args.quick else "quantizers") / dataset
    data = [f"data.root={args.data_root}"] if args.data_root else []
    # Digits train on the yardstick's training split; MNIST's test split (10,000 images) is never trained on anyway.
    split = TRAIN_OVERRIDES if dataset == "digits" else ["data.seed=0"]
    rec = Recorder("quantizers" if dataset == "digits" else f"quantizers_{dataset}",
                   f"{dataset}: reconstruction MSE against bits per image of vq, vq + rotation, fsq and lfq")

    plan = [(arm, codes, seed) for codes in sizes for arm in ARMS for seed in seeds]
    def train(item):
        arm, codes, seed = item
        overrides = [*split, *data, f"seed={seed}", f"trainer.max_steps={steps}", *arm_overrides(arm, codes)]
        return item, fit(CONFIGS[dataset], run_dir(root, arm, codes, seed), overrides, args.threads, args.resume)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = dict(pool.map(train, plan))

    comparison = root / "comparison"
    shutil.rmtree(comparison, ignore_errors=True)
    for run in runs.values():  # measured afresh: --resume reuses training, never stale measurements
        shutil.rmtree(run / "measures", ignore_errors=True)
    compare(list(runs.values()), comparison, None)
    figure = comparison / "figures" / "rate_distortion.png"
    image = REPO / "docs" / "images" / f"quantizers_rate_distortion_{dataset}.png"
    if not args.quick:
        shutil.copyfile(figure, image)

    measured = {item: json.loads((run / "measures" / "reconstruction.json").read_text()) for item, run in runs.items()}
    table: dict[str, dict] = {}
    for codes in sizes:
        row = {}
        for arm in ARMS:
            records = [measured[(arm, codes, seed)] for seed in seeds]
            mses = [r["mse"] for r in records]
            row[arm] = {
                "mse": mses, "mse_mean_sd": mean_sd(mses), "mse_interval": mean_interval(mses).as_dict(),
                "entropy_bits_per_image": [r["entropy_bits_per_image"] for r in records],
                "bits_per_image": records[0]["bits_per_image"], "num_codes": records[0]["num_codes"],
                "codes_used": [r["codes_used"] for r in records], "lpips": [r["lpips"] for r in records],
            }
            if arm != "vq":
                ratio = paired_log_ratio(mses, row["vq"]["mse"])
                row[arm]["mse_ratio_to_vq"] = ratio.as_dict()
        best = min(ARMS, key=lambda a: statistics.fmean(row[a]["mse"]))
        row["best"] = best
        table[str(codes)] = row
        if best == "vq":
            runner_up = min((a for a in ARMS if a != "vq"), key=lambda a: statistics.fmean(row[a]["mse"]))
            interval = paired_log_ratio(row[runner_up]["mse"], row["vq"]["mse"])
            cause = f"the learned codebook reconstructs best at {codes} codes; the nearest, {runner_up}, is the ratio shown"
            rec.target(f"MSE of the best other quantizer / vq, {codes} codes ({runner_up})", interval.estimate, "<=", 1.0,
                       interval=interval, cause=cause)
        else:
            interval = paired_log_ratio(row[best]["mse"], row["vq"]["mse"])
            rec.target(f"MSE of the best quantizer / vq, {codes} codes ({best})", interval.estimate, "<=", 1.0,
                       interval=interval)
        rec.headline[f"{codes} codes"] = ", ".join(
            f"{arm} {statistics.fmean(row[arm]['mse']):.4f} at {statistics.fmean(row[arm]['entropy_bits_per_image']):.0f} bits"
            for arm in ARMS) + f" (best: {best})"
    rec.numbers.update(dataset=dataset, steps=steps, seeds=seeds, sizes=sizes, fsq_levels={k: FSQ_LEVELS[k] for k in sizes},
                       config=CONFIGS[dataset], overrides=[*split, *data], by_codes=table,
                       lpips_reason=next(iter(measured.values())).get("lpips_reason"),
                       measured_on={"split": "test", "count": next(iter(measured.values()))["count"]},
                       figure=str(image.relative_to(REPO)) if not args.quick else None)

    if dataset == "digits" and args.prior_codes in sizes:
        row = table[str(args.prior_codes)]
        two = sorted(ARMS, key=lambda a: statistics.fmean(row[a]["mse"]))[:2]
        yardstick = Yardstick.build("digits", 8)
        judged: dict[str, list[dict]] = {}
        for arm in two:
            for seed in seeds:
                stage = runs[(arm, args.prior_codes, seed)] / "checkpoints" / "last.ckpt"
                prior = fit(PRIOR_CONFIG, root / f"prior_{arm}_K{args.prior_codes}_s{seed}",
                            [*TRAIN_OVERRIDES, f"seed={seed}", f"model.first_stage={stage}",
                             f"trainer.max_steps={50 if args.quick else args.prior_steps}"], 2, args.resume)
                judged.setdefault(arm, []).append(judge_prior(prior, yardstick, seed))
        fids = {arm: [j["fid"] for j in values] for arm, values in judged.items()}
        ratio = paired_log_ratio(fids[two[0]], fids[two[1]])
        rec.numbers["prior"] = {"codes": args.prior_codes, "arms": two, "judged": judged, "config": PRIOR_CONFIG,
                                "steps": args.prior_steps, "yardstick": {"classifier": str(yardstick.classifier.relative_to(REPO)),
                                                                         "n": yardstick.n},
                                f"fid_ratio_{two[0]}_to_{two[1]}": ratio.as_dict()}
        for arm in two:
            for seed, j in zip(seeds, judged[arm]):
                for reference, key in (("heldout", "fid"), ("train", "fid_train")):
                    protocol = yardstick.protocol(reference, sampler="prior", steps=None, generated_count=yardstick.n)
                    protocol["weights"] = "raw"
                    rec.add_fid_value(f"prior on {arm}", seed, j[key], protocol, yardstick.feature())
        rec.fid_varies = ("real_split", "real_count")
        rec.numbers["prior"]["floors"] = yardstick.floors()
        rec.headline["prior FID (held-out)"] = ", ".join(f"{arm} {statistics.fmean(fids[arm]):.2f}" for arm in two)
    rec.notes.append("LPIPS is not measured: " + str(rec.numbers["lpips_reason"]))
    rec.report(rec.write(args.out))


if __name__ == "__main__":
    main()
