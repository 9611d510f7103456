"""PatchGAN discriminator (Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks").

A fully convolutional classifier whose output is a map of logits, one per overlapping image patch,
so it judges local texture and leaves global structure to the reconstruction losses.
"""

from __future__ import annotations

from torch import Tensor, nn

from lit_gen.nn.codec import norm


def patch_output_size(image_size: int, num_layers: int) -> int:
    """Side of the logit map for a square input: ``num_layers`` halvings, then two 4x4 stride-1 convs."""
    size = image_size
    for _ in range(num_layers):
        size = (size + 2 - 4) // 2 + 1
    for _ in range(2):
        size = size + 2 - 4 + 1
    return size


class PatchDiscriminator(nn.Module):
    """Logit map (B, 1, h, w) of "real" for each patch of images (B, C, H, W) in [-1, 1].

    Layout as in pix2pix: a 4x4 stride-2 conv + LeakyReLU(0.2), ``num_layers - 1`` more stride-2
    convs with doubling width (capped at 8x), one stride-1 conv, then a 1-channel stride-1 conv.
    GroupNorm replaces pix2pix's BatchNorm: real and fake batches then never share statistics, and
    DDP needs no synchronized norm.

    Args:
        in_channels (int): image channels.
        hidden_channels (int, default 64): width of the first layer.
        num_layers (int, default 3): number of stride-2 layers; the receptive field grows with it and
            the input must be large enough to leave a logit map (``patch_output_size`` >= 1).
    """

    def __init__(self, in_channels: int, hidden_channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        assert num_layers >= 1, num_layers  # model.disc_layers, checked by the config
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, hidden_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        ]
        width = hidden_channels
        for i in range(1, num_layers + 1):
            stride = 2 if i < num_layers else 1
            new_width = hidden_channels * min(2 ** i, 8)
            layers += [
                nn.Conv2d(width, new_width, 4, stride=stride, padding=1, bias=False),
                norm(new_width), nn.LeakyReLU(0.2),
            ]
            width = new_width
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _init_weights(module: nn.Module) -> None:
    # pix2pix's N(0, 0.02) init keeps early logits small, so the hinge loss starts unsaturated.
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.GroupNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
