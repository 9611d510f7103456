"""lit_gen.training.lr_schedule: the rate at given steps, the run's length read once, the checkpointed state."""

from __future__ import annotations

import pytest
import torch

from lit_gen.errors import ConfigError
from lit_gen.training.lr_schedule import LearningRateSchedule, lr_factor

COS_QUARTER = 0.8535533905932737  # (1 + cos(pi / 4)) / 2
COS_THREE_QUARTERS = 0.14644660940672627  # (1 + cos(3 pi / 4)) / 2


def test_warm_up_is_linear_and_reaches_the_peak_on_its_last_step():
    assert [lr_factor(s, 4, "constant") for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_after_warm_up_by_hand():
    # warm-up 2, length 6: the decay covers steps 2..6, a quarter of it per step, and stays at 0 after.
    factors = [lr_factor(s, 2, "cosine", 6) for s in range(8)]
    assert factors == pytest.approx([0.5, 1.0, 1.0, COS_QUARTER, 0.5, COS_THREE_QUARTERS, 0.0, 0.0], abs=1e-15)


def test_a_cosine_no_longer_than_its_warm_up_decays_over_one_step():
    # Nothing left to decay over: the length counts as one step past the warm-up instead of dividing by 0.
    assert [lr_factor(s, 3, "cosine", 3) for s in range(5)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.0])


def rates(scheduler, optimizer, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def sgd(lr: float = 0.4) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_the_scheduler_moves_the_optimizers_rate_step_by_step():
    optimizer = sgd(0.4)
    scheduler = LearningRateSchedule(2, "cosine").scheduler(optimizer, total_steps=6)
    assert rates(scheduler, optimizer, 7) == pytest.approx(
        [0.2, 0.4, 0.4, 0.4 * COS_QUARTER, 0.2, 0.4 * COS_THREE_QUARTERS, 0.0], abs=1e-12)


def test_the_runs_length_is_read_once_and_only_when_the_decay_needs_it():
    asked = []

    def run_length() -> int:
        asked.append(1)
        return 6

    optimizer = sgd(0.4)
    scheduler = LearningRateSchedule(2, "cosine").scheduler(optimizer, run_length=run_length)
    # Stepping the scheduler computes the next step's rate: after one step, still in the warm-up.
    assert rates(scheduler, optimizer, 1) == pytest.approx([0.2]) and not asked
    assert rates(scheduler, optimizer, 6) == pytest.approx(
        [0.4, 0.4, 0.4 * COS_QUARTER, 0.2, 0.4 * COS_THREE_QUARTERS, 0.0], abs=1e-12)
    assert len(asked) == 1


def test_a_constant_rate_needs_no_scheduler_and_no_length():
    assert LearningRateSchedule().scheduler(sgd()) is None
    assert LearningRateSchedule(0, "constant").is_constant and not LearningRateSchedule(1, "constant").is_constant


def test_a_cosine_without_a_length_and_bad_lengths_are_config_errors():
    with pytest.raises(ConfigError, match=r"configure_optimizers\(total_steps=N\)"):
        LearningRateSchedule(0, "cosine").scheduler(sgd())
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match=f"total_steps must be a positive integer, got {bad!r}"):
            LearningRateSchedule(0, "constant").scheduler(sgd(), total_steps=bad)


def test_the_checkpointed_state_holds_no_function_and_resumes_the_same_rates():
    """Checkpoints load with weights_only=True: LambdaLR stores its lambda's __dict__, which must be empty."""
    optimizer = sgd(0.4)
    scheduler = LearningRateSchedule(2, "cosine").scheduler(optimizer, run_length=lambda: 6)
    rates(scheduler, optimizer, 3)
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [{}] and state["last_epoch"] == 3
    again = sgd(0.4)
    resumed = LearningRateSchedule(2, "cosine").scheduler(again, run_length=lambda: 6)
    resumed.load_state_dict(state)
    again.param_groups[0]["lr"] = optimizer.param_groups[0]["lr"]  # Lightning restores the optimizer's state too
    assert rates(resumed, again, 4) == rates(scheduler, optimizer, 4)
