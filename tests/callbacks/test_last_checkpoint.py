"""lit_gen.callbacks.last_checkpoint: step saves never land between an epoch's last batch and its end."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.callbacks.last_checkpoint import LastCheckpoint


class Linear(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), 0.01)


def test_step_saves_skip_the_last_batch_of_an_epoch(tmp_path, monkeypatch):
    saved = []
    callback = LastCheckpoint(tmp_path / "last.ckpt", every_n_steps=1)
    trainer = L.Trainer(max_steps=12, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    def record(path, **kwargs):
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        saved.append((trainer.global_step, progress.processed == progress.completed))

    monkeypatch.setattr(trainer, "save_checkpoint", record)
    loader = DataLoader(TensorDataset(torch.randn(40, 1)), batch_size=8)  # 5 batches per epoch
    trainer.fit(Linear(), loader)
    steps = [step for step, _ in saved]
    assert steps == sorted(set(steps)), "each step saved once"
    assert 5 in steps and 10 in steps, "epoch ends are still saved (from the epoch-end hook)"
    assert all(step in steps for step in (1, 2, 3, 4, 6, 7))
    # An epoch's final step is saved once the epoch is complete, never half-way (that state resumes wrongly).
    assert all(complete for step, complete in saved if step % 5 == 0)
