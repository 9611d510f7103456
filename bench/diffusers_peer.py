"""Quality per CPU budget: lit_gen's digits DDPM against diffusers at its best, several seeds, an interval verdict.

    python -m bench.diffusers_peer                          # 8x8, 240 s per run, 3 seeds, 1000 samples
    python -m bench.diffusers_peer --resolution 16          # data.image_size=16 (a third U-Net level)
    python -m bench.diffusers_peer --quick                  # 60 s per run, a grid of 2, 200 samples
    python -m bench.diffusers_peer --budget 60 --seeds 1 --quick --out /tmp/peer.json   # a smoke run
    python -m bench.diffusers_peer --resolution 16 --peers diffusers --lit-gen-variant flow=model.objective=flow
                                                            # one peer; a second lit_gen arm (rectified flow)

Needs diffusers (``pip install -e ".[bench]"``); denoising-diffusion-pytorch gets its two arms
when it is installed (``pip install denoising-diffusion-pytorch``), and the record says when not.

Every run trains alone, one after another (never side by side: on 2 cores, parallel arms share
the CPU unevenly as the load changes), one torch thread by default (``--threads``), on the CPU, for the same wall-clock
budget, on the same images: all 1,797 digits (``data.train_split=all``), batch 64.

Arms:

- ``lit_gen``: ``lit_gen.fit`` with ``configs/ddpm_digits.yaml`` as a user runs it: validation,
  sample grids, checkpoints, the W&B logger (offline) and ``report.md``. The budget covers the
  whole ``fit`` call (recorded): ``trainer.max_time`` is the budget less lit_gen's fixed costs
  (start-up, W&B, final checkpoint, grid and report, measured by a 2-step fit), and its cosine
  schedule is sized to the steps that leaves (a calibration of the step time, less 10% for epoch ends).
- ``lit_gen_NAME`` (``--lit-gen-variant NAME=KEY=VALUE[;KEY=VALUE]``, repeatable): the same run with more
  config overrides, e.g. ``model.objective=flow``; a continuous objective's 50-step request runs as Euler,
  its ODE's DDIM, and its FID records say so. The targets compare the lit_gen arm with the lower mean FID.
- ``diffusers_recipe``: diffusers' ``UNet2DModel`` (the same layout as lit_gen's U-Net and exactly
  the same parameter count) + ``DDPMScheduler`` (1000 linear betas, epsilon) + ``EMAModel``, in
  the loop of diffusers' ``examples/unconditional_image_generation/train_unconditional.py`` with
  its documented settings scaled to the budget: AdamW lr 1e-4, betas (0.95, 0.999), weight decay
  1e-6, cosine schedule whose warm-up is min(500, 5% of the steps the budget allows), clipping at
  1, EMA with the example's warm-up (inv_gamma 1, power 3/4) up to 0.9999.
- ``diffusers_grid_best``: the same loop with the best setting of a small grid (learning rate x
  EMA max decay, recorded with every FID), run under the same budget with seed 0. The best
  setting then runs the other seeds; its seed-0 run is the grid's, which favours the peer
  (selected on that very run), i.e. it can only make lit_gen's verdict harder. When the best
  learning rate is the grid's largest, the grid is extended one step up (at the best EMA) first.
- ``ddpm_pytorch_recipe`` / ``ddpm_pytorch_grid_best`` (when installed): denoising-diffusion-pytorch's
  ``Unet`` (its own layout: linear attention, full attention at the innermost level; the width
  closest to lit_gen's parameter count, both counts recorded) in its ``GaussianDiffusion``, trained
  by the loop of its ``Trainer.train`` with its README recipe (Adam 8e-5, betas (0.9, 0.99), no
  warm-up, clipping at 1, EMA 0.995 every 10 steps with ema-pytorch's warm-up, v-prediction,
  sigmoid schedule), and the best of its own learning rate x EMA grid. Samples: its DDIM, 50 steps.

Samples: DDIM, 50 steps, eta 0, EMA weights, for every arm (each library's own DDIM); FID on the digits domain classifier's
features (``python -m lit_gen.metrics.classifier``, fixed seed; the records carry its SHA-256,
test accuracy and command) against all 1,797 digits at the run's resolution. Network size and
training FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``, forward + backward) are
measured for both networks and recorded.

Targets, each by the interval rule of ``bench/stats.py`` over the seeds (Welch t on the log ratio
of means): FID(lit_gen) / FID(best peer arm) <= 1 (at least as good as the peer at its best) and
<= 0.5 (twice as good). The best peer arm is the one with the lower mean FID.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import (CACHE, REPO, Recorder, answer_as_worker, base_parser, call_worker, digits_classifier, digits_fid_protocol, feature_of,
                          load_average, parse_named_overrides, sample_in_chunks, score_samples, setup)
from bench.stats import mean_sd, ratio_of_means

CONFIG = "configs/ddpm_digits.yaml"
BATCH = 64
#: The U-Net layout per resolution: lit_gen's channel_mults and diffusers' blocks (attention at 4x4 in both).
LAYOUTS: dict[int, dict[str, Any]] = {
    8: {"channel_mults": [1, 2], "blocks": (32, 64), "down": ("DownBlock2D", "AttnDownBlock2D"),
        "up": ("AttnUpBlock2D", "UpBlock2D")},
    16: {"channel_mults": [1, 2, 2], "blocks": (32, 64, 64), "down": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
         "up": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")},
}
#: diffusers' train_unconditional.py defaults (its warm-up is capped at WARMUP_SHARE of the planned steps).
RECIPE = {"lr": 1e-4, "betas": [0.95, 0.999], "weight_decay": 1e-6, "eps": 1e-8, "warmup_steps": 500,
          "ema_max_decay": 0.9999, "ema_inv_gamma": 1.0, "ema_power": 0.75}
WARMUP_SHARE = 0.05
#: denoising-diffusion-pytorch's README recipe (its Trainer's defaults where the README keeps them): Adam
#: 8e-5, betas (0.9, 0.99), no warm-up, clipping at 1, EMA 0.995 updated every 10 steps (ema-pytorch's
#: own warm-up), v-prediction and the sigmoid schedule (GaussianDiffusion's defaults).
DDP_RECIPE = {"lr": 8e-5, "betas": [0.9, 0.99], "ema_decay": 0.995, "ema_update_every": 10, "max_grad_norm": 1.0,
              "objective": "pred_v", "beta_schedule": "sigmoid"}
#: Its Unet (linear attention, full attention innermost) at the width closest to lit_gen's parameter count.
DDP_LAYOUTS = {8: {"dim": 36, "dim_mults": (1, 2)}, 16: {"dim": 34, "dim_mults": (1, 2, 2)}}
#: Learning rate x EMA decay grids per peer (full, quick).
GRIDS = {"diffusers": (((3e-4, 1e-3, 3e-3), (0.999, 0.9999)), ((1e-3, 3e-3), (0.999,))),
         "ddpm_pytorch": (((3e-4, 1e-3, 3e-3), (0.995, 0.999)), ((1e-3, 3e-3), (0.995,)))}
#: Share of the budget lit_gen's schedule plans for training steps (the rest: validation, grids, checkpoints).
LIT_GEN_STEP_SHARE = 0.9
PEER_STEP_SHARE = 0.97
TARGETS = (1.0, 0.5)


# ----------------------------------------------------------------------------------- the networks
def peer_unet(resolution: int):
    from diffusers import UNet2DModel

    layout = LAYOUTS[resolution]
    return UNet2DModel(sample_size=resolution, in_channels=1, out_channels=1, layers_per_block=2,
                       block_out_channels=layout["blocks"], down_block_types=layout["down"], up_block_types=layout["up"])


def lit_gen_overrides(resolution: int, seed: int, variant: list[str] = ()) -> list[str]:
    """The overrides of every lit_gen run, then the variant's own (e.g. ``model.objective=flow``)."""
    return ["data.train_split=all", f"data.image_size={resolution}", f"data.batch_size={BATCH}",
            f"model.channel_mults={LAYOUTS[resolution]['channel_mults']}", f"seed={seed}", *variant]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=KEY=VALUE[;KEY=VALUE]`` (``--lit-gen-variant``) -> the arm ``lit_gen_NAME`` and its overrides."""
    name, overrides = parse_named_overrides(text, "--lit-gen-variant")
    return f"lit_gen_{name}", overrides


def lit_gen_model(resolution: int, seed: int = 0):
    from lit_gen.config import load_config
    from lit_gen.fit import build

    cfg = load_config(REPO / CONFIG, lit_gen_overrides(resolution, seed))
    torch.manual_seed(seed)
    datamodule, model = build(cfg)
    datamodule.setup("fit")
    return datamodule, model


def training_flops_per_image(net_loss, images: torch.Tensor) -> int:
    """FLOPs of one forward + backward pass of ``net_loss(images)``, per image (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        net_loss(images).backward()
    return int(counter.get_total_flops() // images.shape[0])


def measure_networks(resolution: int) -> dict:
    """Trained parameters and training FLOPs per image of both networks at ``resolution``."""
    from lit_gen.models.parameters import count_parameters

    _, model = lit_gen_model(resolution)
    peer = peer_unet(resolution)
    x = torch.randn(8, 1, resolution, resolution)
    t = torch.randint(0, 1000, (8,))
    lit = training_flops_per_image(lambda im: model.unet(im, t).square().mean(), x)
    other = training_flops_per_image(lambda im: peer(im, t).sample.square().mean(), x)
    counts = count_parameters(model)
    out = {"lit_gen": {"parameters": counts.trained, "parameter_counts": counts.as_dict(), "training_flops_per_image": lit},
           "diffusers": {"parameters": sum(p.numel() for p in peer.parameters()), "training_flops_per_image": other}}
    if "ddpm_pytorch" in installed_peers():
        unet = ddp_diffusion(resolution).model
        out["ddpm_pytorch"] = {"parameters": sum(p.numel() for p in unet.parameters()),
                               "training_flops_per_image": training_flops_per_image(lambda im: unet(im, t).square().mean(), x),
                               "layout": {k: list(v) if isinstance(v, tuple) else v for k, v in DDP_LAYOUTS[resolution].items()}}
    return out


def all_digits(resolution: int) -> torch.Tensor:
    """All 1,797 digits in [-1, 1] at ``resolution``: the images every arm trains on."""
    from lit_gen.data.digits import DigitsDataModule

    dataset = DigitsDataModule(train_split="all", image_size=resolution).dataset("train")
    return dataset.__getitems__(list(range(len(dataset)))).columns[0]


class PeerTrainer:
    """The loop of diffusers' train_unconditional.py, on the CPU, with the given settings."""

    def __init__(self, settings: dict, total_steps: int, resolution: int, seed: int) -> None:
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        torch.manual_seed(seed)
        self.unet = peer_unet(resolution).train()
        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=settings["lr"], betas=tuple(settings["betas"]),
                                           weight_decay=settings["weight_decay"], eps=settings["eps"])
        self.lr_scheduler = get_scheduler("cosine", optimizer=self.optimizer, num_warmup_steps=settings["warmup_steps"],
                                          num_training_steps=max(1, total_steps))
        self.ema = EMAModel(self.unet.parameters(), decay=settings["ema_max_decay"], use_ema_warmup=True,
                            inv_gamma=settings["ema_inv_gamma"], power=settings["ema_power"],
                            model_cls=type(self.unet), model_config=self.unet.config)
        self.images = all_digits(resolution)
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.steps = 0

    def batch(self) -> torch.Tensor:
        if len(self.order) < BATCH:  # a new shuffled epoch, dropping the last partial batch like lit_gen
            self.order = torch.randperm(len(self.images), generator=self.generator)
        index, self.order = self.order[:BATCH], self.order[BATCH:]
        return self.images[index]

    def step(self) -> None:
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

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> torch.Tensor:
        from diffusers import DDIMPipeline, DDIMScheduler

        self.ema.copy_to(self.unet.parameters())
        pipeline = DDIMPipeline(unet=self.unet.eval(), scheduler=DDIMScheduler.from_config(self.scheduler.config))
        pipeline.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(seed)
        out = []
        for start in range(0, n, 250):
            b = min(250, n - start)
            images = pipeline(batch_size=b, generator=generator, num_inference_steps=50, eta=0.0, output_type="np").images
            out.append(torch.from_numpy(images).permute(0, 3, 1, 2))  # (b, 1, R, R) in [0, 1]
        return torch.cat(out)


class DDPTrainer:
    """The loop of denoising-diffusion-pytorch's ``Trainer.train`` (Adam, clipping, ema-pytorch EMA), on the CPU."""

    def __init__(self, settings: dict, total_steps: int, resolution: int, seed: int) -> None:
        from denoising_diffusion_pytorch import GaussianDiffusion
        from ema_pytorch import EMA

        torch.manual_seed(seed)
        self.diffusion = ddp_diffusion(resolution, settings).train()
        self.optimizer = torch.optim.Adam(self.diffusion.parameters(), lr=settings["lr"], betas=tuple(settings["betas"]))
        self.ema = EMA(self.diffusion, beta=settings["ema_decay"], update_every=settings["ema_update_every"])
        self.max_grad_norm = settings["max_grad_norm"]
        self.images = (all_digits(resolution) + 1) / 2  # the library normalises [0, 1] images itself
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.steps = 0
        assert isinstance(self.diffusion, GaussianDiffusion)

    batch = PeerTrainer.batch

    def step(self) -> None:
        loss = self.diffusion(self.batch())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.diffusion.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.ema.update()
        self.steps += 1

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> torch.Tensor:
        model = self.ema.ema_model.eval()
        torch.manual_seed(seed)  # the library draws its noise from the global generator
        return torch.cat([model.sample(batch_size=min(250, n - start)) for start in range(0, n, 250)])  # in [0, 1]


def ddp_diffusion(resolution: int, settings: dict = DDP_RECIPE):
    """denoising-diffusion-pytorch's Unet in its GaussianDiffusion (1000 steps; DDIM-50, eta 0, for sampling)."""
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    unet = Unet(dim=DDP_LAYOUTS[resolution]["dim"], dim_mults=DDP_LAYOUTS[resolution]["dim_mults"], channels=1)
    return GaussianDiffusion(unet, image_size=resolution, timesteps=1000, sampling_timesteps=50, ddim_sampling_eta=0.0,
                             objective=settings["objective"], beta_schedule=settings["beta_schedule"])


TRAINERS = {"diffusers": PeerTrainer, "ddpm_pytorch": DDPTrainer}


def installed_peers() -> list[str]:
    return ["diffusers"] + (["ddpm_pytorch"] if _installed("denoising_diffusion_pytorch") else [])


# ----------------------------------------------------------------------------------- one run (a worker process)
def calibrate(kind: str, resolution: int, seconds: float) -> dict:
    """Seconds per training step (after two warm-up steps) of lit_gen's model or the peer's loop."""
    if kind == "lit_gen":
        datamodule, model = lit_gen_model(resolution)
        model.train()
        optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=model.lr)

        def endless():
            while True:
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
        step = TRAINERS[kind](recipe_settings(kind, 1000), 1000, resolution, 0).step
    for _ in range(2):
        step()
    n, started = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - started < seconds:
        step()
        n += 1
    return {"seconds_per_step": (time.perf_counter() - started) / n, "steps": n}


def fixed_cost(resolution: int, workdir: Path) -> dict:
    """Seconds of a 2-step ``lit_gen.fit`` beyond its steps: start-up, W&B, validation, grids, checkpoints, report."""
    from lit_gen import fit

    argv = ["--config", str(REPO / CONFIG), "--run-id", "fixed", "--resume", "never", *lit_gen_overrides(resolution, 0),
            "trainer.max_steps=2", "trainer.max_epochs=-1", f"run.output_dir={workdir}", "trainer.accelerator=cpu"]
    started = time.perf_counter()
    if fit.main(argv) != 0:
        raise SystemExit("lit_gen.fit failed in the fixed-cost calibration")
    return {"seconds": time.perf_counter() - started}


def run_lit_gen(spec: dict) -> tuple[torch.Tensor, dict]:
    from lit_gen import fit
    from lit_gen.checkpoints import load_model

    workdir = Path(spec["dir"])
    # The whole fit call must fit the budget: training gets what its fixed costs leave.
    budget = max(1, int(spec["budget"] - spec.get("fixed_seconds", 0.0)))
    hours, rest = divmod(budget, 3600)
    argv = ["--config", str(REPO / CONFIG), "--run-id", f"seed{spec['seed']}", "--resume", "never",
            *lit_gen_overrides(spec["resolution"], spec["seed"], spec.get("overrides") or []),
            f"trainer.max_steps={spec['steps']}",
            "trainer.max_epochs=-1", f"trainer.max_time=00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}",
            f"run.output_dir={workdir}", "trainer.accelerator=cpu"]  # quality per CPU budget: the peer trains on the CPU too
    started = time.perf_counter()
    code = fit.main(argv)  # its summary goes to this worker's stdout, which the driver discards
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"lit_gen.fit failed (exit {code})")
    summary = json.loads(next(workdir.rglob("summary.json")).read_text())
    model = load_model(next(workdir.rglob("last.ckpt")), map_location="cpu").eval()
    started = time.perf_counter()
    samples = sample_in_chunks(model, spec["num_samples"], spec["sample_seed"], sampler="ddim", steps=50)
    return samples, {"steps_done": summary["global_step"], "train_seconds": round(seconds, 1),
                     "sample_seconds": round(time.perf_counter() - started, 1), "parameters": summary["parameters"]}


def run_peer(spec: dict) -> tuple[torch.Tensor, dict]:
    peer = TRAINERS[spec["kind"]](spec["settings"], spec["steps"], spec["resolution"], spec["seed"])
    started = time.perf_counter()
    while peer.steps < spec["steps"] and time.perf_counter() - started < spec["budget"]:
        peer.step()
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    samples = peer.sample(spec["num_samples"], spec["sample_seed"])
    network = peer.unet if spec["kind"] == "diffusers" else peer.diffusion.model
    return samples, {"steps_done": peer.steps, "train_seconds": round(seconds, 1),
                     "sample_seconds": round(time.perf_counter() - started, 1),
                     "parameters": sum(p.numel() for p in network.parameters())}


def worker(spec: dict) -> dict:
    torch.set_num_threads(spec.get("threads", 1))
    if spec.get("fixed_cost"):
        return fixed_cost(spec["resolution"], Path(spec["dir"]))
    if spec.get("calibrate"):
        return calibrate(spec["kind"], spec["resolution"], spec["calibrate"])
    samples, result = (run_lit_gen if spec["kind"] == "lit_gen" else run_peer)(spec)
    result["overrides"] = spec.get("overrides") or []
    path = Path(spec["dir"]) / "samples.pt"
    torch.save((samples.clamp(0, 1) * 255).round().to(torch.uint8), path)
    return {**result, "samples": str(path)}


# ----------------------------------------------------------------------------------- the driver
def run_worker(spec: dict, timeout: float) -> dict:
    """One run in a fresh process (``--threads`` torch threads), alone on the machine as far as this benchmark goes."""
    load_before = load_average()
    result = call_worker("bench.diffusers_peer", spec, spec.get("threads", 1), timeout, spec.get("arm", spec["kind"]))
    return {**result, "load_average_before": load_before, "load_average_after": load_average()}


def protocol_for(protocol: dict, overrides: list[str] | None) -> dict:
    """The sampling protocol of one arm, as ``lit_gen.sample`` would record it for the config with ``overrides``:
    a continuous objective's 50-step DDIM request runs as Euler (no eta)."""
    from lit_gen.config import load_config
    from lit_gen.diffusion.samplers import sampler_that_runs

    objective = load_config(REPO / CONFIG, list(overrides or [])).model["objective"]
    sampler = sampler_that_runs(protocol["sampler"], discrete=objective == "ddpm")
    return protocol if sampler == protocol["sampler"] else {**protocol, "sampler": sampler, "eta": None}


def peer_settings(lr: float, ema: float, steps: int) -> dict:
    """diffusers' recipe with another learning rate and EMA max decay; warm-up capped at 5% of the steps."""
    return {**RECIPE, "lr": lr, "ema_max_decay": ema, "warmup_steps": min(RECIPE["warmup_steps"], int(WARMUP_SHARE * steps))}


def grid_settings(peer: str, lr: float, ema: float, steps: int) -> dict:
    """A peer's recipe with another learning rate and EMA decay."""
    if peer == "diffusers":
        return peer_settings(lr, ema, steps)
    return {**DDP_RECIPE, "lr": lr, "ema_decay": ema}  # its recipe has no learning-rate warm-up to scale


def recipe_settings(peer: str, steps: int) -> dict:
    """A peer's documented recipe scaled to the steps the budget allows."""
    if peer == "diffusers":
        return peer_settings(RECIPE["lr"], RECIPE["ema_max_decay"], steps)
    return dict(DDP_RECIPE)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=None, help="seconds per run, whole loop (default 240, quick 60)")
    parser.add_argument("--resolution", type=int, choices=sorted(LAYOUTS), default=8, help="image side (data.image_size)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3; the interval needs 3)")
    parser.add_argument("--num-samples", type=int, default=None, help="DDIM-50 samples per run (default 1000, quick 200)")
    parser.add_argument("--calibration", type=float, default=None, help="seconds of each step-time calibration (default 15, quick 3)")
    parser.add_argument("--keep", default=None,
                        help="folder for checkpoints and samples (default runs/bench/peer at 8x8, runs/bench/peer16 at 16x16; "
                             "bench.sampling --quick reuses lit_gen's 8x8 checkpoint)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of every run (default 1; at most the cores, since runs go one at a time)")
    parser.add_argument("--peers", nargs="+", choices=sorted(TRAINERS), default=None,
                        help="peers to run (default: every installed one); the record names those left out")
    parser.add_argument("--lit-gen-variant", action="append", default=[], metavar="NAME=KEY=VALUE[;KEY=VALUE]",
                        help="one more lit_gen arm, lit_gen_NAME, with these config overrides (repeatable), e.g. "
                             "flow=model.objective=flow; the target compares the lit_gen arm with the lower mean FID")
    parser.add_argument("--worker-spec", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if answer_as_worker(args.worker_spec, worker):
        return
    setup()
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise SystemExit("bench.diffusers_peer needs diffusers: pip install -e \".[bench]\"") from None
    if args.seeds < 1:
        raise SystemExit("--seeds must be at least 1 (3 or more for a verdict)")
    budget = args.budget or (60.0 if args.quick else 240.0)
    num_samples = args.num_samples or (200 if args.quick else 1000)
    calibration_seconds = args.calibration or (3.0 if args.quick else 15.0)
    peers = installed_peers()
    if args.peers:
        missing = sorted(set(args.peers) - set(peers))
        if missing:
            raise SystemExit(f"--peers {' '.join(missing)}: not installed (pip install -e \".[bench]\")")
        peers = [p for p in peers if p in args.peers]
    variants = dict(parse_variant(v) for v in args.lit_gen_variant)
    lit_arms = {"lit_gen": [], **variants}
    grids = {peer: [(lr, ema) for lr in GRIDS[peer][args.quick][0] for ema in GRIDS[peer][args.quick][1]] for peer in peers}
    resolution = args.resolution
    if not 1 <= args.threads <= (os.cpu_count() or 1):
        raise SystemExit(f"--threads {args.threads}: between 1 and the {os.cpu_count()} cores")
    torch.set_num_threads(args.threads)
    rec = Recorder("diffusers_peer", f"digits DDPM at {resolution}x{resolution}: lit_gen vs diffusers at its best, "
                   f"FID per equal CPU budget, {args.seeds} seeds", extra_versions=("diffusers", "denoising_diffusion_pytorch"))
    if "ddpm_pytorch" not in peers:
        rec.notes.append("no denoising-diffusion-pytorch arms: " + (
            "left out by --peers" if _installed("denoising_diffusion_pytorch") else
            "it is not installed (pip install denoising-diffusion-pytorch)"))

    networks = measure_networks(resolution)
    rec.numbers.update(budget_seconds=budget, resolution=resolution, seeds=args.seeds, num_samples=num_samples,
                       batch_size=BATCH, threads=args.threads, networks=networks, peers=peers, lit_gen_arms=lit_arms,
                       recipes={"diffusers": RECIPE, "ddpm_pytorch": DDP_RECIPE},
                       grids={peer: [list(g) for g in grid] for peer, grid in grids.items()})
    timeout = budget * 4 + 900
    base = {"resolution": resolution, "budget": budget, "num_samples": num_samples, "threads": args.threads}
    calibration = {kind: run_worker({**base, "kind": kind, "calibrate": calibration_seconds}, timeout)
                   for kind in ("lit_gen", *peers)}
    with tempfile.TemporaryDirectory(prefix="lit_gen_peer_") as tmp:
        calibration["lit_gen_fixed"] = run_worker({**base, "kind": "lit_gen", "fixed_cost": True, "dir": tmp}, timeout)
    # Two steps' worth of the fixed run were training; the rest is what every lit_gen run pays besides its steps.
    fixed = max(0.0, calibration["lit_gen_fixed"]["seconds"] - 2 * calibration["lit_gen"]["seconds_per_step"])
    base_lit = budget - fixed
    if base_lit <= 0:
        raise SystemExit(f"--budget {budget:g} s is shorter than lit_gen.fit's fixed costs ({fixed:.0f} s measured)")
    plan = {"lit_gen": max(10, int(LIT_GEN_STEP_SHARE * base_lit / calibration["lit_gen"]["seconds_per_step"])),
            **{peer: max(10, int(PEER_STEP_SHARE * budget / calibration[peer]["seconds_per_step"])) for peer in peers}}
    rec.numbers.update(calibration=calibration, planned_steps=plan, lit_gen_fixed_seconds=round(fixed, 1))

    from lit_gen.data.digits import DigitsDataModule
    from lit_gen.metrics.features import ClassifierFeatures
    from lit_gen.metrics.fid import frechet_distance_of
    from lit_gen.metrics.reference import reference_statistics

    classifier = digits_classifier()
    extractor = ClassifierFeatures.from_file(classifier)
    reference_data = DigitsDataModule(train_split="all", image_size=resolution)
    reference = reference_statistics(reference_data, "digits", "train", extractor, cache_dir=None).stats
    protocol = digits_fid_protocol(extractor, "train", reference.count, reference_data, sampler="ddim", steps=50,
                                   generated_count=num_samples)
    feature = feature_of(classifier)
    floor = frechet_distance_of(reference, reference_statistics(reference_data, "digits", "test", extractor,
                                                                cache_dir=None).stats)

    workdir = Path(args.keep) if args.keep else CACHE / ("peer" if resolution == 8 else f"peer{resolution}")
    if workdir.exists():
        shutil.rmtree(workdir)
    runs: list[dict] = []

    def run(arm: str, kind: str, seed: int, settings: dict | None = None) -> dict:
        folder = workdir / arm / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        spec = {**base, "arm": arm, "kind": kind, "seed": seed, "sample_seed": 1000 + seed, "steps": plan[kind],
                "dir": str(folder), "settings": settings, "fixed_seconds": fixed, "overrides": lit_arms.get(arm)}
        print(f"  {arm} seed {seed} ({plan[kind]} steps planned, load {load_average()})", flush=True)
        result = {"arm": arm, "seed": seed, "settings": settings, "steps_planned": plan[kind], **run_worker(spec, timeout)}
        result["fid"] = round(score_samples(result["samples"], extractor, reference), 3)
        runs.append(result)
        return result

    # Each peer's grid, seed 0, one run after another.
    arms: dict[str, list[dict]] = {arm: [] for arm in lit_arms}
    best: dict[str, dict] = {}
    rec.numbers["grid"], rec.numbers["grid_best"] = {}, {}
    for peer in peers:
        grid_runs = [run(f"{peer}_grid_lr{lr:g}_ema{ema:g}", peer, 0, grid_settings(peer, lr, ema, plan[peer]))
                     for lr, ema in grids[peer]]
        best[peer] = min(grid_runs, key=lambda r: r["fid"])
        lrs = sorted({lr for lr, _ in grids[peer]})
        if best[peer]["settings"]["lr"] == lrs[-1]:
            # The best learning rate is the grid's largest: one more step up, so the peer's best is not cut off.
            higher = lrs[-1] * lrs[-1] / lrs[-2] if len(lrs) > 1 else lrs[-1] * 3
            ema = best[peer]["settings"].get("ema_max_decay", best[peer]["settings"].get("ema_decay"))
            grid_runs.append(run(f"{peer}_grid_lr{higher:g}_ema{ema:g}", peer, 0, grid_settings(peer, higher, ema, plan[peer])))
            best[peer] = min(grid_runs, key=lambda r: r["fid"])
            rec.notes.append(f"{peer}: the grid's best learning rate was its largest ({lrs[-1]:g}); the grid was "
                             f"extended to {higher:g} (EMA {ema:g}) before choosing")
        rec.numbers["grid"][peer] = [{"lr": r["settings"]["lr"], "ema": r["settings"].get("ema_max_decay", r["settings"].get("ema_decay")),
                                      "fid": r["fid"]} for r in grid_runs]
        rec.numbers["grid_best"][peer] = best[peer]["settings"]
        arms[f"{peer}_recipe"] = []
        arms[f"{peer}_grid_best"] = [{**best[peer], "arm": f"{peer}_grid_best"}]
    for seed in range(args.seeds):
        order = [(arm, "lit_gen", None) for arm in lit_arms]
        for peer in peers:
            order.append((f"{peer}_recipe", peer, recipe_settings(peer, plan[peer])))
            if seed > 0:
                order.append((f"{peer}_grid_best", peer, best[peer]["settings"]))
        for arm, kind, settings in (order if seed % 2 == 0 else order[::-1]):  # alternate, so drift hits all arms alike
            arms[arm].append(run(arm, kind, seed, settings))

    for arm, results in arms.items():
        for r in results:
            rec.add_fid_value(arm, r["seed"], r["fid"], protocol_for(protocol, r.get("overrides")), feature)
    if any(protocol_for(protocol, overrides) != protocol for overrides in lit_arms.values()):
        rec.fid_varies = ("sampler", "eta")  # a continuous objective's 50 steps run as Euler: shown per row
    fids = {arm: [r["fid"] for r in results] for arm, results in arms.items()}
    summary = {arm: {"mean": round(mean_sd(v)[0], 3), "sd": round(mean_sd(v)[1], 3), "n": len(v),
                     "steps_done": [r["steps_done"] for r in arms[arm]], "train_seconds": [r["train_seconds"] for r in arms[arm]]}
               for arm, v in fids.items()}
    best_peer = min((arm for arm in arms if arm not in lit_arms), key=lambda a: summary[a]["mean"])
    ratios = {arm: ratio_of_means(fids[arm], fids[best_peer]) for arm in lit_arms}
    best_lit = min(lit_arms, key=lambda a: summary[a]["mean"])
    interval = ratios[best_lit]
    rec.numbers.update(runs=runs, arms=summary, best_peer_arm=best_peer, best_lit_gen_arm=best_lit,
                       fid_ratio=interval.as_dict(), fid_ratios={arm: r.as_dict() for arm, r in ratios.items()},
                       real_test_split_fid=round(floor, 3))
    if len(lit_arms) > 1:
        rec.notes.append(f"the targets compare {best_lit}, the lit_gen arm with the lower mean FID, chosen on these very "
                         "runs (as the peer's grid best is); every lit_gen arm's ratio is in numbers.fid_ratios")
    for arm, s in summary.items():
        rec.headline[f"FID {arm}"] = (f"{s['mean']:.2f} ± {s['sd']:.2f} (n={s['n']}; steps {min(s['steps_done'])}-"
                                      f"{max(s['steps_done'])} in {budget:.0f} s)")
    for peer in peers:
        rec.headline[f"{peer} grid (lr / EMA, seed 0)"] = ", ".join(f"{g['lr']:g}/{g['ema']:g}: {g['fid']:.1f}"
                                                                    for g in rec.numbers["grid"][peer])
    rec.headline["networks (trained parameters, MFLOPs per image per training step)"] = ", ".join(
        f"{name} {n['parameters']:,} / {n['training_flops_per_image'] / 1e6:.1f}" for name, n in networks.items())
    rec.headline["real test split FID (floor)"] = f"{floor:.2f}"
    for bound in TARGETS:
        rec.target(f"FID {best_lit} / FID {best_peer}", interval.estimate, "<=", bound, "x", interval=interval)
    short = [f"{r['arm']} seed {r['seed']}: {r['steps_done']}/{r['steps_planned']}" for r in runs
             if r["steps_done"] < 0.9 * r["steps_planned"]]
    if short:
        rec.notes.append("runs that did fewer than 90% of their planned steps in the budget (their cosine schedules did not "
                         "reach zero): " + "; ".join(short))
    over = [f"{r['arm']} seed {r['seed']}: {r['train_seconds']:.0f} s" for r in runs if r["train_seconds"] > 1.1 * budget]
    if over:
        rec.notes.append(f"runs whose whole loop took more than 110% of the {budget:.0f} s budget: " + "; ".join(over))
    under = [f"{r['arm']} seed {r['seed']}: {r['train_seconds']:.0f} s" for arm in lit_arms for r in arms[arm]
             if r["train_seconds"] < 0.9 * budget]
    if under:
        rec.notes.append(f"lit_gen runs whose whole loop used less than 90% of the {budget:.0f} s budget (the fixed-cost "
                         f"calibration, {fixed:.0f} s, over-estimated what these runs paid): " + "; ".join(under))
    rec.notes.append(f"runs one after another, {args.threads} torch thread(s) each, on a {os.cpu_count()}-core machine; each run's load "
                     "average before and after is in numbers.runs.")
    path = rec.write(args.out)
    rec.report(path)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
