"""Bits per dimension of a trained model on a data split, with the protocol that produced it.

One entry point, ``evaluate_likelihood``, for every family; each family says what its likelihood is
(all in the discretized convention of ``lit_gen.likelihood``, so their bits/dim compare):

- ``vae`` (Gaussian decoder): the ELBO and the importance-weighted bound with k samples (Burda et
  al. 2016); the reported value is the tighter, importance-weighted one. A Bernoulli decoder gets
  no bits/dim (it is not a distribution over grey levels); its reason says so.
- ``ddpm`` (pixel space): the variational bound over all T terms (Ho et al. 2020), EMA weights
  when the model has them. Latent diffusion is marked not comparable (a bound on latents).
- ``prior`` over VQ codes: its cross-entropy in bits per code; no bits/dim (the VQ decoder is
  deterministic, so an image has no probability under codes + decoder).
- Autoencoders and VQ first stages define no likelihood; any other family has none implemented.

A missing value is ``None`` with a ``reason``, never a zero.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.data import DataLoader, Subset

from lit_gen import registry
from lit_gen.diffusion.likelihood import variational_bound
from lit_gen.errors import EvaluationError
from lit_gen.likelihood import LN2, bits_per_dim

CONVENTION = ("discretized: each value of [-1, 1] is a bin of width 2/255 (256 levels, open edge bins); "
              "bits/dim = -log2 P(bins) / (C*H*W)")
NO_LIKELIHOOD = {
    "ae": "an autoencoder defines no likelihood",
    "dae": "an autoencoder defines no likelihood",
    "vqvae": "a VQ first stage defines no likelihood (train a prior over its codes)",
    "vqgan": "a VQ first stage defines no likelihood (train a prior over its codes)",
}


@dataclass
class LikelihoodRecord:
    """Bits/dim of one checkpoint on one split, and everything needed to reproduce it.

    ``bits_per_dim`` is None exactly when ``reason`` says why; ``bound`` names what was computed
    ("IWAE k=64", "VLB over T=1000 terms", ...); ``extra`` holds the family's other figures.
    """

    family: str
    bits_per_dim: float | None
    reason: str | None
    bound: str | None
    split: str
    count: int
    dims: int
    seed: int
    convention: str = CONVENTION
    samples: int | None = None
    timesteps: int | None = None
    terms: int | None = None
    weights: str | None = None
    extra: dict = field(default_factory=dict)
    checkpoint: str | None = None
    global_step: int | None = None
    seconds: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def file_name(self) -> str:
        """The record's file name in a run's ``likelihood/`` folder (``evaluate --bpd`` and ``compare`` agree on it)."""
        setting = f"k{self.samples}" if self.samples else f"t{self.terms}" if self.terms else self.family
        return f"bpd_{self.split}_{self.count}_{setting}_seed{self.seed}.json"

    def summary_line(self) -> str:
        if self.bits_per_dim is None:
            return f"bits/dim   not defined for {self.family}: {self.reason}"
        return (f"bits/dim   {self.bits_per_dim:.4f} ({self.bound}; {self.split} split, N={self.count}, "
                f"seed {self.seed})")


def family_of(model) -> str:
    try:
        return registry.name_of(type(model))
    except KeyError:
        return type(model).__name__.lower()


def _batches(dataset, count: int | None, batch_size: int):
    total = len(dataset)
    count = total if count is None else count
    if not 1 <= count <= total:
        raise EvaluationError(f"--count {count}: the split holds {total} images; choose 1 .. {total} or leave it unset")
    return DataLoader(Subset(dataset, range(count)), batch_size=batch_size, shuffle=False, num_workers=0), count


@torch.no_grad()
def evaluate_likelihood(model, dataset, *, split: str = "test", count: int | None = None, batch_size: int = 256,
                        samples: int = 64, terms: int | None = None, seed: int = 0, checkpoint: str | None = None,
                        global_step: int | None = None) -> LikelihoodRecord:
    """Bits/dim of ``model`` on the first ``count`` images of ``dataset`` (all when None).

    Args:
        samples: importance samples k for the VAE's bound.
        terms: DDPM L_{t-1} terms to evaluate (None: all T - 1, the exact bound's estimate).
        seed: seed of every random draw (posterior samples, x_t noise).
    """
    family = family_of(model)
    schedule = getattr(model, "schedule", None)
    if terms is not None and schedule is not None and not 1 <= terms <= len(schedule) - 1:
        # Checked here, not only by a CLI, so every caller (evaluate --bpd, compare --measure) gets it.
        raise EvaluationError(f"--bpd-terms {terms}: choose 1 .. {len(schedule) - 1} (the model's T - 1 terms) "
                              "or leave it unset for all")
    started = time.perf_counter()
    x_shape = dataset[0][0].shape
    dims = math.prod(x_shape)
    base = dict(family=family, split=split, seed=seed, dims=dims, checkpoint=checkpoint, global_step=global_step)
    reason = _no_likelihood_reason(model, family)
    if reason is not None:
        return LikelihoodRecord(bits_per_dim=None, reason=reason, bound=None, count=0, **base)
    loader, count = _batches(dataset, count, batch_size)
    generator = torch.Generator().manual_seed(seed)
    device = model.device
    was_training = model.training
    model.eval()
    try:
        if family == "vae":
            record = _vae(model, loader, samples, generator, device)
        elif family == "ddpm":
            record = _ddpm(model, loader, terms, generator, device)
        else:
            record = _prior(model, loader, device)
    finally:
        model.train(was_training)
    nats, fields = record
    value = None if nats is None else float(bits_per_dim(nats, dims))
    fields.setdefault("reason", None)
    return LikelihoodRecord(bits_per_dim=value, count=count, seconds=round(time.perf_counter() - started, 2),
                            **fields, **base)


def _no_likelihood_reason(model, family: str) -> str | None:
    if family in NO_LIKELIHOOD:
        return NO_LIKELIHOOD[family]
    if family == "vae" and model.likelihood != "gaussian":
        return (f"likelihood: {model.likelihood} is not a distribution over 256 grey levels; train with "
                "model.likelihood=gaussian for a comparable bits/dim")
    if family == "ddpm":
        objective = model.hparams.get("objective")
        if objective not in (None, "ddpm"):
            # Other training objectives (EDM, flow matching) need a probability-flow likelihood, not this bound.
            return f"objective {objective}: its likelihood (probability flow) is not implemented (not comparable)"
        if model.first_stage is not None:
            return "latent diffusion: its bound is over the first stage's latents, not pixels (not comparable)"
        return None
    if family in ("vae", "prior"):
        return None
    return f"no likelihood is implemented for the {family} family (not comparable)"


def _vae(model, loader, samples, generator, device):
    elbo = iw = 0.0
    for x, _ in loader:
        bounds = model.likelihood_bounds(x.to(device), samples=samples, generator=generator)
        elbo += float(-bounds.elbo.double().sum())
        iw += float(-bounds.iw.double().sum())
    n = len(loader.dataset)
    dims = math.prod(loader.dataset[0][0].shape)
    extra = {"elbo_bits_per_dim": bits_per_dim(elbo / n, dims), "iw_bits_per_dim": bits_per_dim(iw / n, dims)}
    return iw / n, {"bound": f"IWAE k={samples}", "samples": samples, "weights": "raw", "extra": extra}


def _ddpm(model, loader, terms, generator, device):
    net = model.ema.averaged if model.ema is not None else model.unet
    total = prior = decoder = 0.0
    used = None
    for x, labels in loader:
        x = x.to(device)
        if model.conditional:
            y = labels.to(device)

            def model_fn(x_t, t, y=y):
                return net(x_t, t, y)
        else:
            def model_fn(x_t, t):
                return net(x_t, t)
        bound = variational_bound(model_fn, model.schedule, x, prediction=model.prediction, clip_x0=True,
                                  terms=terms, generator=generator)
        total += float(bound.total.double().sum())
        prior += float(bound.prior.double().sum())
        decoder += float(bound.decoder.double().sum())
        used = bound.terms
    n = len(loader.dataset)
    T = len(model.schedule)
    dims = math.prod(loader.dataset[0][0].shape)
    what = f"VLB over all T={T} terms" if used == T - 1 else f"VLB, {used} of T-1={T - 1} terms sampled (unbiased)"
    if model.conditional:
        what += ", conditioned on the true labels"
    extra = {"prior_bits_per_dim": bits_per_dim(prior / n, dims), "decoder_bits_per_dim": bits_per_dim(decoder / n, dims)}
    return total / n, {"bound": what, "timesteps": T, "terms": used,
                       "weights": "ema" if model.ema is not None else "raw", "extra": extra}


def _prior(model, loader, device):
    nats = 0.0
    for x, labels in loader:
        nats += float(model.code_nll(x.to(device), labels.to(device) if model.conditional else None).double().sum())
    n = len(loader.dataset)
    codes = model.code_shape[0] * model.code_shape[1]
    per_code = nats / n / codes / LN2
    reason = ("the VQ decoder is deterministic: an image has no probability under codes + decoder, "
              f"only its {codes} codes do ({per_code:.3f} bits per code)")
    return None, {"bound": "code cross-entropy", "reason": reason, "weights": "raw",
                  "extra": {"bits_per_code": per_code, "codes_per_image": codes, "codebook_size": model.first_stage.num_codes}}
