"""GenerativeModule: its optimizer and learning-rate schedule inside and outside a Trainer, and its logging.

The pieces themselves are tested in tests/training; here, how the base class wires them to Lightning.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.errors import ConfigError
from lit_gen.models.base import GenerativeModule, LossOutput
from tests.training.test_lr_schedule import rates


class Linear(GenerativeModule):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.net = torch.nn.Linear(2, 1)

    def loss(self, batch):
        value = self.net(batch[0]).pow(2).mean()
        return LossOutput(value, {})


def test_cosine_outside_a_trainer_needs_its_length():
    model = Linear(lr=0.002, warmup_steps=100, lr_schedule="cosine")
    with pytest.raises(ConfigError, match=r"configure_optimizers\(total_steps=N\)"):
        model.configure_optimizers()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="total_steps must be a positive integer"):
            model.configure_optimizers(total_steps=bad)
    # A constant rate, with or without warm-up, has no length to know.
    assert isinstance(Linear(lr=0.1).configure_optimizers(), torch.optim.AdamW)
    config = Linear(lr=0.1, warmup_steps=4).configure_optimizers()
    lr = rates(config["lr_scheduler"]["scheduler"], config["optimizer"], 6)
    assert lr == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


def test_cosine_outside_a_trainer_decays_over_the_given_steps():
    model = Linear(lr=0.002, warmup_steps=100, lr_schedule="cosine")
    config = model.configure_optimizers(total_steps=300)
    lr = rates(config["lr_scheduler"]["scheduler"], config["optimizer"], 300)
    assert lr[0] == pytest.approx(0.002 / 100) and lr[99] == pytest.approx(0.002)
    # Halfway through the decay the rate is half the peak, and it reaches 0 only at the end.
    assert lr[200] == pytest.approx(0.001)
    assert lr[101] > 0.0019 and all(r > 0 for r in lr)
    assert lr[299] == pytest.approx(0.002 * 0.5 * (1 + math.cos(math.pi * 199 / 200)))


def test_under_a_trainer_the_cosine_follows_max_steps():
    model = Linear(lr=0.1, lr_schedule="cosine")
    # An explicit length is the schedule's own; it leaves no trace that a later Trainer run would read.
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    assert rates(model.lr_scheduler_for(sgd, total_steps=5), sgd, 6) == pytest.approx(
        [0.1 * 0.5 * (1 + math.cos(math.pi * k / 5)) for k in range(5)] + [0.0])
    seen = []

    class Rate(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    data = DataLoader(TensorDataset(torch.randn(32, 2), torch.zeros(32, dtype=torch.long)), batch_size=4)
    L.Trainer(max_steps=8, callbacks=[Rate()], logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu").fit(model, data)
    assert seen == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)])


class PartialTerms(GenerativeModule):
    """Loss = mean of the batch; term ``odd`` averages only its odd entries (weight = their count)."""

    def __init__(self):
        super().__init__(lr=1e-3)
        self.w = torch.nn.Parameter(torch.zeros(()))

    def loss(self, batch) -> LossOutput:
        x = batch[0].flatten()
        odd = x[x % 2 == 1]
        odd_mean = odd.mean() if odd.numel() else torch.tensor(0.0)
        return LossOutput(x.mean() + 0 * self.w, {"odd": odd_mean}, {"odd": torch.tensor(odd.numel())})


class StepMetrics(L.Callback):
    """Which training steps logged a step value (a spy on the module's ``log``)."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.append(False)
        if not hasattr(module, "_unspied_log"):
            module._unspied_log = module.log

            def spy(name, *args, **kwargs):
                if name.endswith("_step"):
                    self.seen[-1] = True
                return module._unspied_log(name, *args, **kwargs)

            module.log = spy


def fit(module, data: Tensor, batch_size: int, log_every_n_steps: int, callbacks=()):
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=log_every_n_steps,
                        callbacks=list(callbacks))
    trainer.fit(module, DataLoader(TensorDataset(data, torch.zeros(len(data), dtype=torch.long)), batch_size=batch_size))
    return trainer


def test_epoch_means_are_exact_and_step_values_appear_only_on_logging_steps():
    """What a family gets from the base class: ``TermLog`` wired to Lightning's logging and its steps."""
    data = torch.tensor([0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 8.0, 5.0])  # batches of 2: the 3rd has no odd entry
    recorder = StepMetrics()
    trainer = fit(PartialTerms(), data, batch_size=2, log_every_n_steps=2, callbacks=[recorder])
    metrics = trainer.callback_metrics
    assert metrics["train/loss_epoch"].item() == pytest.approx(data.mean().item())
    assert metrics["train/loss"].item() == pytest.approx(data.mean().item())
    assert metrics["train/odd_epoch"].item() == pytest.approx((1 + 3 + 5) / 3)  # not diluted by the empty batch
    assert recorder.seen == [False, True, False, True]
