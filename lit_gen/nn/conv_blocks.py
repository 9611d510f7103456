"""Residual convolutional encoder and decoder of the VQ families (VQ-VAE, VQ-GAN).

The encoder halves the resolution ``num_downsamples`` times with stride-2 convolutions between
stacks of pre-activation residual blocks (the shared ``lit_gen.nn.layers.ResBlock``); the decoder
mirrors it with nearest-neighbour upsampling. The width stays ``hidden_channels`` at every level: small, and enough for 8-64 pixel images.
"""

from __future__ import annotations

from torch import Tensor, nn

from lit_gen.nn.layers import Downsample, ResBlock, Upsample, group_norm

#: GroupNorm epsilon of the VQ codecs (taming-transformers' value).
EPS = 1e-6


def norm(channels: int) -> nn.GroupNorm:
    return group_norm(channels, 32, EPS)


class ConvEncoder(nn.Module):
    """Image (B, C, H, W) -> feature map (B, out_channels, H / 2^n, W / 2^n).

    Args:
        in_channels (int): image channels.
        hidden_channels (int): width of every level.
        out_channels (int): channels of the output map.
        num_res_blocks (int): residual blocks per level.
        num_downsamples (int): number of halvings n.
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_res_blocks: int, num_downsamples: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden_channels, 3, padding=1)]
        for _ in range(num_downsamples):
            layers += [ResBlock(hidden_channels, eps=EPS) for _ in range(num_res_blocks)]
            layers.append(Downsample(hidden_channels))
        layers += [ResBlock(hidden_channels, eps=EPS) for _ in range(num_res_blocks)]
        layers += [norm(hidden_channels), nn.SiLU(), nn.Conv2d(hidden_channels, out_channels, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ConvDecoder(nn.Module):
    """Feature map (B, in_channels, h, w) -> image (B, out_channels, h * 2^n, w * 2^n), unbounded.

    ``last_layer`` is the final convolution; VQ-GAN's adaptive adversarial weight reads its gradients.
    Arguments mirror ``ConvEncoder``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_res_blocks: int, num_downsamples: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden_channels, 3, padding=1)]
        layers += [ResBlock(hidden_channels, eps=EPS) for _ in range(num_res_blocks)]
        for _ in range(num_downsamples):
            layers.append(Upsample(hidden_channels))
            layers += [ResBlock(hidden_channels, eps=EPS) for _ in range(num_res_blocks)]
        layers += [norm(hidden_channels), nn.SiLU()]
        self.layers = nn.Sequential(*layers)
        self.last_layer = nn.Conv2d(hidden_channels, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        return self.last_layer(self.layers(z))
