"""Append each epoch's metrics to ``metrics.jsonl`` (read by sweeps, reports and people without W&B)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L

from lit_gen.models.contracts import CallbackContract, require_contract


def scalar_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The trainer's epoch-level scalar metrics as plain floats.

    Metrics logged per step and per epoch appear once, under their plain name with the epoch
    value (``train/loss`` rather than ``train/loss_epoch`` and ``train/loss_step``).
    """
    raw = {}
    for key, value in trainer.callback_metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        raw[key] = number if math.isfinite(number) else str(number)
    out = {}
    for key, value in raw.items():
        if key.endswith("_step"):
            continue
        if key.endswith("_epoch"):
            out[key[: -len("_epoch")]] = value
        elif f"{key}_epoch" not in raw:
            out[key] = value
    return out


class MetricsFile(L.Callback):
    """One JSON line per epoch: ``{"epoch": e, "step": s, "train/loss": ..., "val/loss": ...}``.

    Written on rank 0 at the end of each training epoch, after its validation, so a sweep engine
    can read the intermediate metric of a running trial.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        require_contract(self, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: CallbackContract) -> None:
        # Lightning runs this before the module's own hook: have the module log its epoch metrics
        # first (on every rank, since that may all-reduce), so the row holds this epoch's values.
        pl_module.log_epoch_metrics()
        if not trainer.is_global_zero:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, **scalar_metrics(trainer)}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
