"""Autoencoders: compress an image to a small code and reconstruct it, trained on MSE.

The default is the classic MNIST lesson: an MLP 784 -> 128 -> 64 -> 12 -> 3 and its mirror with a
sigmoid output. ``architecture="conv"`` gives a convolutional variant with a spatial latent (the
form latent diffusion uses). The denoising variant corrupts the input and reconstructs the clean
image.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gen.errors import ConfigError
from lit_gen.models.base import GenerativeModule, LossOutput, to_model_range
from lit_gen.nn.codec import ConvDecoder, ConvEncoder, check_downsampling
from lit_gen.nn.mlp import mlp
from lit_gen.nn.draws import randn
from lit_gen.rules import NonNegativeFloat, PositiveInt
from lit_gen.signatures import forward

log = logging.getLogger(__name__)


def build_codec(
    architecture: str,
    channels: int,
    image_size: int,
    hidden_dims: tuple[int, ...],
    conv_channels: tuple[int, ...],
    latent_dim: int,
    encoder_out_factor: int = 1,
    num_res_blocks: int = 1,
) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
    """An (encoder, decoder, latent_shape) triple; the encoder emits ``encoder_out_factor * latent`` values.

    The decoder returns logits: the model picks the output non-linearity (sigmoid, Bernoulli...).
    """
    assert latent_dim >= 1, latent_dim
    if architecture == "mlp":
        pixels = channels * image_size * image_size
        encoder = nn.Sequential(nn.Flatten(), mlp([pixels, *hidden_dims, latent_dim * encoder_out_factor]))
        decoder = nn.Sequential(mlp([latent_dim, *reversed(hidden_dims), pixels]),
                                nn.Unflatten(1, (channels, image_size, image_size)))
        return encoder, decoder, (latent_dim,)
    if not conv_channels:
        raise ConfigError("model.conv_channels: architecture 'conv' needs at least one width")
    try:
        check_downsampling(image_size, len(conv_channels))
    except ValueError as exc:
        raise ConfigError(f"model.conv_channels={list(conv_channels)}: {exc} (one halving per entry)") from None
    side = image_size // 2 ** len(conv_channels)
    # Full resolution keeps the first width; each entry is the width after one halving.
    widths = (conv_channels[0], *conv_channels)
    encoder = ConvEncoder(channels, widths, latent_dim * encoder_out_factor, num_res_blocks)
    decoder = ConvDecoder(latent_dim, widths, channels, num_res_blocks)
    return encoder, decoder, (latent_dim, side, side)


class CodecModule(GenerativeModule):
    """The encoder and decoder of the autoencoder families (AE, DAE, VAE), their arguments declared once.

    Args:
        channels (int): image channels (filled from the dataset by the config).
        image_size (int): image side length (filled from the dataset by the config).
        architecture ("mlp" | "conv", default "mlp"): fully connected or convolutional codec.
        hidden_dims (tuple[int, ...], default (128, 64, 12)): MLP widths between the pixels and the code.
        latent_dim (int, default 3): size of the code (MLP) or its channels (conv, a spatial latent).
        conv_channels (tuple[int, ...], default (32, 64)): conv widths, one stride-2 halving each
            (the codec of ``lit_gen.nn.codec``, shared with the VQ families).
        num_res_blocks (int, default 1): residual blocks per resolution level of the conv codec.
        lr (float, default 1e-3), weight_decay, betas, warmup_steps, lr_schedule: see ``GenerativeModule``.

    A family takes ``**codec`` and passes it on with ``forward``, its own defaults in
    ``ARGUMENT_DEFAULTS``; ``ENCODER_OUTPUTS`` values per code element leave the encoder (2 for a
    VAE's mean and log-variance).
    """

    ARGUMENT_DEFAULTS: ClassVar[dict] = {"lr": 1e-3}
    ENCODER_OUTPUTS: ClassVar[int] = 1

    def __init__(
        self,
        channels: PositiveInt = 1,
        image_size: PositiveInt = 28,
        architecture: Literal["mlp", "conv"] = "mlp",
        hidden_dims: tuple[PositiveInt, ...] = (128, 64, 12),
        latent_dim: PositiveInt = 3,
        conv_channels: tuple[PositiveInt, ...] = (32, 64),
        num_res_blocks: PositiveInt = 1,
        **optimizer,
    ) -> None:
        super().__init__(**forward(CodecModule, optimizer))
        self.encoder, self.decoder, self.latent_shape = build_codec(
            architecture, channels, image_size, tuple(hidden_dims), tuple(conv_channels), latent_dim,
            encoder_out_factor=self.ENCODER_OUTPUTS, num_res_blocks=num_res_blocks,
        )


class Autoencoder(CodecModule):
    """Deterministic autoencoder trained on pixel MSE.

    Args:
        channels, image_size, architecture, hidden_dims, latent_dim, conv_channels, num_res_blocks, and the
            optimizer's:
            the codec's, as in ``CodecModule`` (the defaults are this family's: an MLP
            784 -> 128 -> 64 -> 12 -> 3 on MNIST, lr 1e-3).

    ``sample()`` decodes codes drawn from a Gaussian fitted to the training codes (running mean and
    standard deviation): a plain autoencoder has no prior, so these samples are often poor; the VAE
    is the family that fixes this.
    """

    def __init__(self, **codec) -> None:
        super().__init__(**forward(Autoencoder, codec))
        self.save_hyperparameters()
        # Running statistics of the codes, the only "prior" a plain autoencoder has.
        self.register_buffer("code_mean", torch.zeros(self.latent_shape))
        self.register_buffer("code_std", torch.ones(self.latent_shape))

    #: What ``encode`` returns, for records (``lit_gen.models.capabilities.Autoencoding``).
    encoded_as = "the encoder's output"
    #: Why ``evaluate --bpd`` and ``compare`` show no bits/dim for it.
    no_likelihood = "an autoencoder defines no likelihood"

    def encode(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] -> codes of shape (B, *latent_shape)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """Codes -> images in [-1, 1]."""
        return to_model_range(torch.sigmoid(self.decoder(z)))

    def corrupt(self, x01: Tensor) -> Tensor:
        """The encoder's input for a clean image in [0, 1] (identity here; noise in the denoising variant)."""
        return x01

    def loss(self, batch) -> LossOutput:
        x, _ = batch
        target = (x + 1.0) / 2.0  # the sigmoid output lives in [0, 1]
        code = self.encoder(to_model_range(self.corrupt(target)))
        reconstruction = torch.sigmoid(self.decoder(code))
        mse = F.mse_loss(reconstruction, target)
        if self.training:
            self._track_codes(code.detach())
        return LossOutput(mse, {"mse": mse})

    @torch.no_grad()
    def _track_codes(self, code: Tensor, momentum: float = 0.01) -> None:
        self.code_mean.lerp_(code.mean(0), momentum)
        spread = code.std(0) if code.shape[0] > 1 else self.code_std
        self.code_std.lerp_(spread, momentum)

    @torch.no_grad()
    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None, **options) -> Tensor:
        if labels is not None:
            raise ValueError(f"{type(self).__name__} is unconditional: call sample() without labels")
        if options:
            raise ValueError(f"{type(self).__name__}.sample() takes no options, got {sorted(options)}")
        noise = randn((n, *self.latent_shape), generator=generator, device=self.device)
        z = self.code_mean + self.code_std * noise
        return (self.decode(z) + 1.0) / 2.0


class DenoisingAutoencoder(Autoencoder):
    """Autoencoder that reconstructs the clean image from a corrupted input.

    Args:
        noise ("gaussian" | "mask", default "gaussian"): add N(0, noise_level^2) to each pixel, or
            zero each pixel with probability ``noise_level``.
        noise_level (float, default 0.3): standard deviation (gaussian) or drop probability (mask),
            on the [0, 1] pixel scale.
        Other arguments: those of ``Autoencoder`` (passed on to it).
    """

    def __init__(
        self,
        noise: Literal["gaussian", "mask"] = "gaussian",
        noise_level: NonNegativeFloat = 0.3,
        **autoencoder,
    ) -> None:
        if noise == "mask" and noise_level >= 1:
            raise ConfigError(f"model.noise_level must be < 1 for mask noise (a drop probability), got {noise_level}")
        super().__init__(**forward(DenoisingAutoencoder, autoencoder))
        self.save_hyperparameters()
        self.noise = noise
        self.noise_level = noise_level

    def corrupt(self, x01: Tensor) -> Tensor:
        # Drawn from the global RNG, which the training loop reseeds every step (exact resume).
        if self.noise == "gaussian":
            return x01 + self.noise_level * torch.randn_like(x01)
        keep = torch.rand_like(x01) >= self.noise_level
        return x01 * keep
