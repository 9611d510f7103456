"""The DDPM U-Net (Ho et al. 2020, appendix B): ``(x_t, t, labels) -> prediction`` of x_t's shape.

A stack of residual blocks at halving resolutions, each fed the timestep (and class) embedding,
self-attention at chosen resolutions, a middle block with attention, and an upward path that
concatenates the matching downward activations. The network knows nothing of noise schedules:
``t`` is only a number it is conditioned on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gen.nn.embeddings import ClassEmbedding, TimestepEmbedding
from lit_gen.nn.layers import Conditioning, Downsample, ResBlock, Upsample, group_norm, zero_init


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels, with a residual connection (``heads`` splits the channels;
    the weights do not depend on it, so one checkpoint runs with any head count that divides them)."""

    def __init__(self, channels: int, groups: int, heads: int = 1) -> None:
        super().__init__()
        assert channels % heads == 0, (channels, heads)
        self.heads = heads
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # (B, 3, heads, C / heads, HW) -> q, k, v each (B, heads, HW, C / heads)
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class EmbedSequential(nn.Sequential):
    """A sequence of layers in which residual blocks also receive the conditioning embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNet(nn.Module):
    """The diffusion family's U-Net (Ho et al.'s DDPM network, with scale-shift conditioning by default).

    :param in_channels: channels of x_t (3 for RGB, 1 for greyscale, c for latents).
    :param out_channels: channels of the prediction; None means ``in_channels``.
    :param base_channels: channels of the first level (128 in Ho et al.'s CIFAR-10 model).
    :param channel_mults: width of each level as a multiple of ``base_channels``; every level after
        the first halves the resolution.
    :param num_res_blocks: residual blocks per level on the way down (the way up has one more).
    :param attention_resolutions: side lengths (e.g. ``(16,)``) at which self-attention follows
        each residual block; each must be a resolution the network reaches.
    :param dropout: dropout rate inside residual blocks.
    :param image_size: side length of the inputs; must be divisible by ``2 ** (len(channel_mults) - 1)``.
    :param num_classes: number of classes for class conditioning; None for an unconditional net.
        A conditional net also accepts the null label ``num_classes`` (used by classifier-free guidance).
    :param groups: the most GroupNorm groups per layer; fewer are used where the width needs it.
    :param attention_heads: heads of every self-attention layer; must divide the width of each level
        that has attention (and of the middle block).
    :param conditioning: how every residual block takes the time (and class) embedding:
        ``"scale_shift"`` after its second GroupNorm (Dhariwal & Nichol 2021), or ``"add"`` before it
        (Ho et al. 2020; a group of one channel then erases it, see ``lit_gen.nn.layers.ResBlock``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        base_channels: int = 128,
        channel_mults: tuple[int, ...] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (16,),
        dropout: float = 0.0,
        image_size: int = 32,
        num_classes: int | None = None,
        groups: int = 32,
        attention_heads: int = 1,
        conditioning: Conditioning = "scale_shift",
    ) -> None:
        super().__init__()
        channel_mults = tuple(channel_mults)
        attention_resolutions = tuple(attention_resolutions)
        self._validate(in_channels, base_channels, channel_mults, num_res_blocks, dropout, image_size, groups)
        resolutions = [image_size // 2**i for i in range(len(channel_mults))]
        unknown = sorted(set(attention_resolutions) - set(resolutions))
        if unknown:
            raise ValueError(
                f"attention_resolutions {unknown} are not reached by this U-Net; with image_size={image_size} "
                f"and channel_mults={channel_mults} the resolutions are {resolutions}"
            )
        attended = {base_channels * m for m, r in zip(channel_mults, resolutions) if r in attention_resolutions}
        attended.add(base_channels * channel_mults[-1])  # the middle block always attends
        uneven = sorted(w for w in attended if w % attention_heads)
        if uneven:
            raise ValueError(f"attention_heads={attention_heads} does not divide the attended widths {uneven}; "
                             f"use a divisor of {math.gcd(*attended)}")
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.image_size = image_size
        self.num_classes = num_classes
        self.downsample_factor = 2 ** (len(channel_mults) - 1)

        emb_dim = 4 * base_channels
        self.time_embed = TimestepEmbedding(base_channels, emb_dim)
        self.class_embed = ClassEmbedding(num_classes, emb_dim) if num_classes is not None else None
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        def res_block(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(c_in, c_out, emb_dim=emb_dim, conditioning=conditioning, dropout=dropout, max_groups=groups,
                            zero_last=True)

        def block(c_in: int, c_out: int, res: int) -> list[nn.Module]:
            layers: list[nn.Module] = [res_block(c_in, c_out)]
            if res in attention_resolutions:
                layers.append(SelfAttention(c_out, groups, attention_heads))
            return layers

        # Downward path: every entry's output is kept as a skip connection for the upward path.
        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        ch = base_channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(EmbedSequential(*block(ch, base_channels * mult, resolutions[level])))
                ch = base_channels * mult
                skip_channels.append(ch)
            if level < len(channel_mults) - 1:
                self.down.append(EmbedSequential(Downsample(ch)))
                skip_channels.append(ch)

        self.mid = EmbedSequential(res_block(ch, ch), SelfAttention(ch, groups, attention_heads), res_block(ch, ch))

        # Upward path: each entry consumes one skip connection, so each level has one extra block.
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for i in range(num_res_blocks + 1):
                layers = block(ch + skip_channels.pop(), base_channels * mult, resolutions[level])
                ch = base_channels * mult
                if level > 0 and i == num_res_blocks:
                    layers.append(Upsample(ch))
                self.up.append(EmbedSequential(*layers))
        assert not skip_channels, "every skip connection must be consumed"

        self.out = nn.Sequential(
            group_norm(ch, groups), nn.SiLU(), zero_init(nn.Conv2d(ch, self.out_channels, 3, padding=1))
        )

    @staticmethod
    def _validate(in_channels, base_channels, channel_mults, num_res_blocks, dropout, image_size, groups) -> None:
        # Single values are checked by the config (the rules beside the diffusion family's arguments); only their combinations here.
        assert in_channels >= 1 and base_channels >= 1 and num_res_blocks >= 1 and groups >= 1 and 0.0 <= dropout < 1.0
        if not channel_mults:
            raise ValueError("channel_mults must name at least one level, got an empty list")
        factor = 2 ** (len(channel_mults) - 1)
        if image_size < 1 or image_size % factor:
            working = ", ".join(str(factor * k) for k in range(1, 5))
            raise ValueError(
                f"image_size {image_size} is not divisible by {factor} = 2 ** (len(channel_mults) - 1) for "
                f"channel_mults={tuple(channel_mults)}; use a multiple of {factor} ({working}, ...) or fewer channel_mults"
            )

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """Predict from x_t (B, C, H, W), timesteps t (B,) and, for a conditional net, labels (B,) int64.

        A conditional net given ``labels=None`` treats the batch as unconditional (the null label).
        """
        if x.shape[-1] % self.downsample_factor or x.shape[-2] % self.downsample_factor:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not divisible by {self.downsample_factor}")
        emb = self.time_embed(t)
        if self.class_embed is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), self.class_embed.null_index, dtype=torch.long, device=x.device)
            emb = emb + self.class_embed(labels)
        elif labels is not None:
            raise ValueError("this U-Net is unconditional (num_classes=None) but labels were given")

        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
