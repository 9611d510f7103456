"""lit_gen.training.step_guard: skip a non-finite step on every rank, and not otherwise; clip with the same norm."""

from __future__ import annotations

import pytest
import torch

from lit_gen.training.step_guard import StepGuard, clip_to_norm, gradient_norm


class OneProcess:
    """A strategy of one process: the decision is this process's own. Records how it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[bool, bool]] = []

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.asked.append((decision, all))
        return decision


class AnotherRankSawNaN(OneProcess):
    """A strategy whose other rank had a non-finite value: the reduced decision is True whatever this rank saw."""

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        super().reduce_boolean_decision(decision, all)
        return True


def optimizer_with_gradients(*grads: list[float]) -> torch.optim.Optimizer:
    params = []
    for values in grads:
        p = torch.nn.Parameter(torch.zeros(len(values), dtype=torch.float64))
        p.grad = torch.tensor(values, dtype=torch.float64)
        params.append(p)
    return torch.optim.SGD(params, lr=0.1)


def grads_of(optimizer: torch.optim.Optimizer) -> list:
    return [p.grad for group in optimizer.param_groups for p in group["params"]]


def test_a_finite_value_keeps_the_step_and_its_gradients():
    guard, ranks = StepGuard(), OneProcess()
    optimizer = optimizer_with_gradients([1.0, 2.0])
    assert guard.check(optimizer, torch.tensor(3.0), ranks) is False
    assert not guard.skipped and guard.decisions() == (False,)
    assert torch.equal(grads_of(optimizer)[0], torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert ranks.asked == [(False, False)]  # any rank decides (all=False), not every rank


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_value_skips_the_step_and_drops_every_gradient(bad):
    guard = StepGuard()
    optimizer = optimizer_with_gradients([1.0, 2.0], [3.0])
    assert guard.check(optimizer, torch.tensor(bad), OneProcess()) is True
    assert guard.skipped and guard.decisions() == (True,)
    assert grads_of(optimizer) == [None, None]  # the optimizer then updates nothing: weights and moments stay


def test_a_nan_on_another_rank_skips_this_ranks_finite_step_too():
    guard, ranks = StepGuard(), AnotherRankSawNaN()
    optimizer = optimizer_with_gradients([1.0])
    assert guard.check(optimizer, torch.tensor(1.0), ranks) is True
    assert ranks.asked == [(False, False)] and grads_of(optimizer) == [None] and guard.skipped


def test_an_early_check_counts_only_when_it_skips():
    """A loss checked before backward, then the gradients: one decision per optimizer step either way."""
    guard, ranks = StepGuard(), OneProcess()
    optimizer = optimizer_with_gradients([1.0])
    guard.start_batch()
    guard.start_step()
    assert not guard.check(optimizer, torch.tensor(0.5), ranks, final=False)  # finite loss: not recorded
    assert guard.check_gradients(optimizer, ranks) is not None
    guard.start_step()
    assert guard.check(optimizer, torch.tensor(float("nan")), ranks, final=False)  # NaN loss: this is the decision
    assert guard.decisions() == (False, True)
    guard.start_batch()
    guard.start_step()
    assert guard.decisions() == () and not guard.skipped


def test_check_gradients_returns_the_total_norm_of_the_parameters_with_a_gradient():
    guard = StepGuard()
    optimizer = optimizer_with_gradients([3.0, 4.0], [12.0])
    without_grad = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    optimizer.add_param_group({"params": [without_grad]})
    gradients = guard.check_gradients(optimizer, OneProcess())
    assert gradients.norm.item() == 13.0  # sqrt(9 + 16 + 144)
    assert len(gradients.params) == 2 and all(p is not without_grad for p in gradients.params)
    assert torch.equal(gradients.norm, gradient_norm(p for g in optimizer.param_groups for p in g["params"]))
    assert guard.decisions() == (False,)


def test_check_gradients_skips_a_nan_gradient_and_lets_a_step_without_gradients_through():
    guard = StepGuard()
    bad = optimizer_with_gradients([1.0, float("nan")], [2.0])
    assert guard.check_gradients(bad, OneProcess()) is None
    assert guard.skipped and grads_of(bad) == [None, None]
    guard.start_step()
    empty = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert guard.check_gradients(empty, OneProcess()) is None  # nothing to check, nothing to clip
    assert not guard.skipped and guard.decisions() == (True, False)


def test_clipping_with_the_guards_norm_equals_clip_grad_norm():
    guard = StepGuard()
    optimizer = optimizer_with_gradients([3.0, 4.0], [12.0])
    reference = optimizer_with_gradients([3.0, 4.0], [12.0])
    clip_to_norm(guard.check_gradients(optimizer, OneProcess()), 6.5)
    torch.nn.utils.clip_grad_norm_([p for g in reference.param_groups for p in g["params"]], 6.5)
    for a, b in zip(grads_of(optimizer), grads_of(reference)):
        assert torch.equal(a, b)
    assert torch.linalg.vector_norm(torch.cat(grads_of(optimizer))).item() == pytest.approx(6.5)


def test_the_held_norm_serves_its_own_optimizer_once():
    guard = StepGuard()
    first, second = optimizer_with_gradients([1.0]), optimizer_with_gradients([2.0])
    gradients = guard.check_gradients(first, OneProcess())
    assert guard.take_held(second) is None  # another optimizer's step: its norm is not this one
    guard.check_gradients(first, OneProcess())
    held = guard.take_held(first)
    assert held.params == gradients.params and torch.equal(held.norm, gradients.norm)
    assert guard.take_held(first) is None
    guard.check_gradients(first, OneProcess())
    guard.check_gradients(optimizer_with_gradients([float("nan")]), OneProcess())
    assert guard.take_held(first) is None  # a later check replaces what was held
