"""Save a power EMA's snapshots into the run folder, for ``python -m lit_gen.ema`` to combine after training.

After every training batch the callback asks the model (``CallbackContract.ema_snapshot``) whether a
snapshot is due; when one is, rank 0 writes it to ``<run>/ema/snapshot_<step>.pt`` through a temporary
file and a rename, so a killed job never leaves half a snapshot. Every rank asks: the averages are
identical on every DDP rank (they follow the synced weights), so rank 0's snapshot is every rank's.

A resumed run reaches the same steps with the same averages (the EMA state is in the checkpoint), so it
rewrites the snapshots it had written after its last checkpoint with the same contents.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch

from lit_gen.models.contracts import require_contract


def snapshot_path(folder: Path, step: int) -> Path:
    return folder / f"snapshot_{step:09d}.pt"


class EMASnapshots(L.Callback):
    """Write the snapshots a model's power EMA makes due to ``folder`` (rank 0 only, atomically).

    Args:
        folder (Path): the run's ``ema/`` folder (created with the first snapshot).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._last_step: int | None = None  # batches that only accumulate gradients see the same update again

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        require_contract(self, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        snapshot = pl_module.ema_snapshot()
        if snapshot is None or snapshot["step"] == self._last_step:
            return
        self._last_step = snapshot["step"]
        self.folder.mkdir(parents=True, exist_ok=True)
        path = snapshot_path(self.folder, snapshot["step"])
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save(snapshot, tmp)
        os.replace(tmp, path)


def read_snapshots(folder: Path, up_to: int | None = None) -> list[dict]:
    """The snapshots in ``folder`` (steps <= ``up_to`` when given), oldest first, each with its ``path``.

    A file that is not a snapshot of this format is an error naming it (a snapshot folder holds only them).
    """
    from lit_gen.errors import CheckpointError
    from lit_gen.nn.ema import SNAPSHOT_FORMAT

    found = []
    for path in sorted(Path(folder).glob("snapshot_*.pt")):
        try:
            snapshot = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or foreign: unreadable in any case
            raise CheckpointError(f"{path} is not a readable EMA snapshot ({type(exc).__name__}); delete it") from None
        if not isinstance(snapshot, dict) or snapshot.get("format") != SNAPSHOT_FORMAT:
            raise CheckpointError(f"{path} is not a lit_gen EMA snapshot ({SNAPSHOT_FORMAT})")
        if up_to is None or snapshot["step"] <= up_to:
            found.append({**snapshot, "path": str(path)})
    return sorted(found, key=lambda s: s["step"])
