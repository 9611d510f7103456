"""The non-finite step guard and gradient clipping, sharing one gradient norm.

Right before an optimizer step (after the gradients are final: after DDP's average and, under fp16,
after unscaling) the guard computes the total gradient norm once. When it is not finite on any DDP
rank (a NaN or inf in the loss reaches every gradient, so this catches both), every rank drops its
gradients and the step changes no training state: the optimizer updates only parameters with a
gradient, so the weights and its moments and step counts stay as they were, and the model holds its
learning-rate schedule and any EMA (``StepGuard.skipped``). The decision is reduced over the ranks so
replicas never diverge; every rank must therefore check at the same point (it is a collective).
Otherwise the same norm clips the gradients, bitwise equal to ``clip_grad_norm_`` (which is that norm
followed by the same scaling) without a second pass over them.

A loss can also be checked before its backward pass (``StepGuard.check(..., final=False)``), which
VQ-GAN does for each of its two phases: such an early check is recorded only when it skips, so each
optimizer step has exactly one entry in ``decisions()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

import torch
from torch import Tensor


class ReducesDecisions(Protocol):
    """What the guard needs of a Lightning strategy: ``reduce_boolean_decision`` (any rank -> all ranks)."""

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool: ...


class Gradients(NamedTuple):
    """The parameters of an optimizer step that have a gradient, and the total 2-norm of those gradients."""

    params: list[torch.nn.Parameter]
    norm: Tensor


def gradient_norm(parameters: Iterable[torch.nn.Parameter]) -> Tensor | None:
    """The total 2-norm of the gradients present, as ``clip_grad_norm_`` computes it (None without any)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads, 2.0) if grads else None


def clip_to_norm(gradients: Gradients, max_norm: float) -> None:
    """Scale ``gradients`` down to a total norm of at most ``max_norm`` (as ``clip_grad_norm_``, with its norm)."""
    torch.nn.utils.clip_grads_with_norm_(gradients.params, max_norm, gradients.norm)


class StepGuard:
    """Skip non-finite optimizer steps on every rank; keep the gradient norm for clipping.

    The model calls ``start_batch()`` before each training batch, ``start_step()`` before each optimizer
    step, and ``check_gradients`` right before the optimizer updates the weights. ``skipped`` says
    whether the step in progress was skipped, ``decisions()`` what happened to each step of the batch.
    """

    def __init__(self) -> None:
        #: Whether the optimizer step in progress was skipped.
        self.skipped = False
        self._decisions: list[bool] = []
        # The gradients checked last, held for Lightning's clipping call that follows (automatic optimization).
        self._held: tuple[torch.optim.Optimizer, Gradients] | None = None

    def start_batch(self) -> None:
        """A new training batch: forget the previous batch's decisions."""
        self._decisions = []

    def start_step(self) -> None:
        """A new optimizer step: it is not skipped until a check says so."""
        self.skipped = False

    def decisions(self) -> tuple[bool, ...]:
        """For each optimizer step of the current batch, in order, whether it was skipped."""
        return tuple(self._decisions)

    def check(self, optimizer: torch.optim.Optimizer, value: Tensor | None, ranks: ReducesDecisions,
              final: bool = True) -> bool:
        """Skip ``optimizer``'s step when ``value`` (a gradient norm or a loss) is not finite on any rank.

        Skipping drops the gradients of every parameter of ``optimizer`` and sets ``skipped``.
        ``final=False`` marks an early check (a loss before its backward pass) that counts as the
        step's decision only when it skips. Returns whether the step is skipped.
        """
        bad = value is not None and not bool(torch.isfinite(value))  # the step's one host sync
        bad = ranks.reduce_boolean_decision(bad, all=False)
        if bad:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            self.skipped = True
        if bad or final:
            self._decisions.append(bad)
        return bad

    def check_gradients(self, optimizer: torch.optim.Optimizer, ranks: ReducesDecisions) -> Gradients | None:
        """Check the total gradient norm of ``optimizer``'s step (see ``check``).

        Returns the gradients and their norm when the step goes on, None when it was skipped or has no
        gradient at all. The result is also held for ``take_held`` until the next check.
        """
        self._held = None
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = gradient_norm(params)
        if self.check(optimizer, norm, ranks) or norm is None:
            return None
        gradients = Gradients(params, norm)
        self._held = (optimizer, gradients)
        return gradients

    def take_held(self, optimizer: torch.optim.Optimizer) -> Gradients | None:
        """The gradients the last ``check_gradients`` of ``optimizer`` let through, once (None otherwise)."""
        held, self._held = self._held, None
        if held is None or held[0] is not optimizer:
            return None
        return held[1]
