"""Building blocks shared by the U-Net, the convolutional codecs and the discriminator.

One GroupNorm rule (``group_norm``), one residual block (``ResBlock``) and the resolution changes.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

#: How a residual block takes its conditioning vector (see ``ResBlock``).
Conditioning = Literal["scale_shift", "add"]


def norm_groups(channels: int, max_groups: int) -> int:
    """The largest group count <= ``max_groups`` that divides ``channels`` (GroupNorm needs one).

    For the power-of-two widths of every shipped config this is ``min(channels, max_groups)``; odd
    test widths still get a valid (smaller) count instead of an error.
    """
    groups = max(1, min(max_groups, channels))
    while channels % groups:
        groups -= 1
    return groups


def group_norm(channels: int, max_groups: int = 32, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm over ``channels`` with ``norm_groups(channels, max_groups)`` groups: the one rule of lit_gen."""
    return nn.GroupNorm(norm_groups(channels, max_groups), channels, eps=eps)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` (Ho et al.: a residual branch's last layer, so the block starts as the identity)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``skip(x) + conv2(dropout(act(cond(norm2(conv1(act(norm1(x)))), emb))))``: the residual block of every network.

    Conditioning (``emb_dim`` set) comes in one of two ways:

    - ``"scale_shift"`` (Dhariwal & Nichol 2021's ``use_scale_shift_norm``): a linear layer maps the
      embedding to a per-channel (scale, shift) applied *after* the GroupNorm,
      ``norm2(h) * (1 + scale) + shift``. Nothing after it removes a per-channel constant, so the
      block sees the embedding at any group size.
    - ``"add"`` (Ho et al. 2020): the embedding is added per channel *before* the GroupNorm. Where a
      group holds one channel, the norm subtracts that constant exactly and the block never sees the
      embedding (two channels per group keep only their difference). Kept so checkpoints written
      with it rebuild the network they trained.

    Args:
        in_channels (int): input width.
        out_channels (int | None): output width (None: ``in_channels``); a 1x1 convolution matches
            the skip path when they differ.
        emb_dim (int | None): width of a conditioning vector (the U-Net's timestep and class
            embedding); None: no conditioning.
        conditioning ("scale_shift" | "add", default "scale_shift"): how the embedding enters, see above.
        dropout (float): dropout before the second convolution.
        max_groups (int), eps (float): the GroupNorms (see ``group_norm``).
        zero_last (bool): start the second convolution at zero, so the block starts as the identity.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, *, emb_dim: int | None = None,
                 conditioning: Conditioning = "scale_shift", dropout: float = 0.0, max_groups: int = 32,
                 eps: float = 1e-5, zero_last: bool = False) -> None:
        super().__init__()
        assert conditioning in ("scale_shift", "add"), conditioning  # the config checks the Literal
        out_channels = out_channels or in_channels
        self.conditioning = conditioning
        self.norm1 = group_norm(in_channels, max_groups, eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        widths = 2 * out_channels if conditioning == "scale_shift" else out_channels
        self.emb_proj = nn.Linear(emb_dim, widths) if emb_dim is not None else None
        self.norm2 = group_norm(out_channels, max_groups, eps)
        self.dropout = nn.Dropout(dropout)
        conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv2 = zero_init(conv2) if zero_last else conv2
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.register_load_state_dict_pre_hook(_rename_sequential_body)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb_proj is None:
            h = self.norm2(h)
        else:
            projected = self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, C or 2C, 1, 1) broadcast over pixels
            if self.conditioning == "scale_shift":
                scale, shift = projected.chunk(2, dim=1)
                h = self.norm2(h) * (1 + scale) + shift
            else:
                h = self.norm2(h + projected)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


#: The VQ codecs' residual block was an ``nn.Sequential`` named ``body``: (norm, act, conv, norm, act, conv).
_SEQUENTIAL_NAMES = {"body.0.": "norm1.", "body.2.": "conv1.", "body.3.": "norm2.", "body.5.": "conv2."}


def _rename_sequential_body(module, state_dict, prefix, *_) -> None:
    """Checkpoints written before the VQ codecs shared ``ResBlock`` load under the current names."""
    for old, new in _SEQUENTIAL_NAMES.items():
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)


class Downsample(nn.Module):
    """Halve height and width with a stride-2 3x3 convolution (padded, so odd sizes round up)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double height and width: nearest neighbour, then a 3x3 convolution (no checkerboard artefacts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
