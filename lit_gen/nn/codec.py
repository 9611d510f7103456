"""The convolutional codec of every family with a spatial latent: AE / VAE (``architecture: conv``), VQ-VAE
and VQ-GAN, and so latent diffusion's first stages.

The encoder is a 3x3 stem, then one resolution level per entry of ``widths``: ``num_res_blocks``
pre-activation residual blocks (the shared ``lit_gen.nn.layers.ResBlock``; the first block of a level
changes the width) and a stride-2 convolution to the next level; then norm, SiLU and a 3x3 head. The
decoder mirrors it with nearest-neighbour upsampling. This is the layout of taming-transformers' and
latent diffusion's codecs without their attention.
"""

from __future__ import annotations

from torch import Tensor, nn

from lit_gen.errors import CheckpointError
from lit_gen.nn.layers import Downsample, ResBlock, Upsample, group_norm

#: GroupNorm epsilon of the codec (taming-transformers' value).
EPS = 1e-6


def norm(channels: int) -> nn.GroupNorm:
    return group_norm(channels, 32, EPS)


def check_downsampling(image_size: int, halvings: int) -> None:
    """Raise a ValueError when ``image_size`` cannot be halved ``halvings`` times."""
    factor = 2**halvings
    if image_size % factor != 0:
        sizes = ", ".join(str(factor * k) for k in range(1, 5))
        raise ValueError(f"image_size={image_size} cannot be halved {halvings} times; use an image size divisible "
                         f"by {factor} (e.g. {sizes}) or fewer levels")


def _refuse_stride4_layout(module, state_dict, prefix, *args) -> None:
    # Conv AE / VAE checkpoints written before the codecs became one hold a different network (plain
    # stride-2 4x4 convolutions under "net."): no weight of it maps onto this one.
    if f"{prefix}net.0.weight" in state_dict:
        raise CheckpointError(
            "this checkpoint's convolutional autoencoder has the earlier stride-4x4 layout ('net.*' weights), "
            "which lit_gen's one codec (lit_gen/nn/codec.py) replaced; retrain it with this version "
            "(python -m lit_gen.fit --config <its config>), or load it with a lit_gen from before the change")


class ConvEncoder(nn.Module):
    """Image (B, C, H, W) -> feature map (B, out_channels, H / 2^n, W / 2^n), n = len(widths) - 1.

    Args:
        in_channels (int): image channels.
        widths (tuple[int, ...]): width of each resolution level, full resolution first.
        out_channels (int): channels of the output map.
        num_res_blocks (int): residual blocks per level.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], out_channels: int, num_res_blocks: int) -> None:
        super().__init__()
        assert widths and num_res_blocks >= 1, (widths, num_res_blocks)
        width = widths[0]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1)]
        for level, level_width in enumerate(widths):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(width, level_width, eps=EPS))
                width = level_width
            if level < len(widths) - 1:
                layers.append(Downsample(width))
        layers += [norm(width), nn.SiLU(), nn.Conv2d(width, out_channels, 3, padding=1)]
        self.layers = nn.Sequential(*layers)
        self.register_load_state_dict_pre_hook(_refuse_stride4_layout)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ConvDecoder(nn.Module):
    """Feature map (B, in_channels, h, w) -> image (B, out_channels, h * 2^n, w * 2^n), unbounded.

    ``widths`` are the encoder's (full resolution first); ``last_layer`` is the final convolution, whose
    gradients VQ-GAN's adaptive adversarial weight reads.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], out_channels: int, num_res_blocks: int) -> None:
        super().__init__()
        assert widths and num_res_blocks >= 1, (widths, num_res_blocks)
        width = widths[-1]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1)]
        for level, level_width in enumerate(reversed(widths)):
            if level > 0:
                layers.append(Upsample(width))
            for _ in range(num_res_blocks):
                layers.append(ResBlock(width, level_width, eps=EPS))
                width = level_width
        layers += [norm(width), nn.SiLU()]
        self.layers = nn.Sequential(*layers)
        self.last_layer = nn.Conv2d(width, out_channels, 3, padding=1)
        self.register_load_state_dict_pre_hook(_refuse_stride4_layout)

    def forward(self, z: Tensor) -> Tensor:
        return self.last_layer(self.layers(z))
