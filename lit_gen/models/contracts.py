"""What lit_gen's callbacks may use on a model: one declared ``Protocol``.

Callbacks type their ``pl_module`` against ``CallbackContract`` and call nothing else on it, so the
contract between a family and the training machinery is visible in one place instead of spread over
``getattr`` calls. ``GenerativeModule`` implements it for every family, and
``tests/models/test_contracts.py`` checks that each registered family satisfies it.

This module imports no model, so callbacks and models both depend on it and never on each other.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class CallbackContract(Protocol):
    """The members of a lit_gen model that callbacks read or call (besides Lightning's own ``log``)."""

    #: Whether ``sample(labels=...)`` is meaningful.
    conditional: bool
    #: The number of classes a conditional model takes (None for unconditional ones).
    num_classes: int | None
    #: The detached loss and its terms of the latest training step (empty before the first one).
    last_loss_terms: dict[str, Tensor]
    #: Whether the module is in training mode (``torch.nn.Module``).
    training: bool

    @property
    def device(self) -> torch.device: ...

    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None,
               **options: Any) -> Tensor:
        """``n`` new images in [0, 1], shape (n, C, H, W), on the model's device."""

    def is_logging_step(self) -> bool:
        """Whether this training step's values reach the loggers (else computing them is wasted)."""

    def log_epoch_metrics(self) -> None:
        """Log this training epoch's metrics now (idempotent within an epoch; every DDP rank calls it)."""

    def skipped_optimizer_steps(self) -> tuple[bool, ...]:
        """For each optimizer step taken during the current training batch, in order, whether it was
        skipped for a non-finite loss or gradient (empty for a batch that only accumulated)."""

    def ema_snapshot(self) -> dict | None:
        """The snapshot of the weight averages due after the optimizer step just taken, a plain dict the
        snapshot callback saves (None when none is due or the family keeps no power EMA)."""

    def log(self, name: str, value: Any, **kwargs: Any) -> None:
        """Lightning's ``LightningModule.log``."""

    def train(self, mode: bool = True) -> Any:
        """``torch.nn.Module.train`` (sampling callbacks switch to eval mode and back)."""

    def eval(self) -> Any:
        """``torch.nn.Module.eval``."""


def require_contract(callback: object, module: object) -> None:
    """Refuse, when a callback is set up, a module that does not offer what callbacks may use."""
    if not isinstance(module, CallbackContract):
        raise TypeError(f"{type(callback).__name__} needs a lit_gen model (CallbackContract), "
                        f"got {type(module).__name__}")
