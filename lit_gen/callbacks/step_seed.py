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


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed mixed from its three inputs (nearby inputs give unrelated seeds)."""
    digest = hashlib.blake2b(f"{seed}:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class StepSeed(L.Callback):
    """Seed torch's global RNG (CPU and CUDA) from (seed, global_step, global_rank) before each step."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        torch.manual_seed(step_seed(self.seed, trainer.global_step, trainer.global_rank))
