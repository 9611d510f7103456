"""Skip optimizer steps whose gradients are not finite, and stop when it keeps happening.

A NaN or inf in the loss reaches every gradient, so checking the gradients right before the
optimizer step catches both. The decision is reduced over DDP ranks (any rank bad -> every rank
skips), so replicas never diverge. Skipping means dropping the gradients: optimizers leave
parameters without a gradient untouched, moments included. It works with mixed precision: with
fp16 the gradient scaler already skips overflowing steps, and this guard counts them too.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from lit_gen.errors import TrainingError

log = logging.getLogger(__name__)


def gradients_finite(parameters) -> bool:
    """True when every gradient present is free of NaN and inf (one device sync)."""
    flags = [torch.isfinite(p.grad).all() for p in parameters if p.grad is not None]
    return bool(torch.stack(flags).all()) if flags else True


class NonFiniteGuard(L.Callback):
    """Drop non-finite optimizer steps; raise TrainingError after ``max_consecutive`` in a row.

    Logged: ``train/skipped_steps``, the number of steps skipped so far.
    """

    def __init__(self, max_consecutive: int = 20) -> None:
        if max_consecutive < 1:
            raise ValueError(f"run.max_nonfinite_steps must be at least 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.skipped = 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        bad = not gradients_finite(params)
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            self.consecutive = 0
            return
        for p in params:
            p.grad = None
        self.consecutive += 1
        self.skipped += 1
        pl_module.log("train/skipped_steps", float(self.skipped), on_step=True, on_epoch=False, rank_zero_only=True)
        log.warning("step %d: non-finite loss or gradient, optimizer step skipped (%d in a row)",
                    trainer.global_step, self.consecutive)
        if self.consecutive >= self.max_consecutive:
            raise TrainingError(self._explain(trainer, pl_module))

    def _explain(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        terms = getattr(pl_module, "last_loss_terms", None) or {}
        shown = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items()) or "not recorded"
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        return (
            f"training stopped at step {trainer.global_step}: {self.consecutive} optimizer steps in a row had a "
            f"non-finite loss or gradient (last loss terms: {shown}; learning rate {lr:.3g}). Likely causes: a "
            f"learning rate too high (lower model.lr or add model.warmup_steps), fp16 overflow (use "
            f"trainer.precision=bf16-mixed or 32), or bad input data. Resume from the last checkpoint after the fix; "
            f"run.max_nonfinite_steps sets the limit."
        )

    def state_dict(self) -> dict:
        return {"consecutive": self.consecutive, "skipped": self.skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.consecutive = int(state_dict.get("consecutive", 0))
        self.skipped = int(state_dict.get("skipped", 0))
