"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper that turns a conditional network into
the ``model_fn(x_t, t)`` every sampler takes.

``pred = pred_u + w (pred_c - pred_u)``: w = 1 is the plain conditional model, w = 0 the
unconditional one, w > 1 trades diversity for fidelity to the label. The formula is applied to
the raw network output; for eps-, x0- and v-prediction alike this is the same guidance, because
each converts to the others by a map that is affine in the output at fixed (x_t, t).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from lit_gen.diffusion.objectives import ModelFn

ConditionalNet = Callable[[Tensor, Tensor, Tensor], Tensor]


def guided(net: ConditionalNet, labels: Tensor, null_label: int, scale: float) -> ModelFn:
    """A ``model_fn(x_t, t)`` that evaluates ``net(x_t, t, labels)`` with guidance ``scale``.

    :param net: a conditional network ``(x, t, labels) -> prediction``, trained with label dropout
        to ``null_label`` so that it also knows the unconditional prediction.
    :param labels: (B,) int64 class labels, one per generated image.
    :param null_label: the label that means "unconditional".
    :param scale: guidance weight w (>= 0). At w = 1 only the conditional pass runs; otherwise the
        conditional and unconditional predictions come from one forward pass over a batch of 2B.
    """
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"guidance scale must be a finite number >= 0 (1 = no guidance), got {scale}")

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        if scale == 1.0:
            return net(x, t, labels)
        null = torch.full_like(labels, null_label)
        both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))  # (2B, ...)
        cond, uncond = both.chunk(2)
        return uncond + scale * (cond - uncond)

    return model_fn
