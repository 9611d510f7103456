"""lit_gen.training.term_log: logged names, step values on request, epoch means equal to the mean of the values."""

from __future__ import annotations

import pytest
import torch

from lit_gen.training.term_log import TermLog, shown_values


class Recorder:
    """Stands in for ``LightningModule.log``: every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, dict]] = []

    def __call__(self, name: str, value, **options) -> None:
        self.calls.append((name, float(value), options))

    def values(self) -> dict[str, float]:
        return {name: value for name, value, _ in self.calls}


def test_epoch_means_are_the_means_of_the_added_values():
    log, terms = Recorder(), TermLog()
    losses, recons = [0.5, 1.5, 4.0], [0.25, 0.75, 2.0]
    for loss, recon in zip(losses, recons):
        terms.add("train", 0, {"loss": torch.tensor(loss), "recon": torch.tensor(recon)}, batch_size=8)
    terms.log_epoch(log, "train")
    assert log.values() == pytest.approx({"train/loss_epoch": 2.0, "train/loss": 2.0,
                                          "train/recon_epoch": 1.0, "train/recon": 1.0})
    # The _epoch value reaches the loggers (and the progress bar for the loss); the plain name only callbacks.
    options = {name: opts for name, _, opts in log.calls}
    assert options["train/loss_epoch"]["prog_bar"] and not options["train/recon_epoch"]["prog_bar"]
    assert options["train/loss"]["logger"] is False and options["train/loss_epoch"]["on_epoch"]


def test_batches_of_different_sizes_and_partial_terms_weigh_by_their_examples():
    log, terms = Recorder(), TermLog()
    terms.add("train", 0, {"loss": torch.tensor(1.0), "t0": torch.tensor(10.0)}, 4, {"t0": torch.tensor(1)})
    terms.add("train", 0, {"loss": torch.tensor(4.0), "t0": torch.tensor(99.0)}, 2, {"t0": torch.tensor(0)})
    terms.add("train", 0, {"loss": torch.tensor(2.0), "t0": torch.tensor(20.0)}, 2, {"t0": torch.tensor(3)})
    terms.add("train", 0, {"never": torch.tensor(5.0)}, 2, {"never": torch.tensor(0)})
    terms.log_epoch(log, "train")
    values = log.values()
    assert values["train/loss_epoch"] == pytest.approx((1.0 * 4 + 4.0 * 2 + 2.0 * 2) / 8)
    assert values["train/t0_epoch"] == pytest.approx((10.0 * 1 + 20.0 * 3) / 4)  # the empty batch's 99 counts 0
    assert "train/never_epoch" not in values  # a term over no example at all has no mean to show


def test_step_values_leave_out_terms_over_no_example():
    values = {"loss": torch.tensor(1.0), "t0": torch.tensor(2.0), "t1": torch.tensor(3.0)}
    assert shown_values(values) == values
    assert list(shown_values(values, {"t0": torch.tensor(0), "t1": torch.tensor(5)})) == ["loss", "t1"]
    log = Recorder()
    TermLog.log_step(log, values, 16, {"t0": torch.tensor(0)})
    assert [(name, value) for name, value, _ in log.calls] == [("train/loss_step", 1.0), ("train/t1_step", 3.0)]
    assert all(opts["on_step"] and not opts["on_epoch"] and opts["batch_size"] == 16 for _, _, opts in log.calls)
    assert [opts["prog_bar"] for _, _, opts in log.calls] == [True, False]


def test_the_training_epoch_is_logged_once_however_often_it_is_asked():
    log, terms = Recorder(), TermLog()
    terms.add("train", 3, {"loss": torch.tensor(1.0)}, 1)
    assert terms.log_train_epoch(log, 3) is True
    assert terms.log_train_epoch(log, 3) is False
    assert [name for name, _, _ in log.calls] == ["train/loss_epoch", "train/loss"]
    terms.start_train_epoch()
    terms.add("train", 4, {"loss": torch.tensor(3.0)}, 1)
    assert terms.log_train_epoch(log, 4) is True
    assert log.calls[-1][:2] == ("train/loss", 3.0)  # the new epoch's values only


def test_validation_means_restart_with_each_validation_and_use_the_val_names():
    log, terms = Recorder(), TermLog()
    terms.add("val", 0, {"loss": torch.tensor(9.0)}, 2)
    terms.start_validation()
    terms.add("val", 0, {"loss": torch.tensor(1.0), "kl": torch.tensor(0.5)}, 2)
    terms.add("val", 0, {"loss": torch.tensor(3.0), "kl": torch.tensor(1.5)}, 2)
    terms.log_epoch(log, "val")
    assert log.values() == pytest.approx({"val/loss": 2.0, "val/kl": 1.0})
    assert [opts["prog_bar"] for _, _, opts in log.calls] == [True, False]


def test_means_cover_every_ranks_examples():
    log, terms = Recorder(), TermLog()
    terms.add("train", 0, {"loss": torch.tensor(1.0)}, 2)  # this rank: 2 examples of loss 1
    other_rank = iter([torch.tensor([3.0 * 6]), torch.tensor([6.0])])  # the other: 6 examples of loss 3

    def reduce_sum(t):
        return t + next(other_rank)

    terms.log_epoch(log, "train", reduce_sum)
    assert log.values()["train/loss_epoch"] == pytest.approx((1.0 * 2 + 3.0 * 6) / 8)


def test_a_mid_epoch_checkpoint_keeps_the_training_sums():
    terms = TermLog()
    terms.add("train", 1, {"loss": torch.tensor(2.0)}, 4)
    terms.add("val", 1, {"loss": torch.tensor(7.0)}, 4)
    resumed = TermLog()
    resumed.load_state_dict(terms.state_dict())
    resumed.add("train", 1, {"loss": torch.tensor(5.0)}, 2)
    log = Recorder()
    resumed.log_epoch(log, "train")
    resumed.log_epoch(log, "val")
    assert log.values() == pytest.approx({"train/loss_epoch": (2.0 * 4 + 5.0 * 2) / 6, "train/loss": 3.0})
