"""Epoch means of logged values: weighting, epochs, checkpoints, and what GenerativeModule logs with them."""

import lightning as L
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.models.base import GenerativeModule, LossOutput
from lit_gen.models.running_means import RunningMeans


def test_means_weigh_each_value_by_its_weight_and_skip_empty_terms():
    means = RunningMeans()
    means.add(0, {"a": torch.tensor(1.0), "b": torch.tensor(5.0)}, {"a": 2, "b": torch.tensor(0)})
    means.add(0, {"a": torch.tensor(4.0), "b": torch.tensor(3.0)}, {"a": 1, "b": torch.tensor(3)})
    out = means.means()
    assert out["a"].item() == pytest.approx((1 * 2 + 4 * 1) / 3)
    assert out["b"].item() == pytest.approx(3.0)  # the weight-0 value does not count
    means.add(0, {"c": torch.tensor(7.0)}, {"c": torch.tensor(0)})
    assert "c" not in means.means()


def test_a_new_epoch_starts_from_zero_and_state_survives_a_round_trip():
    means = RunningMeans()
    means.add(3, {"a": torch.tensor(10.0)}, {"a": 1})
    restored = RunningMeans()
    restored.load_state_dict(means.state_dict())
    restored.add(3, {"a": torch.tensor(20.0)}, {"a": 1})
    assert restored.means()["a"].item() == pytest.approx(15.0)  # a resumed epoch keeps its first half
    restored.add(4, {"a": torch.tensor(1.0)}, {"a": 1})
    assert restored.means()["a"].item() == pytest.approx(1.0)


def test_reduce_sum_combines_ranks_before_dividing():
    means = RunningMeans()
    means.add(0, {"a": torch.tensor(2.0)}, {"a": 1})
    other_rank = iter([torch.tensor([24.0]), torch.tensor([3.0])])  # its sums, then its weights
    assert means.means(lambda t: t + next(other_rank))["a"].item() == pytest.approx((2.0 + 24.0) / (1 + 3))


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
    data = torch.tensor([0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 8.0, 5.0])  # batches of 2: the 3rd has no odd entry
    recorder = StepMetrics()
    trainer = fit(PartialTerms(), data, batch_size=2, log_every_n_steps=2, callbacks=[recorder])
    metrics = trainer.callback_metrics
    assert metrics["train/loss_epoch"].item() == pytest.approx(data.mean().item())
    assert metrics["train/loss"].item() == pytest.approx(data.mean().item())
    assert metrics["train/odd_epoch"].item() == pytest.approx((1 + 3 + 5) / 3)  # not diluted by the empty batch
    assert recorder.seen == [False, True, False, True]
