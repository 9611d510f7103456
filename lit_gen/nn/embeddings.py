"""Conditioning embeddings: diffusion timesteps and class labels.

Both map to vectors of the same width, which the U-Net adds together and feeds to every residual
block (Ho et al. 2020, appendix B; Ho & Salimans 2022 for the class embedding).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal features of (possibly fractional) timesteps.

    :param t: timesteps, shape (B,), any numeric dtype.
    :param dim: width of the result; an odd width gets one zero column at the end.
    :param max_period: the longest wavelength, as in Vaswani et al.
    :return: (B, dim) float32 features, [cos | sin] halves.
    """
    if t.ndim != 1:
        raise ValueError(f"timesteps must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    # Frequencies from 1 down to 1/max_period, geometrically spaced.
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the timestep followed by a two-layer MLP.

    :param base_dim: width of the sinusoidal features (the U-Net's base channel count).
    :param dim: width of the output (4 x base_dim in Ho et al.).
    """

    def __init__(self, base_dim: int, dim: int) -> None:
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(nn.Linear(base_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        """(B,) timesteps -> (B, dim) embedding (in the MLP's dtype: float32, or float64 for exact tests)."""
        return self.mlp(sinusoidal_embedding(t, self.base_dim).to(self.mlp[0].weight.dtype))


class ClassEmbedding(nn.Module):
    """A learned vector per class plus one "null" class for classifier-free guidance.

    Label ``num_classes`` (``null_index``) means "no label": training replaces a share of the
    labels with it, and guided sampling evaluates the model with it for the unconditional term.

    :param num_classes: number of real classes; labels are 0 .. num_classes - 1.
    :param dim: width of the embedding (the width of the timestep embedding).
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        assert num_classes >= 1, num_classes  # model.num_classes, checked by the config
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes + 1, dim)

    @property
    def null_index(self) -> int:
        """The label that stands for "unconditional"."""
        return self.num_classes

    def forward(self, labels: Tensor) -> Tensor:
        """(B,) int64 labels in [0, num_classes] -> (B, dim) embedding."""
        return self.embedding(labels)
