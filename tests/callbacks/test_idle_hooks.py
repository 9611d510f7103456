"""Per-batch hooks a callback inherits unchanged are hidden, and Lightning's real loop then skips them."""

import lightning as L
import torch
from lightning.pytorch.profilers import Profiler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.callbacks.idle_hooks import PER_BATCH_HOOKS, skip_idle_batch_hooks


class Counting(L.Callback):
    """Uses one per-batch hook."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1


class Actions(Profiler):
    """Lightning profiles every callback hook it calls: this keeps their names."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def start(self, action_name: str) -> None:
        self.names.append(action_name)

    def stop(self, action_name: str) -> None:
        pass


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_only_the_inherited_hooks_are_hidden_and_the_class_keeps_its_methods():
    callback = Counting()
    hidden = skip_idle_batch_hooks(callback)
    assert set(hidden) == set(PER_BATCH_HOOKS) - {"on_train_batch_end"}
    assert all(getattr(callback, hook) is None for hook in hidden)
    assert callable(callback.on_train_batch_end) and callable(Counting.on_before_backward)
    assert skip_idle_batch_hooks(Counting()) == hidden  # a fresh instance: the same, nothing shared


def test_lightning_skips_hidden_hooks_and_still_calls_the_used_one(tmp_path):
    callback, profiler = Counting(), Actions()
    skip_idle_batch_hooks(callback)
    data = DataLoader(TensorDataset(torch.randn(12, 2)), batch_size=4)
    trainer = L.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback], profiler=profiler,
                        default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(Tiny(), data)
    assert callback.batches == 6
    called = [name for name in profiler.names if name.startswith("[Callback]Counting.")]
    assert called.count("[Callback]Counting.on_train_batch_end") == 6
    # Without the hiding, Lightning would have entered each of these six times.
    assert not [name for name in called if name.split(".")[-1] in PER_BATCH_HOOKS and "batch_end" not in name]
    assert "[Callback]Counting.on_train_start" in called  # other hooks are untouched
