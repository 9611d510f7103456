"""Small convolutional encoders and decoders with spatial latents (for AE / VAE and latent diffusion)."""

from __future__ import annotations

from torch import Tensor, nn

from lit_gen.nn.layers import group_norm


def _norm(channels: int) -> nn.GroupNorm:
    return group_norm(channels, max_groups=8)


def check_downsampling(image_size: int, levels: int) -> None:
    """Raise a ValueError when ``image_size`` cannot be halved ``levels`` times."""
    factor = 2**levels
    if image_size % factor != 0:
        sizes = ", ".join(str(factor * k) for k in range(1, 5))
        raise ValueError(
            f"image_size={image_size} cannot be halved {levels} times (one per entry of conv_channels); "
            f"use an image size divisible by {factor} (e.g. {sizes}) or fewer conv_channels"
        )


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_channels, H / 2^L, W / 2^L), one stride-2 level per entry of ``widths``."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1), nn.SiLU()]
        width = widths[0]
        for next_width in widths:
            layers += [nn.Conv2d(width, next_width, 4, stride=2, padding=1), _norm(next_width), nn.SiLU()]
            width = next_width
        layers.append(nn.Conv2d(width, out_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """(B, latent_channels, h, w) -> (B, out_channels, h * 2^L, w * 2^L), mirroring ``ConvEncoder``."""

    def __init__(self, latent_channels: int, widths: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        widths = tuple(reversed(widths))
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, widths[0], 3, padding=1), nn.SiLU()]
        width = widths[0]
        for next_width in widths:
            layers += [nn.ConvTranspose2d(width, next_width, 4, stride=2, padding=1), _norm(next_width), nn.SiLU()]
            width = next_width
        layers.append(nn.Conv2d(width, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
