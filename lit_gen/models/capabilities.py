"""What a model can do beyond sampling, declared as Protocols the tools ask instead of testing family names.

``compare``, ``evaluate --bpd``, ``sample`` and the FID records ask ``isinstance(model, Autoencoding)``
(and the others below) rather than "is this a vae?": a new family gets every tool that fits it by
implementing the methods, and no tool lists families. Each Protocol is checked at run time
(``runtime_checkable``: the methods exist), and ``tests/models/test_contracts.py`` checks which
families offer which.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Autoencoding(Protocol):
    """Images to a latent and back: interpolation, reconstruction error, latent diffusion's first stage."""

    #: What ``encode`` returns, for records ("the posterior mean", "the encoder's output").
    encoded_as: str

    def encode(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) in [-1, 1] -> latents."""

    def decode(self, z: Tensor) -> Tensor:
        """Latents -> images (B, C, H, W) in about [-1, 1]."""


@runtime_checkable
class CodeAutoencoding(Protocol):
    """Images to a grid of discrete codes and back: the first stage of a prior over codes."""

    num_codes: int
    code_shape: tuple[int, int]

    def encode_indices(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) in [-1, 1] -> code indices (B, h, w), int64."""

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Code indices (B, h, w) -> images in about [-1, 1]."""


class NLL(NamedTuple):
    """A likelihood bound of one batch: ``total`` (B,) in nats per image (None where it is not over pixels),
    ``parts`` (name -> (B,) nats) summed over a split for the record, ``what`` names the bound, ``extra``
    holds figures of the family's own (e.g. bits per code)."""

    total: Tensor | None
    parts: dict[str, Tensor]
    what: str
    extra: dict[str, Any]


@runtime_checkable
class Likelihood(Protocol):
    """A bound on -log p(x) in the discretized convention of ``lit_gen.nn.densities`` (bits/dim compare)."""

    def likelihood_unavailable(self) -> str | None:
        """Why this model's bound is not a comparable bits/dim (None: it is)."""

    def negative_log_likelihood(self, x: Tensor, labels: Tensor, *, generator: torch.Generator, samples: int,
                                terms: int | None) -> NLL:
        """The bound per image of a batch (``samples``: importance samples; ``terms``: a diffusion bound's terms)."""


@runtime_checkable
class SamplingDefaults(Protocol):
    """A family whose ``sample()`` options have defaults the model itself chooses (e.g. a config's best sampler)."""

    def sample_defaults(self) -> dict[str, Any]:
        """The ``sample()`` options a caller who gives none gets."""

    def sample_record(self, options: dict[str, Any]) -> dict[str, Any]:
        """What a sample call with ``options`` runs, for a record: sampler, steps, eta, guidance, weights."""
