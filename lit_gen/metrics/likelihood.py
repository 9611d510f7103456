"""Bits per dimension of a trained model on a data split, with the protocol that produced it.

One entry point, ``evaluate_likelihood``, for every model that offers the ``Likelihood`` capability
(``lit_gen.models.capabilities``): the model says what its bound is (all in the discretized convention
of ``lit_gen.nn.densities``, so bits/dim compare) and why it has none where it has none. The VAE gives
its importance-weighted bound (the ELBO beside it), the diffusion family Ho et al.'s variational bound
over all T terms, the code prior its bits per code (no bits/dim: the VQ decoder is deterministic). A
model without the capability defines no likelihood here.

A missing value is ``None`` with a ``reason``, never a zero.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.data import DataLoader, Subset

from lit_gen import registry
from lit_gen.errors import EvaluationError
from lit_gen.nn.densities import bits_per_dim
from lit_gen.models.capabilities import Likelihood

CONVENTION = ("discretized: each value of [-1, 1] is a bin of width 2/255 (256 levels, open edge bins); "
              "bits/dim = -log2 P(bins) / (C*H*W)")
#: Facts a model's bound states (``NLL.extra``) that are fields of the record rather than extras.
RECORD_FIELDS = ("samples", "timesteps", "terms", "weights")


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
        samples: importance samples k of an importance-weighted bound (the VAE's).
        terms: L_{t-1} terms of a diffusion bound to evaluate (None: all T - 1, the exact bound's estimate).
        seed: seed of every random draw (posterior samples, x_t noise).
    """
    family = family_of(model)
    started = time.perf_counter()
    dims = math.prod(dataset[0][0].shape)
    base = dict(family=family, split=split, seed=seed, dims=dims, checkpoint=checkpoint, global_step=global_step)
    if not isinstance(model, Likelihood):
        # The model may say why it has none (an autoencoder, a VQ first stage); otherwise it just has none here.
        reason = getattr(model, "no_likelihood", None) or f"the {family} family defines no likelihood (not comparable)"
        return LikelihoodRecord(bits_per_dim=None, reason=reason, bound=None, count=0, **base)
    reason = model.likelihood_unavailable()
    if reason is not None:
        return LikelihoodRecord(bits_per_dim=None, reason=reason, bound=None, count=0, **base)
    loader, count = _batches(dataset, count, batch_size)
    generator = torch.Generator().manual_seed(seed)
    device = model.device
    was_training = model.training
    model.eval()
    total, parts, last = 0.0, {}, None
    try:
        for x, labels in loader:
            try:
                last = model.negative_log_likelihood(x.to(device), labels.to(device), generator=generator,
                                                     samples=samples, terms=terms)
            except ValueError as exc:  # an option the model refuses (e.g. terms out of range), for every caller
                raise EvaluationError(f"{type(model).__name__}: {exc}") from None
            total = None if last.total is None else total + float(last.total.double().sum())
            for name, values in last.parts.items():
                parts[name] = parts.get(name, 0.0) + float(values.double().sum())
    finally:
        model.train(was_training)
    extra = {k: v for k, v in last.extra.items() if k not in RECORD_FIELDS and k != "reason"}
    extra.update({name: value / count for name, value in parts.items()})
    fields = {k: last.extra[k] for k in RECORD_FIELDS if k in last.extra}
    value = None if total is None else float(bits_per_dim(total / count, dims))
    return LikelihoodRecord(bits_per_dim=value, reason=last.extra.get("reason") if value is None else None,
                            bound=last.what, count=count, seconds=round(time.perf_counter() - started, 2),
                            extra=extra, **fields, **base)
