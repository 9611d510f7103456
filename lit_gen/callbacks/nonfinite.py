"""Skip optimizer steps whose gradients are not finite, and stop when it keeps happening.

A NaN or inf in the loss reaches every gradient, so checking the gradients right before the
optimizer step catches both. The decision is reduced over DDP ranks (any rank bad -> every rank
skips), so replicas never diverge. Skipping means dropping the gradients: optimizers leave
parameters without a gradient untouched, moments included. It works with mixed precision: with
fp16 the gradient scaler already skips overflowing steps, and this guard counts them too.

What a skipped step leaves alone, and what it advances: the weights, the optimizer's state
(moments and per-parameter step counts: AdamW updates only parameters that have a gradient), the
learning-rate schedule and any EMA of the weights stay exactly as they were; Lightning's
``global_step`` advances (it counts batches: the data position, the per-step reseed and
``trainer.max_steps`` move on). The guard tells the module through ``SkipsSteps.skip_step`` so that
the module holds its schedule and EMA back (``GenerativeModule`` implements it).

The check is the total gradient norm (NaN or inf in any gradient makes it non-finite), which
gradient clipping needs anyway: ``GenerativeModule`` clips with the norm computed here instead of
a second pass over the gradients. It is logged as ``train/grad_norm`` on logging steps.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

import lightning as L
import torch

from lit_gen.errors import TrainingError

log = logging.getLogger(__name__)


def gradient_norm(parameters) -> torch.Tensor | None:
    """The total 2-norm of the gradients present, as ``clip_grad_norm_`` computes it (None without any)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads, 2.0) if grads else None


@runtime_checkable
class SkipsSteps(Protocol):
    """A module that holds back what a step would advance besides the weights (schedule, EMA)."""

    def skip_step(self) -> None:
        """The optimizer step in progress is skipped: do not advance the schedule or the EMA for it."""


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
        norm = gradient_norm(params)
        bad = norm is not None and not bool(torch.isfinite(norm))  # the step's one host sync
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            self.consecutive = 0
            if norm is not None:
                if pl_module.automatic_optimization:  # Lightning clips next, with this norm
                    pl_module.grad_norm_for_clipping = (optimizer, norm)
                is_logging_step = getattr(pl_module, "is_logging_step", None)
                if callable(is_logging_step) and is_logging_step():
                    pl_module.log("train/grad_norm", norm, on_step=True, on_epoch=False)
            return
        self._skip(trainer, pl_module, params)

    def _skip(self, trainer: L.Trainer, pl_module: L.LightningModule, params) -> None:
        for p in params:
            p.grad = None
        if isinstance(pl_module, SkipsSteps):
            pl_module.skip_step()
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
