"""Per-batch hooks a callback does not use cost nothing: Lightning is told to skip them.

Lightning calls every hook of every callback on every batch, each call inside a profiler context.
A run has about ten callbacks and six such hooks a training step, most of them inherited no-ops,
which a small model's step feels (``bench/results/overhead.json`` measures it). Lightning's dispatch
skips a hook attribute that is not callable, so the no-ops are hidden by setting the instance's
attribute to None; the class keeps its methods.
"""

from __future__ import annotations

import lightning as L

#: The hooks Lightning calls once per batch or optimizer step (trainer/call.py dispatches them by name).
PER_BATCH_HOOKS = (
    "on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_before_zero_grad", "on_train_batch_end", "on_validation_batch_start", "on_validation_batch_end",
)


def skip_idle_batch_hooks(callback: L.Callback) -> list[str]:
    """Hide the per-batch hooks ``callback`` inherits unchanged from ``L.Callback``; return their names."""
    hidden = []
    for hook in PER_BATCH_HOOKS:
        if getattr(type(callback), hook, None) is getattr(L.Callback, hook):
            setattr(callback, hook, None)
            hidden.append(hook)
    return hidden
