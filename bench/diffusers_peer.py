"""Quality per CPU budget: lit_gen's digits recipe against diffusers (and denoising-diffusion-pytorch) at their best.

    python -m bench.diffusers_peer                          # 8x8 (configs/quickstart.yaml), 240 s per run, 3 seeds
    python -m bench.diffusers_peer --resolution 16 --threads 2   # 16x16 (configs/ddpm_digits16.yaml)
    python -m bench.diffusers_peer --quick                  # 60 s per run, a grid of 2, 200 samples
    python -m bench.diffusers_peer --budget 60 --seeds 1 --quick --out /tmp/peer.json   # a smoke run
    python -m bench.diffusers_peer --resolution 16 --peers diffusers --lit-gen-variant eps="model.objective=ddpm"
                                                            # one peer; a second lit_gen arm

Needs diffusers (``pip install -e ".[bench]"``, which also installs denoising-diffusion-pytorch; its arms
run whenever it is installed, and the record says when it is not).

Every run trains alone, one after another (never side by side), ``--threads`` torch threads, on the CPU,
for the same wall-clock budget, on the same images: the yardstick's 1,374 training digits
(``bench.yardstick``: one fixed partition, data.seed 0; the 423 others are held out from every arm),
batch 64. Before and after each run the load average is read; a run whose 1-minute load exceeded its
threads by more than 0.5 is run again (``bench.common.call_worker_quietly``); one still loaded after
three tries is kept in the record but out of every verdict.

Arms:

- ``lit_gen``: ``lit_gen.fit`` with the resolution's config (``CONFIGS``) as a user runs it: validation,
  sample grids, checkpoints, the W&B logger (offline) and ``report.md``. The budget covers the whole
  ``fit`` call (recorded): ``trainer.max_time`` is the budget less lit_gen's fixed costs (start-up, W&B,
  final checkpoint, grid and report, measured by a 2-step fit), and its cosine schedule is sized to the
  steps that leaves (a calibration of the step time, less 10% for epoch ends). It samples with the
  config's default sampler (``model.default_sampler``), as ``lit_gen.sample`` does.
- ``lit_gen_NAME`` (``--lit-gen-variant NAME=KEY=VALUE[;KEY=VALUE]``, repeatable): the same run with more
  config overrides, reported beside it (the targets judge the ``lit_gen`` arm, the recipe users get).
- ``diffusers_recipe``: diffusers' ``UNet2DModel`` (the same layout as lit_gen's U-Net, scale-shift
  conditioning included, so no block of either is blind to t; parameter counts recorded) + ``DDPMScheduler`` (1000 linear betas, epsilon) + ``EMAModel``, in
  the loop of diffusers' ``examples/unconditional_image_generation/train_unconditional.py`` with
  its documented settings scaled to the budget: AdamW lr 1e-4, betas (0.95, 0.999), weight decay
  1e-6, cosine schedule whose warm-up is min(500, 5% of the steps the budget allows), clipping at
  1, EMA with the example's warm-up (inv_gamma 1, power 3/4) up to 0.9999.
- ``diffusers_grid_best``: the same loop with the best setting of a grid (learning rate x EMA max decay)
  run with seed 0. A grid whose best sits on an edge of either axis is extended past that edge (up to
  twice per edge) before the best is chosen. The best setting then runs the other seeds; its seed-0
  run is the grid's, which favours the peer (selected on that very run).
- ``ddpm_pytorch_recipe`` / ``ddpm_pytorch_grid_best``: denoising-diffusion-pytorch's ``Unet`` (its own
  layout: linear attention, full attention at the innermost level; the width closest to lit_gen's
  parameter count, both counts recorded) in its ``GaussianDiffusion``, trained by the loop of its
  ``Trainer.train`` with its README recipe (Adam 8e-5, betas (0.9, 0.99), no warm-up, clipping at 1,
  EMA 0.995 every 10 steps with ema-pytorch's warm-up, v-prediction, sigmoid schedule), and the best
  of its own grid, extended the same way.

Peers sample with each of their library's samplers (``PEER_SAMPLERS``: diffusers' DDIM-50 and
DPM-Solver++(2M) multistep at 10 and 20 steps; denoising-diffusion-pytorch's DDIM-50), and each peer arm
is judged with the sampler of lowest mean held-out FID over its seeds (chosen on these runs, which
favours the peer); every sampler's values are recorded. EMA weights everywhere.

Judged by ``bench.yardstick`` at the run's resolution (a classifier trained at that resolution, never
resizing): N = 423 samples per run, FID against the held-out digits and against the training digits,
precision/recall, the nearest-training-image ratio, background haze; the real-data floors at the same
N. Network size and training FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``, forward +
backward) are measured for every network and recorded.

Targets, each by the interval rule of ``bench/stats.py`` over the seeds (Welch t on the log ratio of
means): FID(lit_gen) / FID(best peer arm) <= 1 and <= 0.5, against the held-out digits and against
the training digits (the best peer arm chosen per reference, by mean); and lit_gen's background haze
<= 0.005 (t interval of the mean over seeds).
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

from bench.common import (CACHE, LOAD_TRIES, REPO, Recorder, answer_as_worker, base_parser, cached_run,
                          call_worker_quietly, load_average, parse_named_overrides, sample_in_chunks, setup)
from bench.stats import mean_interval, mean_sd, ratio_of_means
from bench.yardstick import HAZE_BOUND, TRAIN_OVERRIDES, Yardstick

#: lit_gen's recipe per resolution: the config a user runs (8x8: make run's; 16x16: ddpm_digits16).
CONFIGS = {8: "configs/quickstart.yaml", 16: "configs/ddpm_digits16.yaml"}
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
DDP_LAYOUTS = {8: {"dim": 36, "dim_mults": (1, 2)}, 16: {"dim": 36, "dim_mults": (1, 2, 2)}}
#: Learning rate x EMA decay grids per peer (full, quick).
GRIDS = {"diffusers": (((3e-4, 1e-3, 3e-3), (0.999, 0.9999)), ((1e-3, 3e-3), (0.999,))),
         "ddpm_pytorch": (((3e-4, 1e-3, 3e-3), (0.995, 0.999)), ((1e-3, 3e-3), (0.995,)))}
#: Extensions of a grid past one edge before its best is taken as found.
MAX_EXTENSIONS = 2
#: Each peer's samplers (name -> (kind, steps)); every peer run samples with all of them.
PEER_SAMPLERS = {"diffusers": {"ddim-50": ("ddim", 50), "dpmpp_2m-10": ("dpmpp_2m", 10), "dpmpp_2m-20": ("dpmpp_2m", 20)},
                 "ddpm_pytorch": {"ddim-50": ("ddim", 50)}}
#: Share of the budget lit_gen's schedule plans for training steps (the rest: validation, grids, checkpoints).
LIT_GEN_STEP_SHARE = 0.9
PEER_STEP_SHARE = 0.97
TARGETS = (1.0, 0.5)
#: What each (reference, FID key) of the yardstick is called in headlines and targets.
REFERENCES = {"fid": "held-out", "fid_train": "training"}


# ----------------------------------------------------------------------------------- the networks
def peer_unet(resolution: int):
    from diffusers import UNet2DModel

    layout = LAYOUTS[resolution]
    # Scale-shift conditioning (diffusers' resnet_time_scale_shift) as lit_gen's blocks: with the default
    # (added before the GroupNorm) its 32-channel blocks, one channel per group, would never see t.
    return UNet2DModel(sample_size=resolution, in_channels=1, out_channels=1, layers_per_block=2,
                       block_out_channels=layout["blocks"], down_block_types=layout["down"], up_block_types=layout["up"],
                       resnet_time_scale_shift="scale_shift")


def lit_gen_overrides(resolution: int, seed: int, variant: list[str] = ()) -> list[str]:
    """The overrides of every lit_gen run (the yardstick's training digits, the batch), then the variant's own."""
    return [*TRAIN_OVERRIDES, f"data.image_size={resolution}", f"data.batch_size={BATCH}", f"seed={seed}", *variant]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=KEY=VALUE[;KEY=VALUE]`` (``--lit-gen-variant``) -> the arm ``lit_gen_NAME`` and its overrides."""
    name, overrides = parse_named_overrides(text, "--lit-gen-variant")
    return f"lit_gen_{name}", overrides


def lit_gen_model(resolution: int, seed: int = 0):
    from lit_gen.config import load_config
    from lit_gen.fit import build

    cfg = load_config(REPO / CONFIGS[resolution], lit_gen_overrides(resolution, seed))
    assert list(cfg.model["channel_mults"]) == LAYOUTS[resolution]["channel_mults"], "the peer's layout must match"
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


def training_digits(resolution: int) -> torch.Tensor:
    """The yardstick's 1,374 training digits in [-1, 1] at ``resolution``: the images every arm trains on."""
    from lit_gen.data.digits import DigitsDataModule

    dataset = DigitsDataModule(train_split="train", seed=0, image_size=resolution).dataset("train")
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
        self.images = training_digits(resolution)
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.steps = 0
        self.ema_applied = False

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
    def sample(self, n: int, seed: int, kind: str = "ddim", steps: int = 50) -> torch.Tensor:
        """``n`` images in [0, 1] from the EMA weights with diffusers' DDIM (eta 0, as its ``DDIMPipeline``)
        or its ``DPMSolverMultistepScheduler`` (DPM-Solver++(2M), its defaults), ``steps`` steps."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if not self.ema_applied:
            self.ema.copy_to(self.unet.parameters())
            self.ema_applied = True
        unet = self.unet.eval()
        generator = torch.Generator().manual_seed(seed)
        out = []
        for start in range(0, n, 250):
            scheduler = (DDIMScheduler if kind == "ddim" else DPMSolverMultistepScheduler).from_config(self.scheduler.config)
            scheduler.set_timesteps(steps)
            b = min(250, n - start)
            x = torch.randn((b, 1, unet.config.sample_size, unet.config.sample_size), generator=generator)
            x = x * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                eps = unet(scheduler.scale_model_input(x, t), t).sample
                x = (scheduler.step(eps, t, x, eta=0.0) if kind == "ddim" else scheduler.step(eps, t, x)).prev_sample
            out.append((x / 2 + 0.5).clamp(0, 1))
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
        self.images = (training_digits(resolution) + 1) / 2  # the library normalises [0, 1] images itself
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
    def sample(self, n: int, seed: int, kind: str = "ddim", steps: int = 50) -> torch.Tensor:
        assert (kind, steps) == ("ddim", 50), "its GaussianDiffusion was built for DDIM-50 (ddp_diffusion)"
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

    argv = ["--config", str(REPO / CONFIGS[resolution]), "--run-id", "fixed", "--resume", "never", *lit_gen_overrides(resolution, 0),
            "trainer.max_steps=2", "trainer.max_epochs=-1", f"run.output_dir={workdir}", "trainer.accelerator=cpu"]
    started = time.perf_counter()
    if fit.main(argv) != 0:
        raise SystemExit("lit_gen.fit failed in the fixed-cost calibration")
    return {"seconds": time.perf_counter() - started}


def run_lit_gen(spec: dict) -> tuple[dict[str, torch.Tensor], dict]:
    from lit_gen import fit
    from lit_gen.checkpoints import load_model
    from lit_gen.diffusion.samplers import sampler_that_runs

    workdir = Path(spec["dir"])
    # The whole fit call must fit the budget: training gets what its fixed costs leave.
    budget = max(1, int(spec["budget"] - spec.get("fixed_seconds", 0.0)))
    hours, rest = divmod(budget, 3600)
    argv = ["--config", str(REPO / CONFIGS[spec["resolution"]]), "--run-id", f"seed{spec['seed']}", "--resume", "never",
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
    settings = model.sample_defaults()
    sampler = sampler_that_runs(settings["sampler"], discrete=model.objective.discrete)
    started = time.perf_counter()
    samples = sample_in_chunks(model, spec["num_samples"], spec["sample_seed"])  # the config's default sampler
    return {"default": samples}, {"steps_done": summary["global_step"], "train_seconds": round(seconds, 1),
                                  "sample_seconds": round(time.perf_counter() - started, 1),
                                  "parameters": summary["parameters"],
                                  "samplers": {"default": {"sampler": sampler, "steps": settings["steps"]}}}


def run_peer(spec: dict) -> tuple[dict[str, torch.Tensor], dict]:
    peer = TRAINERS[spec["kind"]](spec["settings"], spec["steps"], spec["resolution"], spec["seed"])
    started = time.perf_counter()
    while peer.steps < spec["steps"] and time.perf_counter() - started < spec["budget"]:
        peer.step()
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    samplers = PEER_SAMPLERS[spec["kind"]]
    samples = {name: peer.sample(spec["num_samples"], spec["sample_seed"], kind, steps)
               for name, (kind, steps) in samplers.items()}
    network = peer.unet if spec["kind"] == "diffusers" else peer.diffusion.model
    return samples, {"steps_done": peer.steps, "train_seconds": round(seconds, 1),
                     "sample_seconds": round(time.perf_counter() - started, 1),
                     "parameters": sum(p.numel() for p in network.parameters()),
                     "samplers": {name: {"sampler": kind, "steps": steps} for name, (kind, steps) in samplers.items()}}


def worker(spec: dict) -> dict:
    torch.set_num_threads(spec.get("threads", 1))
    if spec.get("fixed_cost"):
        return fixed_cost(spec["resolution"], Path(spec["dir"]))
    if spec.get("calibrate"):
        return calibrate(spec["kind"], spec["resolution"], spec["calibrate"])
    samples, result = (run_lit_gen if spec["kind"] == "lit_gen" else run_peer)(spec)
    result["overrides"] = spec.get("overrides") or []
    paths = {}
    for name, images in samples.items():
        paths[name] = str(Path(spec["dir"]) / f"samples_{name}.pt")
        torch.save((images.clamp(0, 1) * 255).round().to(torch.uint8), paths[name])
    return {**result, "samples": paths}


# ----------------------------------------------------------------------------------- the driver
def run_worker(spec: dict, timeout: float) -> dict:
    """One run in a fresh process (``--threads`` torch threads), alone on the machine: rerun while the load says not
    (a ``--quick`` smoke run tries once and keeps what it got)."""
    return call_worker_quietly("bench.diffusers_peer", spec, spec.get("threads", 1), timeout, spec.get("arm", spec["kind"]),
                               tries=1 if spec.get("quick") else LOAD_TRIES)


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
    parser.add_argument("--num-samples", type=int, default=None,
                        help="samples per run and sampler (default: the 423 held-out digits' count; quick 200)")
    parser.add_argument("--calibration", type=float, default=None, help="seconds of each step-time calibration (default 15, quick 3)")
    parser.add_argument("--keep", default=None,
                        help="folder for checkpoints and samples (default runs/bench/peer at 8x8, runs/bench/peer16 at 16x16; "
                             "bench.few_step samples their lit_gen checkpoints again)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of every run (default 1; at most the cores, since runs go one at a time)")
    parser.add_argument("--peers", nargs="+", choices=sorted(TRAINERS), default=None,
                        help="peers to run (default: every installed one); the record names those left out")
    parser.add_argument("--lit-gen-variant", action="append", default=[], metavar="NAME=KEY=VALUE[;KEY=VALUE]",
                        help="one more lit_gen arm, lit_gen_NAME, with these config overrides (repeatable), reported "
                             "beside the recipe; the targets judge the recipe")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the runs an interrupted invocation finished in --keep (same settings); the record says which")
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
    resolution = args.resolution
    budget = args.budget or (60.0 if args.quick else 240.0)
    yardstick = Yardstick.build("digits", resolution)
    num_samples = args.num_samples or (200 if args.quick else yardstick.n)
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
    if not 1 <= args.threads <= (os.cpu_count() or 1):
        raise SystemExit(f"--threads {args.threads}: between 1 and the {os.cpu_count()} cores")
    torch.set_num_threads(args.threads)
    rec = Recorder("diffusers_peer", f"digits diffusion at {resolution}x{resolution}: lit_gen's recipe vs diffusers and "
                   f"denoising-diffusion-pytorch at their best, FID per equal CPU budget, {args.seeds} seeds",
                   extra_versions=("diffusers", "denoising_diffusion_pytorch"))
    if "ddpm_pytorch" not in peers:
        rec.notes.append("no denoising-diffusion-pytorch arms: " + (
            "left out by --peers" if _installed("denoising_diffusion_pytorch") else
            "it is not installed (pip install denoising-diffusion-pytorch)"))

    networks = measure_networks(resolution)
    floors = yardstick.floors(num_samples)
    rec.numbers.update(budget_seconds=budget, resolution=resolution, config=CONFIGS[resolution], seeds=args.seeds,
                       num_samples=num_samples, batch_size=BATCH, threads=args.threads, networks=networks, peers=peers,
                       lit_gen_arms=lit_arms, train_overrides=TRAIN_OVERRIDES, floors=floors,
                       recipes={"diffusers": RECIPE, "ddpm_pytorch": DDP_RECIPE},
                       peer_samplers={peer: PEER_SAMPLERS[peer] for peer in peers},
                       grids={peer: [list(g) for g in grid] for peer, grid in grids.items()})
    timeout = budget * 4 + 900
    base = {"resolution": resolution, "budget": budget, "num_samples": num_samples, "threads": args.threads,
            "quick": args.quick}
    workdir = Path(args.keep) if args.keep else CACHE / ("peer" if resolution == 8 else f"peer{resolution}")
    if workdir.exists() and not args.resume:
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def calibrate_all() -> dict:
        out = {kind: run_worker({**base, "kind": kind, "calibrate": calibration_seconds}, timeout) for kind in ("lit_gen", *peers)}
        with tempfile.TemporaryDirectory(prefix="lit_gen_peer_") as tmp:
            out["lit_gen_fixed"] = run_worker({**base, "kind": "lit_gen", "fixed_cost": True, "dir": tmp}, timeout)
        return out

    # The step plans come from it: an interrupted invocation's calibration is reused with its runs.
    calibration = cached_run(workdir, {**base, "calibration": calibration_seconds, "peers": peers}, calibrate_all,
                             args.resume)
    calibration.pop("reused", None)
    # Two steps' worth of the fixed run were training; the rest is what every lit_gen run pays besides its steps.
    fixed = max(0.0, calibration["lit_gen_fixed"]["seconds"] - 2 * calibration["lit_gen"]["seconds_per_step"])
    base_lit = budget - fixed
    if base_lit <= 0:
        raise SystemExit(f"--budget {budget:g} s is shorter than lit_gen.fit's fixed costs ({fixed:.0f} s measured)")
    plan = {"lit_gen": max(10, int(LIT_GEN_STEP_SHARE * base_lit / calibration["lit_gen"]["seconds_per_step"])),
            **{peer: max(10, int(PEER_STEP_SHARE * budget / calibration[peer]["seconds_per_step"])) for peer in peers}}
    rec.numbers.update(calibration=calibration, planned_steps=plan, lit_gen_fixed_seconds=round(fixed, 1))

    runs: list[dict] = []

    def run(arm: str, kind: str, seed: int, settings: dict | None = None) -> dict:
        folder = workdir / arm / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        spec = {**base, "arm": arm, "kind": kind, "seed": seed, "sample_seed": 1000 + seed, "steps": plan[kind],
                "dir": str(folder), "settings": settings, "fixed_seconds": fixed, "overrides": lit_arms.get(arm)}
        print(f"  {arm} seed {seed} ({plan[kind]} steps planned, load {load_average()})", flush=True)
        result = {"arm": arm, "seed": seed, "settings": settings, "steps_planned": plan[kind],
                  **cached_run(folder, spec, lambda: run_worker(spec, timeout), args.resume)}
        result["judged"] = {name: yardstick.judge(torch.load(path, weights_only=True).float() / 255.0, seed=seed)
                            for name, path in result["samples"].items()}
        result["best_sampler"] = min(result["judged"], key=lambda name: result["judged"][name]["fid"])
        result["fid"] = result["judged"][result["best_sampler"]]["fid"]  # what the grid chooses by
        print(f"    {result['steps_done']} steps; " + "; ".join(f"{name}: FID {j['fid']:.2f} held out, {j['fid_train']:.2f} "
                                                          f"train, haze {j['haze']:.4f}" for name, j in result["judged"].items())
              + ("" if result["quiet"] else " (LOADED: out of the verdicts)"), flush=True)
        runs.append(result)
        return result

    # Each peer's grid, seed 0, one run after another; extended past an edge where its best sits.
    arms: dict[str, list[dict]] = {arm: [] for arm in lit_arms}
    best: dict[str, dict] = {}
    rec.numbers["grid"], rec.numbers["grid_best"] = {}, {}
    for peer in peers:
        grid_runs = [run(f"{peer}_grid_lr{lr:g}_ema{ema:g}", peer, 0, grid_settings(peer, lr, ema, plan[peer]))
                     for lr, ema in grids[peer]]
        for point in extended_points(peer, grid_runs, plan[peer], rec):
            grid_runs.append(run(f"{peer}_grid_lr{point[0]:g}_ema{point[1]:g}", peer, 0, grid_settings(peer, *point, plan[peer])))
        best[peer] = min((r for r in grid_runs if r["quiet"]), key=lambda r: r["fid"], default=min(grid_runs, key=lambda r: r["fid"]))
        rec.numbers["grid"][peer] = [{"lr": r["settings"]["lr"], "ema": ema_of(r["settings"]), "fid": r["fid"],
                                      "sampler": r["best_sampler"], "quiet": r["quiet"]} for r in grid_runs]
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
    judge_arms(rec, arms, lit_arms, yardstick, num_samples, floors, budget, keep_loaded=args.quick)
    short = [f"{r['arm']} seed {r['seed']}: {r['steps_done']}/{r['steps_planned']}" for r in runs
             if r["steps_done"] < 0.9 * r["steps_planned"]]
    if short:
        rec.notes.append("runs that did fewer than 90% of their planned steps in the budget (their cosine schedules did not "
                         "reach zero): " + "; ".join(short))
    over = [f"{r['arm']} seed {r['seed']}: {r['train_seconds']:.0f} s" for r in runs if r["train_seconds"] > 1.1 * budget]
    if over:
        rec.notes.append(f"runs whose whole loop took more than 110% of the {budget:.0f} s budget: " + "; ".join(over))
    reused = [f"{r['arm']} seed {r['seed']}" for r in runs if r.get("reused")]
    if reused:
        rec.notes.append("runs finished by an earlier, interrupted invocation with the same settings and reused here "
                         "(--resume): " + ", ".join(reused))
    loaded = [f"{r['arm']} seed {r['seed']}" for r in runs if not r["quiet"]]
    rec.notes.append(f"runs one after another, {args.threads} torch thread(s) each, on a {os.cpu_count()}-core machine; "
                     f"each run's load average before and after and its tries are in numbers.runs; "
                     + (f"still loaded after {3} tries, out of the verdicts: {', '.join(loaded)}" if loaded
                        else "every run kept had a load within its threads + 0.5"))
    rec.numbers["runs"] = runs
    path = rec.write(args.out)
    rec.report(path)


def ema_of(settings: dict) -> float:
    return settings.get("ema_max_decay", settings.get("ema_decay"))


def extended_points(peer: str, grid_runs: list[dict], steps: int, rec: Recorder):
    """Grid points past the edge where the best (quiet) run sits, one at a time, up to MAX_EXTENSIONS per edge.

    Yields (lr, ema); the caller appends each run to ``grid_runs`` before the next is chosen. The
    learning rate steps by the grid's own ratio; the EMA decay by a factor of 10 in 1 - decay.
    """
    done: dict[str, int] = {}
    noted: set[str] = set()
    while True:
        scored = [r for r in grid_runs if r["quiet"]] or grid_runs
        top = min(scored, key=lambda r: r["fid"])
        lrs = sorted({r["settings"]["lr"] for r in grid_runs})
        emas = sorted({ema_of(r["settings"]) for r in grid_runs})
        lr, ema = top["settings"]["lr"], ema_of(top["settings"])
        edges = []
        if lr == lrs[-1]:
            edges.append(("largest learning rate", (lr * (lrs[-1] / lrs[-2] if len(lrs) > 1 else 3.0), ema)))
        elif lr == lrs[0]:
            edges.append(("smallest learning rate", (lr / (lrs[1] / lrs[0]), ema)))
        if ema == emas[-1]:
            edges.append(("largest EMA decay", (lr, 1 - (1 - ema) / 10)))
        elif ema == emas[0]:
            edges.append(("smallest EMA decay", (lr, 1 - (1 - ema) * 10)))
        open_edges = [(edge, point) for edge, point in edges if done.get(edge, 0) < MAX_EXTENSIONS]
        for edge, _ in edges:
            if done.get(edge, 0) >= MAX_EXTENSIONS and edge not in noted:
                noted.add(edge)
                rec.notes.append(f"{peer}: the grid's best still sits at its {edge} after {MAX_EXTENSIONS} extensions")
        if not open_edges:
            return
        edge, point = open_edges[0]
        done[edge] = done.get(edge, 0) + 1
        point = (float(f"{point[0]:.3g}"), float(f"{point[1]:.6g}"))
        rec.notes.append(f"{peer}: the grid's best ({lr:g} / {ema:g}) sat at its {edge}: extended to {point[0]:g} / "
                         f"{point[1]:g} before choosing")
        yield point


def judge_arms(rec: Recorder, arms: dict[str, list[dict]], lit_arms: dict, yardstick: Yardstick, num_samples: int,
               floors: dict, budget: float, keep_loaded: bool = False) -> None:
    """Each arm's sampler, summary and FIDs in the record; the targets on the quiet runs (all runs with ``keep_loaded``)."""
    if keep_loaded:
        rec.notes.append("a --quick smoke run: loaded runs were kept in every value (no verdict rests on them)")
        arms = {arm: [{**r, "quiet": True} for r in results] for arm, results in arms.items()}
    chosen: dict[str, str] = {}
    for arm, results in arms.items():
        names = list(results[0]["judged"]) if results else []
        quiet = [r for r in results if r["quiet"]] or results
        chosen[arm] = min(names, key=lambda n: mean_sd([r["judged"][n]["fid"] for r in quiet])[0]) if names else "default"
    summary: dict[str, dict] = {}
    values: dict[str, dict[str, list[float]]] = {}
    for arm, results in arms.items():
        quiet = [r for r in results if r["quiet"]]
        picked = [r["judged"][chosen[arm]] for r in quiet]
        values[arm] = {m: [j[m] for j in picked] for m in ("fid", "fid_train", "precision", "recall", "nn_ratio", "haze")}
        summary[arm] = {"sampler": chosen[arm], "sampler_settings": results[0]["samplers"][chosen[arm]] if results else None,
                        "n": len(quiet), "loaded_runs": len(results) - len(quiet),
                        "steps_done": [r["steps_done"] for r in results], "train_seconds": [r["train_seconds"] for r in results],
                        **{f"{m}_mean": round(mean_sd(v)[0], 4) for m, v in values[arm].items() if v},
                        **{f"{m}_sd": round(mean_sd(v)[1], 4) for m, v in values[arm].items() if v},
                        "by_sampler": {name: {m: round(mean_sd([r["judged"][name][m] for r in quiet])[0], 4)
                                              for m in ("fid", "fid_train", "haze")} for name in (results[0]["judged"] if results else {})}}
        for r in results:
            settings = r["samplers"][chosen[arm]]
            for reference, key in (("heldout", "fid"), ("train", "fid_train")):
                protocol = yardstick.protocol(reference, sampler=settings["sampler"], steps=settings["steps"],
                                              generated_count=num_samples)
                rec.add_fid_value(arm if reference == "heldout" else f"{arm} (train)", r["seed"],
                                  r["judged"][chosen[arm]][key], protocol, yardstick.feature())
    rec.fid_varies = ("sampler", "steps", "eta", "real_split", "real_count")
    peer_arms = [arm for arm in arms if arm not in lit_arms and values[arm]["fid"]]
    ratios: dict[str, dict] = {}
    for key, reference in REFERENCES.items():
        best_peer = min(peer_arms, key=lambda a: mean_sd(values[a][key])[0])
        ratios[key] = {"best_peer_arm": best_peer,
                       **{arm: ratio_of_means(values[arm][key], values[best_peer][key]).as_dict() for arm in lit_arms}}
        interval = ratio_of_means(values["lit_gen"][key], values[best_peer][key])
        for bound in TARGETS:
            rec.target(f"FID against the {reference} digits, lit_gen / {best_peer} ({summary[best_peer]['sampler']})",
                       interval.estimate, "<=", bound, "x", interval=interval)
    haze = mean_interval(values["lit_gen"]["haze"])
    rec.target("background haze of lit_gen's samples (real digits: "
               f"{floors['haze_heldout']:.4f} held out)", haze.estimate, "<=", HAZE_BOUND, interval=haze)
    rec.numbers.update(arms=summary, fid_ratios=ratios)
    for arm, s in summary.items():
        if not s["n"]:
            continue
        rec.headline[f"{arm} ({s['sampler']})"] = (
            f"FID {s['fid_mean']:.2f} ± {s['fid_sd']:.2f} held out, {s['fid_train_mean']:.2f} ± {s['fid_train_sd']:.2f} "
            f"train; precision {s['precision_mean']:.2f}, recall {s['recall_mean']:.2f}, nearest-training ratio "
            f"{s['nn_ratio_mean']:.2f}, haze {s['haze_mean']:.4f} (n={s['n']}; steps {min(s['steps_done'])}-"
            f"{max(s['steps_done'])} in {budget:.0f} s)")
    for peer, grid in rec.numbers["grid"].items():
        rec.headline[f"{peer} grid (lr / EMA, seed 0, best sampler)"] = ", ".join(
            f"{g['lr']:g}/{g['ema']:g}: {g['fid']:.1f}" for g in grid)
    rec.headline["networks (trained parameters, MFLOPs per image per training step)"] = ", ".join(
        f"{name} {n['parameters']:,} / {n['training_flops_per_image'] / 1e6:.1f}" for name, n in rec.numbers["networks"].items())
    rec.headline["real-data floors"] = (f"FID {floors['fid_heldout']:.2f} held out, {floors['fid_train']:.2f} training "
                                        f"(N={floors['n']}); haze {floors['haze_heldout']:.4f}")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
