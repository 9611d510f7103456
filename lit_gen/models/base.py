"""``GenerativeModule``: the contract every model family follows.

A family implements ``loss(batch) -> LossOutput`` and ``sample(n, ...)``; this class turns the loss
into logged training and validation steps and builds the optimizer from the constructor arguments.
Its constructor arguments are the ``model:`` section of a config, saved with the checkpoint so that
a checkpoint alone rebuilds its model.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import lightning as L
import torch
from torch import Tensor

import lit_gen


class LossOutput(NamedTuple):
    """The scalar to minimise and its named parts (each logged as ``<stage>/<name>``)."""

    total: Tensor
    terms: dict[str, Tensor]


def to_unit_range(x: Tensor) -> Tensor:
    """Map model-space images in [-1, 1] to [0, 1], clamped."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def to_model_range(x: Tensor) -> Tensor:
    """Map [0, 1] images to the [-1, 1] range that datamodules produce."""
    return x * 2.0 - 1.0


class GenerativeModule(L.LightningModule):
    """Base of every lit_gen model.

    Args:
        lr (float): peak learning rate of AdamW.
        weight_decay (float, default 0.0): AdamW weight decay.
        betas (tuple[float, float], default (0.9, 0.999)): AdamW betas.
        warmup_steps (int, default 0): linear learning-rate warm-up from 0 over this many steps.
        lr_schedule ("constant" | "cosine", default "constant"): after warm-up, keep the rate or
            decay it to zero with a cosine over the trainer's ``max_steps`` (or its estimated steps).
    """

    #: Whether ``sample(labels=...)`` is meaningful; conditional families set it on the instance.
    conditional: bool = False

    def __init__(
        self,
        *,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {tuple(betas)}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.betas = tuple(betas)
        self.warmup_steps = warmup_steps
        self.lr_schedule = lr_schedule

    # ------------------------------------------------------------------ to implement per family
    def loss(self, batch) -> LossOutput:
        """The training objective on one batch ``(images in [-1, 1], int64 labels)``."""
        raise NotImplementedError

    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None, **options) -> Tensor:
        """``n`` new images in [0, 1], shape (n, C, H, W), on this module's device."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared training logic
    def augmented(self, batch):
        """The training batch with the datamodule's random augmentation applied (a no-op without one).

        Families that override ``training_step`` call this first, so flips are drawn after the
        per-step reseed and a resumed run sees the same augmented images.
        """
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "augment_batch"):
            return batch
        images, *rest = batch
        return (datamodule.augment_batch(images), *rest)

    def training_step(self, batch, batch_idx):
        batch = self.augmented(batch)
        out = self.loss(batch)
        self.last_loss_terms = {"loss": out.total.detach(), **{k: v.detach() for k, v in out.terms.items()}}
        self._log_terms("train", out, batch_size=batch[0].shape[0])
        return out.total

    def validation_step(self, batch, batch_idx):
        out = self.loss(batch)
        self._log_terms("val", out, batch_size=batch[0].shape[0])
        return out.total

    def _log_terms(self, stage: str, out: LossOutput, batch_size: int) -> None:
        on_step = stage == "train"
        sync = stage != "train"  # epoch-level validation metrics are averaged over DDP ranks
        self.log(f"{stage}/loss", out.total.detach(), prog_bar=True, on_step=on_step, on_epoch=True,
                 batch_size=batch_size, sync_dist=sync)
        for name, value in out.terms.items():
            self.log(f"{stage}/{name}", value.detach(), on_step=on_step, on_epoch=True,
                     batch_size=batch_size, sync_dist=sync)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.trainable_parameters(), lr=self.lr, betas=self.betas,
                                      weight_decay=self.weight_decay)
        if self.warmup_steps <= 0 and self.lr_schedule == "constant":
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def trainable_parameters(self):
        """Parameters the optimizer updates (families with frozen parts override this)."""
        return [p for p in self.parameters() if p.requires_grad]

    def _lr_factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.lr_schedule == "cosine":
            total = self._total_steps()
            progress = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    def _total_steps(self) -> int:
        trainer = self._trainer
        if trainer is None:
            return 1
        if trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps
        return max(1, int(trainer.estimated_stepping_batches))

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Plain strings only: checkpoints are loaded with weights_only=True.
        from lit_gen import registry

        checkpoint["lit_gen"] = {"model": registry.name_of(type(self)), "version": lit_gen.__version__}
