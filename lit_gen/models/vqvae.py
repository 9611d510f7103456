"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning").

A convolutional encoder maps an image to a grid of vectors, each replaced by a code of the quantizer
(``model.quantizer``: the paper's learned codebook ``vq``, optionally with the rotation trick; finite scalar
quantization ``fsq``; lookup-free quantization ``lfq``; see ``lit_gen.nn.quantizers``); the decoder rebuilds
the image from the codes. The loss is the reconstruction plus the quantizer's terms; with ``vq`` the paper's

    loss = ||x - D(z_q)||^2 + ||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2

(reconstruction, codebook, commitment). A VQ-VAE alone is not a
sampler: real samples come from an autoregressive prior over its codes
(``lit_gen.models.prior.CodePrior``, config ``configs/prior_vqvae_digits.yaml``). ``sample()``
here decodes uniformly drawn codes, the baseline a prior must beat.
"""

from __future__ import annotations

import logging
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gen.errors import ConfigError
from lit_gen.models.base import GenerativeModule, LossOutput, to_unit_range
from lit_gen.nn import draws
from lit_gen.nn.codec import ConvDecoder, ConvEncoder
from lit_gen.nn.quantizers import Quantized, Quantizer
from lit_gen.rules import Component, NonNegativeInt, PositiveInt
from lit_gen.signatures import Moved, build_component, forward

log = logging.getLogger(__name__)


class VQVAE(GenerativeModule):
    """Vector-quantized autoencoder: encoder -> 1x1 pre-quant conv -> quantizer -> decoder.

    Args:
        channels (int, default 1): image channels (filled from the dataset by the config).
        image_size (int, default 28): image side; must be divisible by ``2 ** num_downsamples``
            (filled from the dataset by the config).
        hidden_channels (int, default 64): width of the encoder and decoder.
        num_res_blocks (int, default 2): residual blocks per resolution level.
        num_downsamples (int, default 2): halvings from the image to the code grid
            (code grid side = image_size / 2 ** num_downsamples).
        quantizer (str | dict, default "vq"): the quantizer and its settings, ``{name: vq | fsq | lfq, ...}``
            (``lit_gen.nn.quantizers``): ``vq`` takes ``num_codes`` (512), ``code_dim`` (64), ``beta``,
            ``codebook_ema_decay``, ``dead_code_steps``, ``restart_dead_codes``, ``rotation_trick``; ``fsq``
            takes ``levels`` (or ``num_codes`` for the paper's recommended levels); ``lfq`` takes ``num_codes``
            (a power of two) and its loss weights. A section naming the default quantizer merges into it.
        lr (float, default 2e-4), weight_decay, betas, warmup_steps, lr_schedule: see ``GenerativeModule``.

    Logged: ``train/loss``, ``train/recon`` (MSE per pixel), each of the quantizer's loss terms
    (``train/codebook`` and ``train/commitment`` for vq, ``train/entropy`` and ``train/commitment`` for lfq,
    none for fsq), ``train/perplexity`` (per batch); once per epoch, the same for every quantizer,
    ``train/code_perplexity``, ``train/codes_used`` (fraction of the codebook used in the epoch) and
    ``train/dead_codes``.
    """

    #: Settings of the learned codebook that were the family's own before the quantizer had a section
    #: (``ema_decay`` is what ``codebook_ema_decay`` was called first).
    MOVED_ARGUMENTS: ClassVar[dict[str, Moved]] = {
        **{name: Moved("quantizer", name, "vq") for name in
           ("num_codes", "code_dim", "beta", "codebook_ema_decay", "dead_code_steps", "restart_dead_codes")},
        "ema_decay": Moved("quantizer", "codebook_ema_decay", "vq"),
    }

    #: This family's defaults for the optimizer arguments it forwards to ``GenerativeModule``.
    ARGUMENT_DEFAULTS: ClassVar[dict] = {"lr": 2e-4}

    def __init__(
        self,
        channels: PositiveInt = 1,
        image_size: PositiveInt = 28,
        hidden_channels: PositiveInt = 64,
        num_res_blocks: NonNegativeInt = 2,
        num_downsamples: NonNegativeInt = 2,
        quantizer: Annotated[str | dict, Component("quantizer")] = "vq",
        **optimizer,
    ) -> None:
        super().__init__(**forward(VQVAE, optimizer))
        if image_size % (2 ** num_downsamples) != 0:
            raise ConfigError(
                f"model.image_size {image_size} is not divisible by 2 ** num_downsamples = {2 ** num_downsamples}; "
                f"lower num_downsamples or set data.image_size to a multiple of {2 ** num_downsamples}"
            )
        self.save_hyperparameters()  # the quantizer section complete, merged into the family's default
        self.channels = channels
        self.image_size = image_size
        side = image_size // 2 ** num_downsamples
        #: (h, w) of the code grid; a prior models h * w codes in raster order.
        self.code_shape = (side, side)

        try:
            self.quantizer: Quantizer = build_component("quantizer", self.hparams["quantizer"])
        except ValueError as exc:
            raise ConfigError(f"model.quantizer: {exc}") from None
        self.num_codes = self.quantizer.num_codes
        code_dim = self.quantizer.code_dim
        widths = (hidden_channels,) * (num_downsamples + 1)  # one width at every level
        self.encoder = ConvEncoder(channels, widths, hidden_channels, num_res_blocks)
        self.pre_quant = nn.Conv2d(hidden_channels, code_dim, 1)
        self.post_quant = nn.Conv2d(code_dim, hidden_channels, 1)
        self.decoder = ConvDecoder(hidden_channels, widths, channels, num_res_blocks)
        self._warned_no_prior = False

    # ------------------------------------------------------------------ the autoencoder
    def forward(self, x: Tensor) -> tuple[Tensor, Quantized]:
        """Reconstruction (unbounded, same shape as ``x``) and the quantizer's output."""
        q = self.quantizer(self.encode(x))
        return self.decoder(self.post_quant(q.z_q)), q

    #: What ``encode`` returns, for records (``lit_gen.models.capabilities.Autoencoding``).
    encoded_as = "the encoder's output"
    #: Why ``evaluate --bpd`` and ``compare`` show no bits/dim for it.
    no_likelihood = "a VQ first stage defines no likelihood (train a prior over its codes)"

    def encode(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] -> continuous pre-quantization latent z_e (B, code_dim, h, w).

        ``decode`` quantizes, so ``decode(encode(x))`` is the reconstruction, and interpolating
        between two latents passes through codes. Use ``encode_indices`` for the discrete codes.
        """
        return self.pre_quant(self.encoder(x))

    def decode(self, z: Tensor) -> Tensor:
        """A latent (B, code_dim, h, w) -> images in [-1, 1], after snapping it to the nearest codes."""
        return self.decode_indices(self.latent_to_indices(z))

    def encode_indices(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] -> code indices (B, h, w) int64."""
        return self.latent_to_indices(self.encode(x))

    def latent_to_indices(self, z: Tensor) -> Tensor:
        """Nearest code of each position of a latent (B, code_dim, h, w) -> (B, h, w) int64 (no state updates)."""
        return self.quantizer.indices_of(z)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Code indices (B, h, w) int64 -> images in [-1, 1]."""
        z_q = self.quantizer.codes_to_latent(indices)
        return self.decoder(self.post_quant(z_q)).clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ loss
    def loss(self, batch) -> LossOutput:
        x, _ = batch
        x_hat, q = self(x)
        recon = F.mse_loss(x_hat, x)
        return LossOutput(recon + q.loss, {"recon": recon, **q.losses, "perplexity": q.perplexity})

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.quantizer.reset_usage()

    def log_family_epoch_metrics(self) -> None:
        # Counts are all-reduced inside the quantizer, so every rank logs the same numbers.
        usage = self.quantizer.code_usage()
        self.log("train/code_perplexity", usage.perplexity, sync_dist=True)
        self.log("train/codes_used", usage.used_fraction, sync_dist=True)
        self.log("train/dead_codes", float(usage.dead_codes), sync_dist=True)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None, **options) -> Tensor:
        """Decode ``n`` grids of uniformly drawn codes -> images in [0, 1] (a baseline, not real samples).

        A VQ-VAE has no prior over its codes; train ``CodePrior`` on this checkpoint
        (``configs/prior_vqvae_digits.yaml``, or ``prior_vqgan_celeba.yaml`` for a VQ-GAN) for samples.
        """
        if labels is not None:
            raise ValueError(f"{type(self).__name__} is unconditional: call sample() without labels")
        if options:
            raise ValueError(f"{type(self).__name__}.sample() takes no options, got {sorted(options)}")
        if not self._warned_no_prior:
            log.warning(
                "%s.sample() decodes uniformly random codes (a baseline, not real samples); train a prior "
                "over its codes for real samples: model.name=prior with model.first_stage=<this checkpoint> "
                "(configs/prior_vqvae_digits.yaml, configs/prior_vqgan_celeba.yaml)", type(self).__name__)
            self._warned_no_prior = True
        indices = draws.randint(self.num_codes, (n, *self.code_shape), generator=generator, device=self.device)
        return to_unit_range(self.decode_indices(indices))
