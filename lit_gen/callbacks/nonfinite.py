"""Count the optimizer steps a model skipped as non-finite, and stop a run where it keeps happening.

The guard itself is the model's (``GenerativeModule.on_before_optimizer_step``): right before each
optimizer step it checks the total gradient norm, reduces the decision over DDP ranks (any rank bad
-> every rank skips) and drops the step's gradients, so the weights, the optimizer's state, the
learning-rate schedule and any EMA stay exactly as they were; the same norm clips the gradients.
This callback keeps the run-level part, set by ``run.max_nonfinite_steps``: after each training
batch it reads ``skipped_optimizer_steps()`` (``CallbackContract``), counts the skips (saved in
checkpoints) and raises ``TrainingError`` after too many in a row. With fp16 the gradient scaler
skips overflowing steps too, and they are counted here as well.
"""

from __future__ import annotations

import logging

import lightning as L

from lit_gen.errors import TrainingError
from lit_gen.models.contracts import CallbackContract, require_contract

log = logging.getLogger(__name__)


class NonFiniteGuard(L.Callback):
    """Count skipped optimizer steps; raise TrainingError after ``max_consecutive`` in a row.

    Logged: ``train/skipped_steps``, the number of steps skipped so far.
    """

    def __init__(self, max_consecutive: int = 20) -> None:
        assert max_consecutive >= 1, max_consecutive  # run.max_nonfinite_steps, checked by the config
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.skipped = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        require_contract(self, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: CallbackContract, outputs, batch, batch_idx: int) -> None:
        steps = pl_module.skipped_optimizer_steps()
        for skipped in steps:
            if not skipped:
                self.consecutive = 0
                continue
            self.consecutive += 1
            self.skipped += 1
            log.warning("step %d: non-finite loss or gradient, optimizer step skipped (%d in a row)",
                        trainer.global_step, self.consecutive)
            if self.consecutive >= self.max_consecutive:
                raise TrainingError(self._explain(trainer, pl_module))
        if any(steps):
            pl_module.log("train/skipped_steps", float(self.skipped), on_step=True, on_epoch=False, rank_zero_only=True)

    def _explain(self, trainer: L.Trainer, pl_module: CallbackContract) -> str:
        shown = ", ".join(f"{k}={float(v):.4g}" for k, v in pl_module.last_loss_terms.items()) or "not recorded"
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
