"""The learning-rate schedule: a linear warm-up, then a constant rate or a cosine decay to zero.

The schedule is a multiplier of the peak rate per optimizer step, run by torch's ``LambdaLR``. A
cosine needs the run's length: either a number given up front or a function that reads it from the
Trainer. The function is called when the decay first needs it (not when the scheduler is built, where
a Trainer may not know its length yet) and only once, so a training step never asks again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from lit_gen.errors import ConfigError

ScheduleKind = Literal["constant", "cosine"]


def lr_factor(step: int, warmup_steps: int, kind: ScheduleKind, total_steps: int | None = None) -> float:
    """The multiplier of the peak learning rate at optimizer step ``step`` (counted from 0).

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps, so the first step
    already trains. After it, 1 for ``"constant"``, and for ``"cosine"``
    ``0.5 (1 + cos(pi p))`` with ``p = (step - warmup_steps) / (total_steps - warmup_steps)``, held at
    ``p = 1`` (a rate of 0) past the end.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "cosine":
        assert total_steps is not None, "a cosine schedule needs its length"
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


class LearningRateSchedule:
    """Warm-up then constant or cosine: the model's ``warmup_steps`` and ``lr_schedule`` settings.

    Args:
        warmup_steps (int, default 0): linear warm-up from 0 over this many optimizer steps.
        kind ("constant" | "cosine", default "constant"): after warm-up, keep the peak rate or decay it
            to zero with a cosine over the run's length.
    """

    def __init__(self, warmup_steps: int = 0, kind: ScheduleKind = "constant") -> None:
        assert warmup_steps >= 0 and kind in ("constant", "cosine"), (warmup_steps, kind)  # checked by the config
        self.warmup_steps = warmup_steps
        self.kind = kind

    @property
    def is_constant(self) -> bool:
        """Whether the rate never changes (no warm-up, no decay): then no scheduler is needed."""
        return self.warmup_steps == 0 and self.kind == "constant"

    def scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None,
                  run_length: Callable[[], int] | None = None) -> torch.optim.lr_scheduler.LambdaLR | None:
        """A per-step ``LambdaLR`` of ``optimizer`` following this schedule (None for a constant rate).

        :param total_steps: the number of optimizer steps the cosine decays over, when known.
        :param run_length: else, a function that returns it (read from the Trainer, once).
        :raises ConfigError: for a ``total_steps`` that is not a positive integer, and for a cosine with
            neither: a guessed length would leave the rate at 0 after it, silently.
        """
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)
                                        or total_steps < 1):
            raise ConfigError(f"total_steps must be a positive integer, got {total_steps!r}")
        if self.kind == "cosine" and total_steps is None and run_length is None:
            raise ConfigError(
                "model.lr_schedule='cosine' decays over the run's length, but there is no Trainer to read it from: "
                "call configure_optimizers(total_steps=N) with your loop's number of optimizer steps "
                "(or use lr_schedule='constant')"
            )
        if self.is_constant:
            return None
        # A bound method: LambdaLR saves its (empty) __dict__ in checkpoints, never the run's length function.
        return torch.optim.lr_scheduler.LambdaLR(optimizer, ScheduledRun(self, total_steps, run_length).factor)


class ScheduledRun:
    """One run of a schedule: the schedule and the run's length, read once when first needed."""

    def __init__(self, schedule: LearningRateSchedule, total_steps: int | None,
                 run_length: Callable[[], int] | None) -> None:
        assert total_steps is not None or run_length is not None or schedule.kind == "constant"
        self.schedule = schedule
        self.total_steps = total_steps
        self.run_length = run_length

    def factor(self, step: int) -> float:
        """The multiplier of the peak rate at optimizer step ``step``."""
        schedule = self.schedule
        if self.total_steps is None and schedule.kind == "cosine" and step >= schedule.warmup_steps:
            self.total_steps = self.run_length()
        return lr_factor(step, schedule.warmup_steps, schedule.kind, self.total_steps)
