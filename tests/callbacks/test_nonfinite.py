"""lit_gen.callbacks.nonfinite: skip non-finite steps, count them, stop with a clear error."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.callbacks.nonfinite import NonFiniteGuard
from lit_gen.errors import TrainingError
from lit_gen.models.base import GenerativeModule, LossOutput


class Poisoned(GenerativeModule):
    """A linear model whose loss is NaN at chosen steps."""

    def __init__(self, bad_steps=(), precision_safe=True):
        super().__init__(lr=0.1)
        self.net = torch.nn.Linear(2, 1)
        self.bad_steps = set(bad_steps)

    def loss(self, batch):
        x, _ = batch
        value = self.net(x).pow(2).mean()
        if self.global_step in self.bad_steps:
            value = value * float("nan")
        return LossOutput(value, {"mse": value})


def loader():
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, torch.zeros(64, dtype=torch.long)), batch_size=8)


def trainer(guard, steps, precision="32-true"):
    return L.Trainer(max_steps=steps, callbacks=[guard], logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", precision=precision)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_bad_steps_are_skipped_and_weights_stay_finite(precision):
    model = Poisoned(bad_steps={2, 3})
    guard = NonFiniteGuard(max_consecutive=5)
    snapshots = {}

    class Snap(L.Callback):
        def on_train_batch_start(self, tr, pl, batch, idx):
            snapshots[tr.global_step] = pl.net.weight.detach().clone()

    t = trainer(guard, 6, precision)
    t.callbacks.append(Snap())
    t.fit(model, loader())
    assert guard.skipped == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # The NaN steps changed nothing: weights before step 2 equal weights after step 3.
    assert torch.equal(snapshots[2], snapshots[4])
    assert not torch.equal(snapshots[0], snapshots[1])


def test_too_many_in_a_row_stop_with_an_explanation():
    model = Poisoned(bad_steps=range(100))
    with pytest.raises(TrainingError) as info:
        trainer(NonFiniteGuard(max_consecutive=3), 20).fit(model, loader())
    message = str(info.value)
    assert "training stopped at step" in message and "3 optimizer steps in a row" in message
    assert "mse=nan" in message and "learning rate" in message and "run.max_nonfinite_steps" in message


def test_the_count_survives_a_checkpoint():
    guard = NonFiniteGuard(4)
    guard.consecutive, guard.skipped = 2, 7
    again = NonFiniteGuard(4)
    again.load_state_dict(guard.state_dict())
    assert (again.consecutive, again.skipped) == (2, 7)


def test_clipping_reuses_the_guards_norm_and_matches_lightnings_clipping(monkeypatch):
    def train(with_guard: bool):
        torch.manual_seed(0)
        model = Poisoned()
        callbacks = [NonFiniteGuard()] if with_guard else []
        L.Trainer(max_steps=6, callbacks=callbacks, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, accelerator="cpu", gradient_clip_val=0.05).fit(model, loader())
        return model

    second_passes = []
    original = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: second_passes.append(1) or original(*a, **k))
    guarded = train(with_guard=True)
    assert not second_passes  # clipping used the guard's norm
    plain = train(with_guard=False)
    assert len(second_passes) == 6
    for a, b in zip(guarded.parameters(), plain.parameters()):
        assert torch.equal(a, b)
