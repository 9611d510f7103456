"""What every quantizer shares: its output, the code-usage statistics and their DDP all-reduce.

A quantizer maps a continuous latent ``z_e`` (B, D, H, W) to a latent made of codes, a code index per
position, and the loss terms it needs (none for FSQ). The families (VQ-VAE, VQ-GAN) and everything built
on their codes (the code prior, latent diffusion, ``compare``'s bits per image) use only this interface,
so the quantizer is one config key: ``model.quantizer: {name: vq | fsq | lfq, ...}``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn


class Quantized(NamedTuple):
    """What a quantizer's ``forward`` returns.

    Attributes:
        z_q: (B, D, H, W) the latent of the chosen codes; its gradient reaches ``z_e`` (straight-through or
            the rotation trick).
        indices: (B, H, W) int64 code index of every position, in ``[0, num_codes)``.
        losses: the quantizer's loss terms, each already weighted (e.g. ``codebook``, ``commitment``,
            ``entropy``); the family adds their sum to its loss and logs each by name.
        perplexity: scalar ``exp(entropy)`` of this batch's code histogram (K for uniform use of K codes).
    """

    z_q: Tensor
    indices: Tensor
    losses: dict[str, Tensor]
    perplexity: Tensor

    @property
    def loss(self) -> Tensor:
        """The sum of the loss terms (a zero tensor when there are none)."""
        return sum(self.losses.values(), self.z_q.new_zeros(()))


class CodeUsage(NamedTuple):
    """Code usage accumulated over training steps since the last ``reset_usage()``.

    Attributes:
        perplexity: ``exp(entropy)`` of the accumulated histogram.
        used_fraction: share of codes picked at least once.
        dead_codes: codes unused for at least ``dead_code_steps`` consecutive training steps.
    """

    perplexity: float
    used_fraction: float
    dead_codes: int


def perplexity_of(counts: Tensor) -> Tensor:
    """``exp(-sum p log p)`` of a histogram of code counts (1 for an empty histogram)."""
    total = counts.sum()
    probs = counts / total.clamp_min(1e-12)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return torch.exp(entropy)


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: Tensor) -> Tensor:
    """``t`` summed over the DDP ranks (``t`` itself outside DDP)."""
    if distributed():
        t = t.contiguous()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def as_rows(z: Tensor, code_dim: int) -> Tensor:
    """A latent (B, D, H, W) as rows (B*H*W, D), checking D."""
    if z.ndim != 4 or z.shape[1] != code_dim:
        raise ValueError(f"expected a latent of shape (B, {code_dim}, H, W), got {tuple(z.shape)}")
    return z.permute(0, 2, 3, 1).reshape(-1, code_dim)


def as_latent(rows: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Rows (B*H*W, D) back to a latent (B, D, H, W) for the grid ``shape`` = (B, H, W)."""
    b, h, w = shape
    return rows.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


class Quantizer(nn.Module):
    """The base of every quantizer: code count, code dimension and the usage statistics.

    Subclasses set ``num_codes`` and ``code_dim`` and implement ``forward`` (training-time quantization,
    returning ``Quantized`` and calling ``track_usage``), ``indices_of`` (the codes of a latent, no state
    change) and ``codes_to_latent`` (the latent of code indices).

    Args:
        dead_code_steps: a code unused for this many consecutive training steps counts as dead.
    """

    num_codes: int
    code_dim: int

    def __init__(self, num_codes: int, code_dim: int, dead_code_steps: int) -> None:
        super().__init__()
        if num_codes < 2 or code_dim < 1 or dead_code_steps < 1:
            raise ValueError(f"a quantizer needs num_codes >= 2, code_dim >= 1 and dead_code_steps >= 1, "
                             f"got {num_codes}, {code_dim}, {dead_code_steps}")
        self.num_codes = int(num_codes)
        self.code_dim = int(code_dim)
        self.dead_code_steps = int(dead_code_steps)
        self.register_buffer("unused_steps", torch.zeros(self.num_codes, dtype=torch.long))
        # Statistics for logging only: not part of the checkpoint.
        self.register_buffer("usage_counts", torch.zeros(self.num_codes), persistent=False)

    @property
    def bits_per_code(self) -> float:
        """log2 of the code count: what one position costs when every code is equally likely."""
        return math.log2(self.num_codes)

    def parameters_learned_without_gradients(self) -> tuple[nn.Parameter, ...]:
        """Parameters this quantizer updates by its own rule (an EMA codebook): trained, not by the optimizer."""
        return ()

    # ------------------------------------------------------------------ the interface
    def forward(self, z_e: Tensor, *, generator: torch.Generator | None = None) -> Quantized:
        raise NotImplementedError

    def indices_of(self, z: Tensor) -> Tensor:
        """The code index (B, H, W) int64 of every position of a latent (B, D, H, W); changes no state."""
        raise NotImplementedError

    def codes_to_latent(self, indices: Tensor) -> Tensor:
        """The latent (B, D, H, W) of code indices (B, H, W) int64."""
        raise NotImplementedError

    def check_indices(self, indices: Tensor) -> None:
        if indices.dtype != torch.long:
            raise TypeError(f"code indices must be int64, got {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"code indices must lie in [0, {self.num_codes}), got "
                             f"[{int(indices.min())}, {int(indices.max())}]")

    # ------------------------------------------------------------------ statistics
    def count_codes(self, indices: Tensor) -> Tensor:
        """This batch's code histogram (all-reduced over the ranks in training, so every rank agrees)."""
        counts = torch.bincount(indices.reshape(-1), minlength=self.num_codes).float()
        return all_reduce_sum(counts) if self.training else counts

    @torch.no_grad()
    def track_usage(self, counts: Tensor) -> None:
        """Add a training step's (all-reduced) histogram to the usage statistics."""
        used = counts > 0
        self.unused_steps.copy_(torch.where(used, torch.zeros_like(self.unused_steps), self.unused_steps + 1))
        self.usage_counts += counts

    def dead(self) -> Tensor:
        """Mask of the codes unused for at least ``dead_code_steps`` training steps."""
        return self.unused_steps >= self.dead_code_steps

    def code_usage(self) -> CodeUsage:
        """Usage accumulated over the training steps since the last ``reset_usage()``."""
        counts = self.usage_counts
        return CodeUsage(
            perplexity=float(perplexity_of(counts)),
            used_fraction=float((counts > 0).float().mean()),
            dead_codes=int(self.dead().sum()),
        )

    def reset_usage(self) -> None:
        """Start a new accumulation window for ``code_usage()`` (e.g. at each epoch)."""
        self.usage_counts.zero_()
