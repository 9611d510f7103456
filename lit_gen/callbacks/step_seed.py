"""Reseed the global RNG at every training step, so a resumed run draws the same noise.

Saving RNG states in the checkpoint is not enough with Lightning: building the dataloader
iterator after a restore draws from the global RNG and shifts every later draw. Seeding from
(seed, global step, rank) before each step makes the noise of step k the same whether the run was
interrupted or not, and different on each DDP rank.
"""

from __future__ import annotations

import hashlib

import lightning as L
import torch


def step_seed(seed: int, step: int, rank: int, micro_batch: int = 0) -> int:
    """A 63-bit seed mixed from its inputs (nearby inputs give unrelated seeds).

    ``micro_batch`` is the batch's place in a gradient-accumulation window (0 without accumulation,
    which keeps the seeds of runs that do not accumulate unchanged).
    """
    key = f"{seed}:{step}:{rank}" if micro_batch == 0 else f"{seed}:{step}:{rank}:{micro_batch}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_torch(seed: int) -> None:
    """``torch.manual_seed`` without its cost on machines whose GPU is unused.

    ``torch.manual_seed`` also seeds CUDA; while CUDA is not initialised (every CPU run) that call is
    queued together with a formatted traceback of the caller's stack, about 1-2 ms inside Lightning's
    deep stack: as long as a small model's whole step. An accelerator in use is initialised, so it
    is seeded here as before.
    """
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    if torch.backends.mps.is_available():
        torch.mps.manual_seed(seed)
    if hasattr(torch, "xpu") and torch.xpu.is_initialized():
        torch.xpu.manual_seed_all(seed)


class StepSeed(L.Callback):
    """Seed torch's global RNG (CPU and the accelerator's) before each training batch.

    The seed mixes (seed, global_step, global_rank) and, with ``accumulate_grad_batches > 1``, the
    batch's place in its accumulation window: the global step does not advance inside a window, and
    its micro-batches must not draw the same noise, timesteps and flips.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        micro_batch = batch_idx % max(1, int(trainer.accumulate_grad_batches))
        seed_torch(step_seed(self.seed, trainer.global_step, trainer.global_rank, micro_batch))
