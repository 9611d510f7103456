"""Keep ``last.ckpt`` current: at every epoch end, every N training steps, and when training ends."""

from __future__ import annotations

from pathlib import Path

import lightning as L


class LastCheckpoint(L.Callback):
    """Save the full training state (model, optimizers, loops, callbacks) to one ``last.ckpt``.

    One callback owns the file, so step-based and epoch-based saves never race or get renamed.
    The checkpoint plugin writes it atomically and keeps the previous one as ``last.prev.ckpt``.
    """

    def __init__(self, path: str | Path, every_n_steps: int = 0) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step = -1

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.global_step == self._saved_step:
            return
        self._saved_step = trainer.global_step
        trainer.save_checkpoint(self.path)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        # After an epoch's last batch, wait for the epoch-end save: a checkpoint taken between the two
        # resumes into a replay of the finished epoch (Lightning's loop counters say it is not done).
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 and not trainer.is_last_batch:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)
