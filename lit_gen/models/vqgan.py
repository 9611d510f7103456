"""VQ-GAN (Esser et al. 2021, "Taming Transformers for High-Resolution Image Synthesis").

A VQ-VAE whose decoder is also trained by a PatchGAN discriminator and, optionally, an LPIPS
perceptual loss, so reconstructions stay sharp at a coarse code grid. Each training step has two
explicit phases with their own optimizer and gradient clipping (Lightning manual optimization):

1. generator (encoder, codebook, decoder):
       L_G = rec + w_p * LPIPS + lambda * g_adv + codebook + commitment,   g_adv = -mean D(x_hat)
   with the adaptive weight (paper eq. 7), measured at the decoder's last layer L:
       lambda = disc_weight * clamp(||grad_L(rec + w_p * LPIPS)|| / (||grad_L g_adv|| + 1e-4), 0, max_disc_lambda)
2. discriminator, hinge loss:  d_loss = (mean relu(1 - D(x)) + mean relu(1 + D(x_hat))) / 2.

The discriminator phase (and the adversarial term) starts at ``disc_start``.

Step counting: Lightning's ``trainer.global_step`` counts *optimizer* steps under manual
optimization. Before ``disc_start`` only the generator steps, so global_step equals the number of
training batches and the discriminator switches on after exactly ``disc_start`` batches; from then
on each batch adds 2. ``trainer.max_steps = M`` therefore means ``disc_start + (M - disc_start) / 2``
batches (the cosine schedule accounts for it). ``trainer.gradient_clip_val`` must stay unset (Lightning
refuses it under manual optimization): clip with ``grad_clip`` and ``disc_grad_clip`` instead.
Under DDP the two phases leave each other's parameters without gradients, so use the strategy
``ddp_find_unused_parameters_true``. Each phase's step is guarded against non-finite losses and
gradients by the one mechanism of every family (``lit_gen.training.step_guard``, see ``VQGAN._step``).
"""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_gen.errors import ConfigError
from lit_gen.models.base import LossOutput, detached_terms
from lit_gen.models.vqvae import VQVAE
from lit_gen.nn.discriminator import PatchDiscriminator, patch_output_size
from lit_gen.nn.perceptual import MIN_IMAGE_SIZE, PerceptualLoss
from lit_gen.rules import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from lit_gen.signatures import forward

log = logging.getLogger(__name__)


def adaptive_weight(rec_loss: Tensor, adv_loss: Tensor, last_layer_weight: Tensor, max_weight: float = 1e4) -> Tensor:
    """``||grad rec_loss|| / (||grad adv_loss|| + 1e-4)`` at ``last_layer_weight``, clamped to [0, max_weight], detached.

    It balances the two gradients where they meet the image: the adversarial term gets as much
    pull on the decoder's output layer as the reconstruction term has.
    """
    rec_grad, = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)
    adv_grad, = torch.autograd.grad(adv_loss, last_layer_weight, retain_graph=True)
    return (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator hinge loss: push real logits above +1 and fake logits below -1."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


class VQGAN(VQVAE):
    """VQ-VAE trained with perceptual and adversarial losses; two optimizers, manual optimization.

    Args:
        channels, image_size, hidden_channels, num_res_blocks, num_downsamples, quantizer: the autoencoder,
            passed on to ``VQVAE`` (defaults here: 3 channels, 64 px, width 128, 3 halvings to an 8x8 grid, a
            learned codebook of 1024 codes).
        recon_loss ("l1" | "l2", default "l1"): pixel reconstruction loss (mean per pixel).
        perceptual_weight (float, default 1.0): weight w_p of the LPIPS term; 0 never builds LPIPS
            (no backbone weights needed). LPIPS is built when training starts, not when a
            checkpoint is loaded for sampling, and is not stored in checkpoints.
        perceptual_net ("vgg" | "alex", default "vgg"): LPIPS backbone.
        perceptual_weights_path (str | None, default None): the torchvision backbone checkpoint
            (``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``); None looks in
            ``$TORCH_HOME/hub/checkpoints/``. A missing file stops training at once with a ConfigError.
        disc_start (int, default 10000): global step (= training batch, see the module notes) from
            which the discriminator trains and the adversarial term is on.
        disc_weight (float, default 0.8): factor on the adaptive weight lambda.
        max_disc_lambda (float, default 1e4): upper clamp of the adaptive ratio.
        disc_layers (int, default 3): stride-2 layers of the PatchGAN (receptive field grows with it).
        disc_channels (int, default 64): width of the PatchGAN's first layer.
        disc_lr (float | None, default None): discriminator learning rate; None uses ``lr``.
        grad_clip (float | None, default 1.0): max gradient norm of the generator step; None: no clip.
        disc_grad_clip (float | None, default 1.0): max gradient norm of the discriminator step.
        lr (float, default 1e-4), weight_decay, betas (default (0.5, 0.9)), warmup_steps, lr_schedule:
            the generator optimizer, as in ``GenerativeModule``; the discriminator uses the same
            betas and weight decay at a constant ``disc_lr``.

    Logged per step: ``train/loss`` (L_G), ``recon``, ``perceptual``, ``g_adv``, ``disc_lambda``,
    the quantizer's loss terms (as ``VQVAE``), ``perplexity``, and once the discriminator is on ``d_loss``,
    ``logits_real``, ``logits_fake``; per epoch the code usage of ``VQVAE``. Non-finite losses
    skip their optimizer step (on every DDP rank) with a warning instead of corrupting the weights.
    """

    #: VQGAN's defaults for the arguments it passes on to ``VQVAE`` (and its optimizer's).
    ARGUMENT_DEFAULTS: ClassVar[dict] = {"channels": 3, "image_size": 64, "hidden_channels": 128, "num_downsamples": 3,
                                         "quantizer": {"name": "vq", "num_codes": 1024}, "lr": 1e-4, "betas": (0.5, 0.9)}

    def __init__(
        self,
        recon_loss: Literal["l1", "l2"] = "l1",
        perceptual_weight: NonNegativeFloat = 1.0,
        perceptual_net: Literal["vgg", "alex"] = "vgg",
        perceptual_weights_path: str | None = None,
        disc_start: NonNegativeInt = 10000,
        disc_weight: NonNegativeFloat = 0.8,
        max_disc_lambda: PositiveFloat = 1e4,
        disc_layers: PositiveInt = 3,
        disc_channels: PositiveInt = 64,
        disc_lr: PositiveFloat | None = None,
        grad_clip: PositiveFloat | None = 1.0,
        disc_grad_clip: PositiveFloat | None = 1.0,
        **vqvae,
    ) -> None:
        super().__init__(**forward(VQGAN, vqvae))
        image_size, channels = self.image_size, self.channels
        if perceptual_weight > 0 and image_size < MIN_IMAGE_SIZE[perceptual_net]:
            raise ConfigError(
                f"LPIPS-{perceptual_net} needs images of at least {MIN_IMAGE_SIZE[perceptual_net]} px, "
                f"got image_size {image_size}; set model.perceptual_weight=0 or a larger data.image_size"
            )
        if disc_layers < 1 or patch_output_size(image_size, disc_layers) < 1:
            raise ConfigError(
                f"model.disc_layers={disc_layers} leaves no logit map for {image_size} px images; "
                f"use fewer layers (at most {max((n for n in range(1, 8) if patch_output_size(image_size, n) >= 1), default=0)})"
            )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.recon_loss = recon_loss
        self.perceptual_weight = perceptual_weight
        self.perceptual_net = perceptual_net
        self.perceptual_weights_path = perceptual_weights_path
        self.disc_start = disc_start
        self.disc_weight = disc_weight
        self.max_disc_lambda = max_disc_lambda
        self.disc_lr = disc_lr if disc_lr is not None else self.lr
        self.grad_clip = grad_clip
        self.disc_grad_clip = disc_grad_clip
        self.discriminator = PatchDiscriminator(channels, disc_channels, disc_layers)
        # Kept out of the module tree (plain __dict__ entry): never in checkpoints, built on demand.
        self.__dict__["_perceptual"] = None

    # ------------------------------------------------------------------ loss terms
    def perceptual(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """Mean LPIPS distance between reconstructions and targets (builds LPIPS on first use)."""
        self._build_perceptual()
        return self._perceptual.to(x.device)(x_hat, x).mean()

    def on_fit_start(self) -> None:
        if self.perceptual_weight > 0:
            self._build_perceptual()  # missing LPIPS weights stop the run before its first step

    def _build_perceptual(self) -> None:
        if self._perceptual is not None:
            return
        try:
            self.__dict__["_perceptual"] = PerceptualLoss(self.perceptual_net, self.perceptual_weights_path)
        except ConfigError as exc:
            raise ConfigError(f"{exc} In the config: model.perceptual_weights_path=<file>, or "
                              f"model.perceptual_weight=0 to train without the perceptual loss.") from None

    @property
    def discriminator_active(self) -> bool:
        """Whether this step trains the discriminator and uses the adversarial term."""
        return self.global_step >= self.disc_start

    def generator_loss(self, x: Tensor, disc_active: bool) -> tuple[LossOutput, Tensor]:
        """L_G of the generator phase and the (unbounded) reconstruction it was computed from."""
        x_hat, q = self(x)
        recon = F.l1_loss(x_hat, x) if self.recon_loss == "l1" else F.mse_loss(x_hat, x)
        perceptual = self.perceptual(x_hat, x) if self.perceptual_weight > 0 else recon.new_zeros(())
        rec_total = recon + self.perceptual_weight * perceptual
        if disc_active:
            g_adv = -self.discriminator(x_hat).mean()
            disc_lambda = self.disc_weight * adaptive_weight(
                rec_total, g_adv, self.decoder.last_layer.weight, self.max_disc_lambda)
        else:
            g_adv = disc_lambda = recon.new_zeros(())
        total = rec_total + disc_lambda * g_adv + q.loss
        terms = {"recon": recon, "perceptual": perceptual, "g_adv": g_adv, "disc_lambda": disc_lambda,
                 **q.losses, "perplexity": q.perplexity}
        return LossOutput(total, terms), x_hat

    def loss(self, batch) -> LossOutput:
        """The generator objective without the adversarial term (what validation reports)."""
        return self.generator_loss(batch[0], disc_active=False)[0]

    # ------------------------------------------------------------------ the two-phase step
    def training_step(self, batch, batch_idx):
        batch = self.augmented(batch)
        x = batch[0]
        opt_g, opt_d = self.optimizers()
        disc_active = self.discriminator_active

        # Phase 1: generator. Toggling freezes the discriminator, so g_adv trains only the generator.
        self.toggle_optimizer(opt_g)
        out, x_hat = self.generator_loss(x, disc_active)
        self.last_loss_terms = detached_terms(out)
        self._step(opt_g, out.total, "generator")
        self.untoggle_optimizer(opt_g)
        scheduler = self.lr_schedulers()
        if scheduler is not None and not self.step_skipped:  # the schedule follows the generator's trained steps
            scheduler.step()
        self.log_values("train", self.last_loss_terms, x.shape[0], out.weights)

        # Phase 2: discriminator, on the same reconstructions (detached from the generator).
        if disc_active:
            self.toggle_optimizer(opt_d)
            logits_real = self.discriminator(x.detach())
            logits_fake = self.discriminator(x_hat.detach())
            d_loss = hinge_d_loss(logits_real, logits_fake)
            self._step(opt_d, d_loss, "discriminator")
            self.untoggle_optimizer(opt_d)
            self.log_values("train", {"d_loss": d_loss, "logits_real": logits_real.mean(),
                                      "logits_fake": logits_fake.mean()}, batch_size=x.shape[0])
        return out.total.detach()

    def _step(self, optimizer, loss: Tensor, phase: str) -> None:
        """One phase's optimizer step, guarded like every family's (the model's ``step_guard``).

        The guard checks twice per phase: the loss, before the backward pass
        (``drop_step_if_nonfinite``), and the gradient norm inside ``optimizer.step()`` (the base class's
        ``on_before_optimizer_step``, which also clips with that norm to ``gradient_clip_for``). A
        phase skipped for its loss calls no ``optimizer.step()`` (fp16's gradient scaler fails on a
        step without any gradient), so, as Lightning counts optimizer steps under manual
        optimization, it does not advance ``global_step``; one skipped for its gradients does.
        Either way the weights, AdamW's state and the schedule stay as they were.
        """
        self.step_guard.start_step()
        optimizer.zero_grad(set_to_none=True)
        if self.drop_step_if_nonfinite(optimizer, loss.detach(), final=False):
            log.warning("non-finite %s loss at global step %d: skipping this %s step",
                        phase, self.global_step, phase)
            return
        self.manual_backward(loss)
        optimizer.step()

    def gradient_clip_for(self, optimizer) -> float | None:
        """``grad_clip`` for the generator's optimizer (the first), ``disc_grad_clip`` for the discriminator's."""
        return self.grad_clip if optimizer is self.trainer.optimizers[0] else self.disc_grad_clip

    # ------------------------------------------------------------------ optimizers
    def configure_optimizers(self, total_steps: int | None = None):
        """The generator's and the discriminator's AdamW; the schedule (on the generator) as in the base class."""
        generator_params = [p for name, p in self.named_parameters()
                            if p.requires_grad and not name.startswith("discriminator.")]
        opt_g = torch.optim.AdamW(generator_params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        opt_d = torch.optim.AdamW(self.discriminator.parameters(), lr=self.disc_lr, betas=self.betas,
                                  weight_decay=self.weight_decay)
        # Stepped by hand once per trained generator step (manual optimization steps no scheduler itself).
        scheduler = self.lr_scheduler_for(opt_g, total_steps)
        if scheduler is None:
            return [opt_g, opt_d]
        return [opt_g, opt_d], [scheduler]

    def schedule_length(self) -> int:
        """The schedule counts training batches; ``max_steps`` counts optimizer steps (2 per batch after ``disc_start``)."""
        m, s = self.trainer.max_steps, self.disc_start
        if m and m > 0:
            return m if m <= s else s + (m - s + 1) // 2
        return super().schedule_length()
