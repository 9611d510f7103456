"""Variational autoencoder (Kingma & Welling, 2014).

The encoder gives a Gaussian q(z|x) = N(mu, sigma^2); a code is drawn with the reparameterization
trick z = mu + sigma * eps so gradients flow through the draw. The loss is the negative ELBO with
a weight on the KL term (beta-VAE, Higgins et al. 2017):

    loss = E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I))

Both terms are in nats per image. ``sample()`` decodes draws from the prior N(0, I).
``likelihood_bounds()`` gives the ELBO and the importance-weighted bound of Burda et al. (2016) in
the discretized convention of ``lit_gen.nn.densities`` (bits/dim comparable with other families).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gen.nn.densities import (bits_per_dim, discretized_gaussian_log_likelihood, gaussian_log_density,
                                importance_weighted_bounds)
from lit_gen.models.capabilities import NLL
from lit_gen.models.ae import CodecModule
from lit_gen.models.base import LossOutput, to_model_range
from lit_gen.nn.draws import randn
from lit_gen.rules import NonNegativeFloat, PositiveFloat
from lit_gen.signatures import forward


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over all but the batch dimension, in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


class LikelihoodBounds(NamedTuple):
    """Lower bounds on log P(x) per image, in nats (discretized over 256 levels per pixel).

    ``elbo``: the ELBO estimated with the k draws; ``iw``: the importance-weighted bound with the same
    k draws (equal to ``elbo`` for k = 1, never below it, and tending to log P(x) as k grows).
    """

    elbo: Tensor
    iw: Tensor
    samples: int


class VAE(CodecModule):
    """Variational autoencoder with a Bernoulli or Gaussian likelihood.

    Args:
        channels, image_size, architecture, hidden_dims (default (512, 256)), latent_dim (default 16),
            conv_channels: the codec's, as in ``lit_gen.models.ae.CodecModule``; the encoder emits
            a mean and a log-variance per latent element.
        likelihood ("bernoulli" | "gaussian", default "bernoulli"): p(x|z) on pixels in [0, 1].
            Bernoulli suits near-binary images (MNIST); Gaussian suits natural images.
        gaussian_std (float | None, default None): fixed standard deviation of the Gaussian
            likelihood; None learns one shared log-standard-deviation (a calibrated decoder).
        beta (float, default 1.0): weight of the KL term; 1 gives the true ELBO.
        lr (float, default 1e-3), weight_decay, betas, warmup_steps, lr_schedule: see ``GenerativeModule``.

    Logged terms: ``recon`` (-log p(x|z)) and ``kl``, both in nats per image; ``val/elbo`` is
    ``-(recon + kl)`` whatever beta is, so runs with different betas compare on one scale.
    """

    #: The VAE's defaults for the codec arguments it passes on to ``CodecModule``.
    ARGUMENT_DEFAULTS: ClassVar[dict] = {"hidden_dims": (512, 256), "latent_dim": 16}
    ENCODER_OUTPUTS: ClassVar[int] = 2

    def __init__(
        self,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        gaussian_std: PositiveFloat | None = None,
        beta: NonNegativeFloat = 1.0,
        **codec,
    ) -> None:
        super().__init__(**forward(VAE, codec))
        assert beta >= 0 and (gaussian_std is None or gaussian_std > 0), (beta, gaussian_std)  # the config's rules
        self.save_hyperparameters()
        self.likelihood = likelihood
        self.beta = beta
        self.gaussian_std = gaussian_std
        self.log_std = nn.Parameter(torch.zeros(())) if likelihood == "gaussian" and gaussian_std is None else None

    # ------------------------------------------------------------------ q(z|x) and p(x|z)
    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z|x) for images in [-1, 1]."""
        stats = self.encoder(x)
        # MLP codes are (B, 2L); conv codes are (B, 2L, h, w): split along dimension 1 in both.
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) from the global RNG (reseeded each training step)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def reconstruction_nll(self, logits: Tensor, target01: Tensor) -> Tensor:
        """-log p(x|z) in nats per image, for targets in [0, 1]."""
        if self.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(logits, target01, reduction="none")
        else:
            mean = torch.sigmoid(logits)
            log_std = self.log_std if self.log_std is not None else torch.tensor(math.log(self.gaussian_std), device=logits.device)
            nll = 0.5 * ((target01 - mean) / log_std.exp()).pow(2) + log_std + 0.5 * math.log(2 * math.pi)
        return nll.flatten(1).sum(1)

    # ------------------------------------------------------------------ loss
    def loss(self, batch) -> LossOutput:
        x, _ = batch
        mu, logvar = self.posterior(x)
        z = self.reparameterize(mu, logvar)
        recon = self.reconstruction_nll(self.decoder(z), (x + 1.0) / 2.0).mean()
        kl = gaussian_kl(mu, logvar).mean()
        total = recon + self.beta * kl
        return LossOutput(total, {"recon": recon, "kl": kl, "elbo": -(recon + kl)})

    # ------------------------------------------------------------------ likelihood (evaluation)
    def decoder_log_likelihood(self, logits: Tensor, x: Tensor) -> Tensor:
        """log P(x | z) in nats per image, x in [-1, 1], each pixel a bin of width 2/255.

        Only the Gaussian likelihood defines probabilities of pixel levels: its mean and standard
        deviation (on [0, 1]) double on [-1, 1]. A Bernoulli "likelihood" of grey pixels is not a
        distribution over them, so its ELBO is not a bits/dim figure.
        """
        if self.likelihood != "gaussian":
            raise ValueError("bits/dim needs likelihood: gaussian; a Bernoulli decoder is not a distribution over "
                             "256 grey levels, so its ELBO does not compare with other families")
        mean = 2.0 * torch.sigmoid(logits) - 1.0
        log_std = self.log_std if self.log_std is not None else torch.tensor(math.log(self.gaussian_std))
        log_scale = (log_std.to(logits.device) + math.log(2.0)).expand_as(mean)
        return discretized_gaussian_log_likelihood(x, mean, log_scale).flatten(1).sum(1)

    @torch.no_grad()
    def likelihood_bounds(self, x: Tensor, *, samples: int = 1, generator: torch.Generator | None = None) -> LikelihoodBounds:
        """The ELBO and the k-sample importance-weighted bound of images ``x`` in [-1, 1].

        Args:
            x: (B, C, H, W) images in [-1, 1].
            samples: draws k from q(z|x) per image (k = 1 gives the ELBO twice).
            generator: source of the draws; the same seed gives the same bounds.
        """
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        mu, logvar = self.posterior(x)
        log_weights = []
        for _ in range(samples):
            z = mu + torch.exp(0.5 * logvar) * randn(mu.shape, generator=generator, device=mu.device)
            log_prior = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).flatten(1).sum(1)
            log_q = gaussian_log_density(z, mu, logvar).flatten(1).sum(1)
            log_weights.append(self.decoder_log_likelihood(self.decoder(z), x) + log_prior - log_q)
        elbo, iw = importance_weighted_bounds(torch.stack(log_weights))
        return LikelihoodBounds(elbo, iw, samples)

    def likelihood_unavailable(self) -> str | None:
        """A Bernoulli decoder is no distribution over the 256 grey levels, so it has no comparable bits/dim."""
        if self.likelihood != "gaussian":
            return (f"likelihood: {self.likelihood} is not a distribution over 256 grey levels; train with "
                    "model.likelihood=gaussian for a comparable bits/dim")
        return None

    @torch.no_grad()
    def negative_log_likelihood(self, x: Tensor, labels: Tensor, *, generator: torch.Generator, samples: int,
                                terms: int | None) -> NLL:
        """The importance-weighted bound with ``samples`` draws (the tighter one, reported) and the ELBO beside it."""
        bounds = self.likelihood_bounds(x, samples=samples, generator=generator)
        dims = x[0].numel()
        return NLL(-bounds.iw, {"elbo_bits_per_dim": bits_per_dim(-bounds.elbo.double(), dims),
                                "iw_bits_per_dim": bits_per_dim(-bounds.iw.double(), dims)},
                   f"IWAE k={samples}", {"samples": samples, "weights": "raw"})

    # ------------------------------------------------------------------ latent space and sampling
    encoded_as = "the posterior mean"

    def encode(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] -> the posterior mean (the usual code for interpolation and latent diffusion)."""
        return self.posterior(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        """Codes -> images in [-1, 1] (the likelihood's mean)."""
        return to_model_range(torch.sigmoid(self.decoder(z)))

    @torch.no_grad()
    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None, **options) -> Tensor:
        if labels is not None:
            raise ValueError("VAE is unconditional: call sample() without labels")
        if options:
            raise ValueError(f"VAE.sample() takes no options, got {sorted(options)}")
        z = randn((n, *self.latent_shape), generator=generator, device=self.device)
        return (self.decode(z) + 1.0) / 2.0
