"""The non-finite guard under DDP: 2 CPU processes (gloo), a NaN on one rank only.

Two faults on rank 1 alone: a NaN pixel in its batch (its loss is NaN, and DDP's gradient average
carries the NaN to rank 0), and a NaN written into one of its gradients after DDP's average (a
fault rank 0 cannot see; only the guard's all-reduced decision makes rank 0 skip too). Both ranks
must skip exactly those steps, leave their weights untouched by them, and stay bitwise equal.
"""

from __future__ import annotations

import hashlib
import json

import lightning as L
import pytest
import torch

from lit_gen.callbacks.nonfinite import NonFiniteGuard
from lit_gen.callbacks.step_seed import StepSeed
from lit_gen.config import load_config
from lit_gen.fit import build

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The `srun` command is available")]

NAN_IN_BATCH = 2  # global step whose batch gets a NaN on rank 1
NAN_IN_GRADIENT = 5  # global step whose gradient (after DDP's average) gets a NaN on rank 1
STEPS = 8


def weights_digest(module: torch.nn.Module) -> str:
    """A hash of every parameter's exact bytes: equal digests mean bitwise-equal weights."""
    h = hashlib.sha256()
    for p in module.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class NaNOnRankOne(L.Callback):
    """Rank 1 alone: a NaN in its batch at one step, a NaN in its averaged gradient at another."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == 1 and trainer.global_step == NAN_IN_BATCH:
            batch[0][0, 0, 0, 0] = float("nan")

    def on_after_backward(self, trainer, pl_module) -> None:
        # DDP has averaged the gradients when backward returns: this NaN exists on rank 1 only.
        if trainer.global_rank == 1 and trainer.global_step == NAN_IN_GRADIENT:
            next(p for p in pl_module.parameters() if p.grad is not None).grad.view(-1)[0] = float("nan")


class Record(L.Callback):
    """Per rank and step: the weights' digest before and after the step, and the guard's skip count."""

    def __init__(self, folder, guard: NonFiniteGuard) -> None:
        self.folder = folder
        self.guard = guard
        self.rows: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rows.append({"step": trainer.global_step, "before": weights_digest(pl_module)})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.rows[-1].update(after=weights_digest(pl_module), skipped=self.guard.skipped)

    def on_train_end(self, trainer, pl_module) -> None:
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.rows))


def test_a_nan_on_one_rank_skips_the_same_steps_on_both_and_keeps_them_equal(tmp_path):
    L.seed_everything(0, verbose=False)
    cfg = load_config("configs/vae_digits.yaml", ["data.batch_size=16"])
    datamodule, model = build(cfg)
    guard = NonFiniteGuard(max_consecutive=5)
    # fork: the ranks inherit the imported modules instead of importing torch and Lightning again.
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_fork", max_steps=STEPS, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        deterministic=True, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=[StepSeed(cfg.seed), guard, NaNOnRankOne(), Record(tmp_path, guard)])
    trainer.fit(model, datamodule=datamodule)

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rows in ranks:
        assert [row["step"] for row in rows] == list(range(STEPS))
        skipped = [row["step"] for row in rows if row["before"] == row["after"]]
        assert skipped == [NAN_IN_BATCH, NAN_IN_GRADIENT], "the weights moved on a NaN step, or stood still on a good one"
        assert rows[-1]["skipped"] == 2
    # The replicas never diverge: the same weights on both ranks after every step, bit for bit.
    assert [row["after"] for row in ranks[0]] == [row["after"] for row in ranks[1]]
