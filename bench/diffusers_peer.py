"""Quality per CPU-minute: lit_gen's digits DDPM against a diffusers training loop, same wall-clock budget.

    python -m bench.diffusers_peer                  # 240 s of training each, 1000 samples each
    python -m bench.diffusers_peer --budget 600 --num-samples 2000
    python -m bench.diffusers_peer --quick          # 300 samples

Needs diffusers (``pip install -e ".[bench]"`` or ``.venv/bin/pip install diffusers``).

Two (three with ``--with-matched``) training processes run side by side on the same machine, one torch thread each, for the
same wall-clock budget of training (process start-up excluded):

- ``lit_gen``: ``python -m lit_gen.fit --config configs/ddpm_digits.yaml`` (its code path, in the
  worker process), stopped by ``trainer.max_time``; samples: DDIM-50 with the EMA weights.
- ``diffusers``: diffusers' ``UNet2DModel`` (the same layout as lit_gen's U-Net: widths 32/64, two
  residual blocks per level, attention at 4x4; a similar parameter count) and ``DDPMScheduler``
  (1000 linear betas, epsilon prediction), trained with the settings of diffusers'
  ``examples/unconditional_image_generation/train_unconditional.py``: AdamW lr 1e-4, betas (0.95,
  0.999), weight decay 1e-6, cosine schedule with 500 warm-up steps, gradient clipping at 1, and
  ``EMAModel`` (warm-up inv_gamma 1, power 3/4, max decay 0.9999); samples: ``DDIMPipeline``
  (``DDIMScheduler``, 50 steps, eta 0) with the EMA weights.
- ``diffusers_matched`` (``--with-matched``): the same diffusers model with lit_gen's quickstart optimisation settings
  (AdamW lr 2e-3, 100 warm-up steps, cosine, EMA 0.999 with the (1+n)/(10+n) warm-up), to tell
  what the framework/model does from what the hyperparameters do.

All use batches of 64 digits. Each run's cosine schedule is sized to the steps its budget allows,
from a short calibration run (all arms side by side too). FID: the digits domain classifier's
features (``lit_gen.metrics``), the same number of samples, the same real reference (the train
split, 1,374 images); lower is better. Target: FID(lit_gen) <= 0.5 x FID(diffusers).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import REPO, Recorder, base_parser, child_env, digits_classifier, setup

ARMS = ("lit_gen", "diffusers", "diffusers_matched")
CONFIG = "configs/ddpm_digits.yaml"
TARGET = 0.5
#: diffusers' train_unconditional.py defaults, and lit_gen's ddpm_digits.yaml settings for the matched arm.
PEER_SETTINGS = {
    "diffusers": {"lr": 1e-4, "betas": (0.95, 0.999), "weight_decay": 1e-6, "eps": 1e-8, "warmup_steps": 500,
                  "ema": {"decay": 0.9999, "use_ema_warmup": True, "inv_gamma": 1.0, "power": 0.75}},
    "diffusers_matched": {"lr": 2e-3, "betas": (0.9, 0.999), "weight_decay": 0.0, "eps": 1e-8, "warmup_steps": 100,
                          "ema": {"decay": 0.999, "use_ema_warmup": False}},
}


# ----------------------------------------------------------------------------------- the peer
def peer_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=2, block_out_channels=(32, 64),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))


def digits_train_images() -> torch.Tensor:
    """The same 1,374 training digits lit_gen trains on, in [-1, 1], shape (N, 1, 8, 8)."""
    from lit_gen.data.digits import DigitsDataModule

    dataset = DigitsDataModule().dataset("train")
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


class PeerTrainer:
    """diffusers' unconditional training loop (train_unconditional.py), on one CPU thread."""

    def __init__(self, variant: str, total_steps: int, seed: int = 0) -> None:
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        settings = PEER_SETTINGS[variant]
        torch.manual_seed(seed)
        self.unet = peer_unet().train()
        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=settings["lr"], betas=settings["betas"],
                                           weight_decay=settings["weight_decay"], eps=settings["eps"])
        self.lr_scheduler = get_scheduler("cosine", optimizer=self.optimizer, num_warmup_steps=settings["warmup_steps"],
                                          num_training_steps=max(1, total_steps))
        self.ema = EMAModel(self.unet.parameters(), model_cls=type(self.unet), model_config=self.unet.config,
                            **settings["ema"])
        self.images = digits_train_images()
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.steps = 0

    def batch(self, size: int = 64) -> torch.Tensor:
        if len(self.order) < size:  # a new shuffled epoch, dropping the last partial batch like lit_gen
            self.order = torch.randperm(len(self.images), generator=self.generator)
        index, self.order = self.order[:size], self.order[size:]
        return self.images[index]

    def step(self) -> float:
        clean = self.batch()
        noise = torch.randn(clean.shape)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (clean.shape[0],)).long()
        noisy = self.scheduler.add_noise(clean, noise, timesteps)
        loss = torch.nn.functional.mse_loss(self.unet(noisy, timesteps).sample.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(self.unet.parameters())
        self.steps += 1
        return float(loss)

    @torch.no_grad()
    def sample(self, n: int, batch_size: int, seed: int) -> torch.Tensor:
        from diffusers import DDIMPipeline, DDIMScheduler

        self.ema.copy_to(self.unet.parameters())
        pipeline = DDIMPipeline(unet=self.unet.eval(), scheduler=DDIMScheduler.from_config(self.scheduler.config))
        pipeline.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(seed)
        out = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            images = pipeline(batch_size=b, generator=generator, num_inference_steps=50, eta=0.0, output_type="np").images
            out.append(torch.from_numpy(images).permute(0, 3, 1, 2))  # (b, 1, 8, 8) in [0, 1]
        return torch.cat(out)


# ----------------------------------------------------------------------------------- workers
def _lit_gen_model():
    from lit_gen.config import load_config
    from lit_gen.fit import build

    cfg = load_config(REPO / CONFIG)
    torch.manual_seed(cfg.seed)
    datamodule, model = build(cfg)
    datamodule.setup("fit")
    return datamodule, model


def calibrate(arm: str, seconds: float) -> dict:
    """Seconds per training step of ``arm`` (after two warm-up steps)."""
    if arm == "lit_gen":
        datamodule, model = _lit_gen_model()
        model.train()
        optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=model.lr)

        def endless():
            while True:  # a fast machine outruns one epoch (21 batches) during the calibration
                yield from datamodule.train_dataloader()

        batches = endless()

        def step():
            loss = model.loss(next(batches)).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            model.update_ema()
    else:
        peer = PeerTrainer(arm, total_steps=1000)
        step = peer.step
    for _ in range(2):
        step()
    n, started = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - started < seconds:
        step()
        n += 1
    return {"seconds_per_step": (time.perf_counter() - started) / n, "steps": n}


def train_and_sample(arm: str, steps: int, budget: float, num_samples: int, workdir: Path, seed: int) -> dict:
    if arm == "lit_gen":
        from lit_gen import fit
        from lit_gen.checkpoints import load_model

        hours, rest = divmod(int(budget), 3600)
        argv = ["--config", str(REPO / CONFIG), "--run-id", "peer", "--resume", "never", f"trainer.max_steps={steps}",
                "trainer.max_epochs=-1", f"trainer.max_time=00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}",
                "logger.wandb=false", f"run.output_dir={workdir}", "eval.report=false", "run.num_samples=0",
                "trainer.accelerator=cpu"]  # quality per CPU-minute: the peer trains on the CPU too
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = fit.main(argv)
        train_seconds = time.perf_counter() - started
        if code != 0:
            raise SystemExit(f"lit_gen.fit failed (exit {code})")
        checkpoint = next(workdir.rglob("last.ckpt"))
        summary = json.loads(next(workdir.rglob("summary.json")).read_text())
        model = load_model(checkpoint, map_location="cpu").eval()
        done = summary["global_step"]
        parameters = sum(p.numel() for p in model.unet.parameters())
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(seed)
        samples = torch.cat([model.sample(min(250, num_samples - s), generator=generator, sampler="ddim", steps=50)
                             for s in range(0, num_samples, 250)])
        extra = {"checkpoint": str(checkpoint)}
    else:
        peer = PeerTrainer(arm, total_steps=steps, seed=seed)
        started = time.perf_counter()
        while peer.steps < steps and time.perf_counter() - started < budget:
            peer.step()
        train_seconds = time.perf_counter() - started
        done = peer.steps
        parameters = sum(p.numel() for p in peer.unet.parameters())
        started = time.perf_counter()
        samples = peer.sample(num_samples, 250, seed)
        extra = {}
    sample_seconds = time.perf_counter() - started
    path = workdir / f"{arm}_samples.pt"
    torch.save((samples.clamp(0, 1) * 255).round().to(torch.uint8), path)
    return {"arm": arm, "steps_planned": steps, "steps_done": done, "train_seconds": round(train_seconds, 1),
            "sample_seconds": round(sample_seconds, 1), "parameters": parameters, "samples": str(path), **extra}


def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.calibrate:
        result = calibrate(args.worker, args.calibrate)
    else:
        result = train_and_sample(args.worker, args.steps, args.budget, args.num_samples, Path(args.dir), args.seed)
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------- driver
def run_side_by_side(arm_args: dict[str, list[str]], threads: int, timeout: float) -> dict[str, dict]:
    """Start one worker per arm (with its own arguments) at once, wait for all, return their RESULT lines."""
    procs = {}
    logs = {}
    for arm, extra_args in arm_args.items():
        logs[arm] = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "bench.diffusers_peer", "--worker", arm, "--threads", str(threads), *extra_args]
        procs[arm] = subprocess.Popen(command, cwd=REPO, env=child_env(OMP_NUM_THREADS=str(threads)),
                                      stdout=subprocess.PIPE, stderr=logs[arm], text=True)
    results = {}
    for arm, proc in procs.items():
        out, _ = proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            logs[arm].seek(0)
            raise SystemExit(f"the {arm} worker failed:\n{logs[arm].read().decode(errors='replace')[-3000:]}")
        results[arm] = json.loads(lines[-1][len("RESULT "):])
    return results


def score(samples_path: str, extractor, reference) -> float:
    from lit_gen.metrics.fid import FeatureMoments, frechet_distance_of

    images = torch.load(samples_path, weights_only=True).float() / 255.0
    moments = FeatureMoments(extractor.num_features)
    for chunk in images.split(500):
        moments.update(extractor.extract(chunk).features)
    return frechet_distance_of(reference, moments.stats())


def real_floor(extractor, reference, datamodule) -> float:
    """FID of the real test split (270 images) against the reference: roughly what a perfect model scores here."""
    from lit_gen.metrics.fid import frechet_distance_of
    from lit_gen.metrics.reference import dataset_statistics

    return frechet_distance_of(reference, dataset_statistics(datamodule.dataset("test"), extractor).stats)


def explain(runs: dict, ratio: float) -> str:
    """Why lit_gen did not reach half the peer's FID, from what the run measured."""
    lit, peer = runs["lit_gen"], runs["diffusers"]
    parts = [f"same architecture and parameter count ({lit['parameters']:,} vs {peer['parameters']:,}); lit_gen did "
             f"{lit['steps_done']} steps and diffusers {peer['steps_done']} in the budget, so the difference is in what "
             f"each step learns, i.e. the optimisation settings"]
    if "diffusers_matched" in runs:
        matched = runs["diffusers_matched"]
        parts.append(f"diffusers with lit_gen's settings scores {matched['fid']:.2f} against lit_gen's {lit['fid']:.2f} "
                     f"({lit['fid'] / matched['fid']:.2f}x), so what lit_gen gains over the recommended run comes from its "
                     f"quickstart settings (lr 2e-3, 100 warm-up steps, short-run EMA) more than from the framework")
    if ratio > TARGET:
        parts.append(f"a 2x FID gap needs the peer's settings to fail badly in this budget; at {ratio:.2f}x they do not")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=240.0, help="seconds of training per arm (default 240)")
    parser.add_argument("--num-samples", type=int, default=None, help="DDIM-50 samples per arm (default 1000, quick 300)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per arm (default 1)")
    parser.add_argument("--calibration", type=float, default=15.0, help="seconds of the step-time calibration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with-matched", action="store_true",
                        help="add a third arm: diffusers with lit_gen's optimisation settings (each arm then gets less CPU)")
    parser.add_argument("--keep", default=str(REPO / "runs" / "bench" / "peer"),
                        help="folder that keeps lit_gen's checkpoint and the samples (bench.sampling can reuse the checkpoint)")
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--calibrate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    setup()
    arms = ARMS if args.with_matched else ARMS[:2]
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise SystemExit("bench.diffusers_peer needs diffusers: pip install -e \".[bench]\" (or .venv/bin/pip install diffusers)")
    num_samples = args.num_samples or (300 if args.quick else 1000)
    rec = Recorder("diffusers_peer", "digits DDPM: lit_gen vs a diffusers training loop, FID per equal CPU budget",
                   extra_versions=("diffusers",))
    rec.numbers.update(budget_seconds=args.budget, num_samples=num_samples, threads_per_arm=args.threads,
                       arms=list(arms), peer_settings={k: {**v, "betas": list(v["betas"])} for k, v in PEER_SETTINGS.items()})

    calibration = run_side_by_side({arm: ["--calibrate", str(args.calibration)] for arm in arms}, args.threads, timeout=900)
    rec.numbers["calibration"] = calibration
    # 7% headroom: lit_gen also validates and checkpoints each epoch, and the load may change.
    plan = {arm: max(10, int(0.93 * args.budget / calibration[arm]["seconds_per_step"])) for arm in arms}
    rec.numbers["planned_steps"] = plan

    workdir = Path(args.keep)
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    for arm in arms:
        (workdir / arm).mkdir(parents=True)
    runs = run_side_by_side({arm: ["--steps", str(plan[arm]), "--budget", str(args.budget), "--num-samples", str(num_samples),
                                   "--dir", str(workdir / arm), "--seed", str(args.seed)] for arm in arms},
                            args.threads, timeout=args.budget * 4 + 1800)

    from lit_gen.data.digits import DigitsDataModule
    from lit_gen.metrics.features import ClassifierFeatures
    from lit_gen.metrics.reference import dataset_statistics

    classifier = digits_classifier()
    extractor = ClassifierFeatures.from_file(classifier)
    datamodule = DigitsDataModule()
    reference = dataset_statistics(datamodule.dataset("train"), extractor).stats
    for arm in arms:
        runs[arm]["fid"] = round(score(runs[arm]["samples"], extractor, reference), 3)
    floor = real_floor(extractor, reference, datamodule)
    rec.numbers["runs"] = runs
    rec.numbers["fid_protocol"] = {"features": f"digits domain classifier ({classifier})", "reference": "digits train split (1374)",
                                   "generated": num_samples, "sampler": "DDIM 50 steps, eta 0, EMA weights",
                                   "real_test_split_fid": round(floor, 3)}
    ratio = runs["lit_gen"]["fid"] / runs["diffusers"]["fid"]
    rec.numbers["fid_ratio_vs_diffusers"] = round(ratio, 3)
    if "diffusers_matched" in runs:
        rec.numbers["fid_ratio_vs_diffusers_matched"] = round(runs["lit_gen"]["fid"] / runs["diffusers_matched"]["fid"], 3)
    for arm in arms:
        r = runs[arm]
        rec.headline[f"FID {arm}"] = (f"{r['fid']:.2f} ({r['steps_done']} steps in {r['train_seconds']:.0f} s, "
                                      f"{r['parameters'] / 1e6:.2f}M params)")
    rec.headline["FID lit_gen/diffusers"] = f"{ratio:.2f}x" + (
        f" (vs diffusers with lit_gen's settings: {rec.numbers['fid_ratio_vs_diffusers_matched']:.2f}x)" if "diffusers_matched" in runs else "")
    rec.headline["real test split FID (floor)"] = f"{floor:.2f}"
    rec.target("FID lit_gen / FID diffusers (recommended settings)", ratio, "<=", TARGET, "x", explain(runs, ratio))
    short = {arm: f"{runs[arm]['steps_done']}/{plan[arm]}" for arm in arms if runs[arm]["steps_done"] < 0.9 * plan[arm]}
    if short:
        rec.notes.append(f"the machine's load rose after the calibration: {', '.join(f'{a} {s}' for a, s in short.items())} "
                         "planned steps were done when the budget ran out, so those cosine schedules did not reach zero.")
    rec.notes.append(f"{len(arms)} training processes ran at once, {args.threads} torch thread each, on a {os.cpu_count()}-core "
                     "machine shared with other jobs: each arm got the same share of the CPU.")
    path = rec.write(args.out)
    rec.report(path)


if __name__ == "__main__":
    main()
