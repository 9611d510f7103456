"""Resolution changes shared by the U-Net and the VQ encoders / decoders."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


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
