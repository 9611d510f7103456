"""Peak resident memory (ru_maxrss of a child process) of the quickstart, a CIFAR U-Net step and FID.

    python -m bench.memory
    python -m bench.memory --quick                   # the ddpm_cifar step at batch 32 (128 takes minutes on a CPU)
    python -m bench.memory --quickstart-epochs 0     # the whole quickstart (its config's 60 epochs, many minutes)

Each measurement runs in its own child process and reads its ``ru_maxrss`` (the largest resident
set of the child and of the processes it waited for):

- ``make run``: ``python -m lit_gen.fit --config configs/quickstart.yaml`` (the digits DDPM; W&B in
  its default offline mode; W&B's own service process is not a child that gets waited for and is
  not counted), shortened by default to ``trainer.max_epochs=3``: nothing it holds grows with the
  epochs, and the final sample grid (64 DDIM-50 samples) is still drawn. Three runs. Target: at most
  2 GiB at the upper end of the 95% t-interval of the mean (``bench.stats``).
- one ``ddpm_cifar.yaml`` training step at batch 128 on the CPU, fp32 and bf16-mixed: the model, its
  EMA copy and AdamW states (allocated by a batch-1 step first), then one batch-128 step
  (forward, backward, clipping, AdamW, EMA), as ``bench.precision`` builds it.
- FID of 10,000 against 1,000 generated 32x32 RGB images (``lit_gen.evaluate.evaluate_model``, FID
  only, random-weight conv VAE and classifier features): features are streamed into running
  sums, so the peak must not grow with the count. Target: peak(10k) - peak(1k) at most half of what
  keeping the 9,000 extra images would take, by the interval rule over three runs each (Welch
  t-interval of the difference of means; the start-up alone varies from run to run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from bench.common import Recorder, base_parser, child_env, child_peak_rss, gib, median, mib, setup
from bench.stats import difference_of_means, mean_interval

QUICKSTART_LIMIT_GIB = 2.0


# ----------------------------------------------------------------------------------- children
def child_step(precision: str, batch: int) -> None:
    from bench.precision import Variant, model_kwargs

    kwargs = model_kwargs()
    small = Variant("bf16-mixed" if precision == "bf16-mixed" else "fp32", kwargs, 1, torch.device("cpu"))
    small.step()  # allocates AdamW's moments, so the measured step is a steady-state one
    images = torch.rand(batch, kwargs["channels"], kwargs["image_size"], kwargs["image_size"]) * 2 - 1
    small.batch = (images, torch.zeros(batch, dtype=torch.long))
    seconds = small.step()
    print(f"RESULT {seconds:.2f}")


def child_fid(num_samples: int) -> None:
    from bench.fid_speed import StandInImages
    from lit_gen.evaluate import evaluate_model
    from lit_gen.nn.classifier import DomainClassifier
    from lit_gen.metrics.features import ClassifierFeatures
    from lit_gen.models.vae import VAE

    from bench.common import peak_rss_delta

    torch.manual_seed(0)
    model = VAE(channels=3, image_size=32, architecture="conv", conv_channels=(32, 64), latent_dim=8).eval()
    extractor = ClassifierFeatures(DomainClassifier(3, 32, 10), "standin")
    real = StandInImages(1000)
    started = time.perf_counter()
    with peak_rss_delta() as memory:  # the evaluation alone, above what was resident before it
        record = evaluate_model(model, real, "standin", extractor, num_samples=num_samples, batch_size=250,
                                cache_dir=None, kid=False, inception_score=False, train_reference=False)
    print(f"RESULT {time.perf_counter() - started:.2f} {record.generated_count} {memory['delta_bytes']}")


def measure(args: list[str], env: dict | None = None, timeout: float = 1800) -> dict:
    result = child_peak_rss([sys.executable, *args], env=env or child_env(OMP_NUM_THREADS="1"), timeout=timeout)
    if result["returncode"] != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {result['returncode']}):\n{result['stderr'][-3000:]}")
    return result


# ----------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=None, help="batch of the ddpm_cifar step (default 128, quick 32)")
    parser.add_argument("--quickstart-epochs", type=int, default=3, help="trainer.max_epochs of the quickstart (0: its config's own, 60)")
    parser.add_argument("--fid-counts", nargs=2, type=int, default=[1000, 10000], help="generated image counts compared")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        torch.set_num_threads(1)
        kind, *rest = args.child.split(":")
        child_step(rest[0], int(rest[1])) if kind == "step" else child_fid(int(rest[0]))
        return
    setup()
    batch = args.batch_size or (32 if args.quick else 128)
    rec = Recorder("memory", "peak resident memory: quickstart, one ddpm_cifar step at batch 128, FID 10k vs 1k")

    # 1. make run, three times (the verdict needs an interval)
    runs = []
    for _ in range(3):
        with tempfile.TemporaryDirectory(prefix="lit_gen_bench_mem_") as tmp:
            command = ["-m", "lit_gen.fit", "--config", "configs/quickstart.yaml", f"run.output_dir={tmp}"]
            if args.quickstart_epochs:
                command.append(f"trainer.max_epochs={args.quickstart_epochs}")
            runs.append(measure(command, env=child_env(WANDB_MODE="offline", OMP_NUM_THREADS="1")))
    peaks = [gib(r["peak_rss_bytes"]) for r in runs]
    quick_gib = median(peaks)
    shown = ["python", *command[:4], *command[5:]]
    rec.numbers["quickstart"] = {"command": " ".join(shown), "peak_rss_gib": peaks, "seconds": [r["seconds"] for r in runs],
                                 "wandb": "offline (default without an API key)", "threads": 1}
    rec.headline["make run (quickstart) peak RSS"] = (f"{quick_gib:.2f} GiB (median of {len(peaks)}) in "
                                                      f"{median([r['seconds'] for r in runs]):.0f} s"
                                                      + (f" ({args.quickstart_epochs} epochs)" if args.quickstart_epochs else ""))
    rec.target("quickstart peak RSS", quick_gib, "<=", QUICKSTART_LIMIT_GIB, " GiB",
               "the fit process itself; see numbers for what it holds", interval=mean_interval(peaks))

    # 2. one ddpm_cifar training step per precision at batch 128
    rec.numbers["ddpm_cifar_step"] = {}
    for precision in ("fp32", "bf16-mixed"):
        r = measure(["-m", "bench.memory", "--child", f"step:{precision}:{batch}"])
        seconds = float(r["stdout"].split("RESULT ")[-1].split()[0])
        rec.numbers["ddpm_cifar_step"][precision] = {"batch_size": batch, "peak_rss_gib": gib(r["peak_rss_bytes"]),
                                                     "step_seconds": seconds, "threads": 1}
        rec.headline[f"ddpm_cifar step, batch {batch}, {precision}"] = (
            f"{gib(r['peak_rss_bytes']):.2f} GiB peak RSS (step {seconds:.0f} s on 1 CPU thread)")

    # 3. FID over 10k vs 1k generated images (repeated: the start-up alone varies by some 30 MiB)
    small, large = args.fid_counts
    fid = {count: {"peak_rss_mib": [], "evaluation_peak_mib": [], "seconds": []} for count in (small, large)}
    for _ in range(3):  # single runs of one count spread over ~40 MiB: a median of three even in --quick
        for count in (small, large):
            r = measure(["-m", "bench.memory", "--child", f"fid:{count}"])
            seconds, _, delta = r["stdout"].split("RESULT ")[-1].split()[:3]
            fid[count]["peak_rss_mib"].append(mib(r["peak_rss_bytes"]))
            fid[count]["evaluation_peak_mib"].append(mib(int(delta)) if delta != "None" else None)
            fid[count]["seconds"].append(float(seconds))
    peak = {count: median(v["peak_rss_mib"]) for count, v in fid.items()}
    growth = peak[large] - peak[small]
    kept = (large - small) * 3 * 32 * 32 * 4 / 2**20  # what keeping the extra generated images would add
    rec.numbers["fid"] = {"runs": fid, "median_peak_rss_mib": peak, "growth_mib": round(growth, 1),
                          "ratio": round(peak[large] / peak[small], 3), "image_shape": [3, 32, 32],
                          "extra_images_if_kept_mib": round(kept, 1),
                          "what": "evaluate_model, FID only (KID and IS keep every feature/logit vector: N x 64 floats); "
                                  "evaluation_peak_mib = peak during evaluate_model above the resident memory before it"}
    rec.headline[f"FID peak RSS {large} vs {small} images"] = (
        f"{peak[large]:.0f} vs {peak[small]:.0f} MiB (median of {len(fid[small]['peak_rss_mib'])}; {growth:+.0f} MiB, "
        f"keeping the images would add {kept:.0f} MiB)")
    spread = {count: max(v["peak_rss_mib"]) - min(v["peak_rss_mib"]) for count, v in fid.items()}
    rec.target(f"FID peak RSS growth {small} -> {large} images", growth, "<=", round(kept / 2, 1), " MiB",
               f"single runs spread over {spread[small]:.0f} / {spread[large]:.0f} MiB ({small} / {large} images)",
               interval=difference_of_means(fid[large]["peak_rss_mib"], fid[small]["peak_rss_mib"]))
    rec.notes.append("children run with one torch thread (OMP_NUM_THREADS=1); memory does not depend on the load.")
    if args.quickstart_epochs:
        rec.notes.append(f"the quickstart was shortened to trainer.max_epochs={args.quickstart_epochs} (what it holds does not "
                         "grow with epochs; the final grid is still sampled).")
    path = rec.write(args.out)
    rec.report(path)


if __name__ == "__main__":
    main()
