"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning").

A convolutional encoder maps an image to a grid of vectors, each snapped to its nearest code in a
learned codebook; the decoder rebuilds the image from the codes. The loss is the paper's

    loss = ||x - D(z_q)||^2 + ||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2

(reconstruction, codebook, commitment; see ``lit_gen.nn.quantizer``). A VQ-VAE alone is not a
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
from lit_gen.nn.quantizer import Quantized, VectorQuantizer
from lit_gen.rules import NonNegativeFloat, NonNegativeInt, PositiveInt, Range
from lit_gen.signatures import Renamed, forward

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
        num_codes (int, default 512): codebook size K.
        code_dim (int, default 64): dimension of each code.
        beta (float, default 0.25): weight of the commitment term (the paper's beta).
        codebook_ema_decay (float | None, default None): EMA codebook updates with this decay (e.g. 0.99)
            instead of the codebook loss; None learns codes by gradient.
        dead_code_steps (int, default 100): training steps without use after which a code is dead.
        restart_dead_codes (bool, default False): replace dead codes with random encoder outputs.
        lr (float, default 2e-4), weight_decay, betas, warmup_steps, lr_schedule: see ``GenerativeModule``.

    Logged: ``train/loss``, ``train/recon`` (MSE per pixel), ``train/codebook``, ``train/commitment``,
    ``train/perplexity`` (per batch); once per epoch ``train/code_perplexity``, ``train/codes_used``
    (fraction of the codebook used in the epoch) and ``train/dead_codes``.
    """

    #: Arguments renamed since release; a config using the old name fails naming the new one, and
    #: checkpoints saved with it still load (``lit_gen.signatures.upgrade_arguments``). ``ema_decay``
    #: names only the diffusion family's weight EMA now.
    RENAMED_ARGUMENTS: ClassVar[dict[str, Renamed]] = {
        "ema_decay": Renamed("codebook_ema_decay", "the codebook EMA; ema_decay is the weight EMA of the diffusion family only"),
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
        num_codes: Annotated[int, Range(ge=2)] = 512,
        code_dim: PositiveInt = 64,
        beta: NonNegativeFloat = 0.25,
        codebook_ema_decay: Annotated[float, Range(gt=0, lt=1)] | None = None,
        dead_code_steps: PositiveInt = 100,
        restart_dead_codes: bool = False,
        **optimizer,
    ) -> None:
        super().__init__(**forward(VQVAE, optimizer))
        if image_size % (2 ** num_downsamples) != 0:
            raise ConfigError(
                f"model.image_size {image_size} is not divisible by 2 ** num_downsamples = {2 ** num_downsamples}; "
                f"lower num_downsamples or set data.image_size to a multiple of {2 ** num_downsamples}"
            )
        self.save_hyperparameters()
        self.channels = channels
        self.image_size = image_size
        self.num_codes = num_codes
        side = image_size // 2 ** num_downsamples
        #: (h, w) of the code grid; a prior models h * w codes in raster order.
        self.code_shape = (side, side)

        widths = (hidden_channels,) * (num_downsamples + 1)  # one width at every level
        self.encoder = ConvEncoder(channels, widths, hidden_channels, num_res_blocks)
        self.pre_quant = nn.Conv2d(hidden_channels, code_dim, 1)
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta=beta, codebook_ema_decay=codebook_ema_decay,
                                         dead_code_steps=dead_code_steps, restart_dead_codes=restart_dead_codes)
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
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d).float()
        return self.quantizer.nearest_codes(flat).view(b, h, w)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Code indices (B, h, w) int64 -> images in [-1, 1]."""
        z_q = self.quantizer.codes_to_latent(indices)
        return self.decoder(self.post_quant(z_q)).clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ loss
    def loss(self, batch) -> LossOutput:
        x, _ = batch
        x_hat, q = self(x)
        recon = F.mse_loss(x_hat, x)
        total = recon + q.codebook + q.commitment
        return LossOutput(total, {"recon": recon, "codebook": q.codebook, "commitment": q.commitment,
                                  "perplexity": q.perplexity})

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
