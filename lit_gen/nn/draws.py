"""Random draws that honour an explicit ``torch.Generator`` whatever device the model is on.

A generator lives on one device; drawing on it and moving the result keeps samples identical on
CPU and CUDA for a CPU generator, and lets callers pass ``None`` to use the global RNG.
"""

from __future__ import annotations

import torch


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else torch.device(device)


def randn(shape, *, generator: torch.Generator | None = None, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device``, drawn from ``generator`` when given."""
    out = torch.randn(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype)
    return out.to(device)


def rand(shape, *, generator: torch.Generator | None = None, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) noise of ``shape`` on ``device``, drawn from ``generator`` when given."""
    out = torch.rand(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype)
    return out.to(device)


def randint(high: int, shape, *, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """Integers in [0, high) of ``shape`` on ``device``, drawn from ``generator`` when given."""
    out = torch.randint(high, shape, generator=generator, device=_draw_device(generator, device))
    return out.to(device)
