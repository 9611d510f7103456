"""Lookup-free quantization (Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer is Key to Visual
Generation", MAGVIT-v2).

Each of ``d = log2(K)`` channels is quantized to its sign, ``q_i = +1`` if ``z_i > 0`` else ``-1``; the code is
the tuple of signs (no codebook to look up, no distance to compute) and its index the binary number of its
positive channels (channel 0 the least significant bit). The rounding passes gradients straight through.

Two loss terms keep the codes informative and all in use:

    commitment = w_c * ||z - sg[q]||^2
    entropy    = w_e * ( E_z[ H(p(c | z)) ]  -  gamma * H( E_z[ p(c | z) ] ) )

with the soft assignment ``p(c | z) ∝ exp(-||z - c||^2 / tau)`` over all ``K`` codes: the first term makes each
vector confident about its code, the second spreads the batch over the codebook. The distance separates
over channels, so ``p(c | z)`` is a product of per-channel Bernoullis ``p(c_i = +1 | z_i) = sigmoid(4 z_i / tau)``:
the per-vector entropy is a sum over channels, and the batch's code distribution is computed exactly, in
chunks of rows (memory of one chunk times K, recomputed on the backward pass). Under DDP the batch
distribution is the mean over every rank's rows (an autograd all-reduce), as one process would see the
whole batch.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from lit_gen.rules import NonNegativeFloat, PositiveFloat, PositiveInt, Range
from lit_gen.nn.quantizers.base import Quantized, Quantizer, as_latent, as_rows, distributed, perplexity_of

#: Rows of one chunk times codes, for the batch's code distribution (float32 elements).
CHUNK_ELEMENTS = 1 << 22


def binary_entropy(logits: Tensor) -> Tensor:
    """Entropy (nats) of Bernoulli(sigmoid(logits)), elementwise, stable for large |logits|."""
    p = torch.sigmoid(logits)
    return F.softplus(logits) - p * logits


def code_probability_sum(logits: Tensor, bits: Tensor) -> Tensor:
    """``sum_n p(c | z_n)`` for every code ``c`` (K,), from per-channel logits (N, d) and the codes' bits (K, d).

    ``log p(c | z) = sum_i log sigmoid(-a_i) + sum_i c_i a_i`` (``log sigmoid(a) - log sigmoid(-a) = a``).
    """
    log_all_negative = F.logsigmoid(-logits).sum(1, keepdim=True)  # (N, 1)
    return torch.exp(log_all_negative + logits @ bits.t()).sum(0)


def _all_reduce_with_grad(t: Tensor) -> Tensor:
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)


class LookupFreeQuantizer(Quantizer):
    """LFQ (``model.quantizer: {name: lfq, num_codes: 1024}``): binary channels with an entropy penalty.

    Args:
        num_codes (int, default 1024): codebook size K, a power of two; the code dimension is log2(K).
        entropy_weight (float, default 0.1): weight ``w_e`` of the entropy term.
        diversity_gamma (float, default 1.0): weight ``gamma`` of the batch's code entropy inside it.
        commitment_weight (float, default 0.25): weight ``w_c`` of the commitment term.
        temperature (float, default 0.01): ``tau`` of the soft assignment (MAGVIT-v2's inverse temperature 100).
        dead_code_steps (int, default 100): training steps without use after which a code counts as dead.
    """

    def __init__(self, num_codes: Annotated[int, Range(ge=2)] = 1024, entropy_weight: NonNegativeFloat = 0.1,
                 diversity_gamma: NonNegativeFloat = 1.0, commitment_weight: NonNegativeFloat = 0.25,
                 temperature: PositiveFloat = 0.01, dead_code_steps: PositiveInt = 100) -> None:
        bits = math.log2(num_codes) if num_codes >= 2 else 0.5
        if not float(bits).is_integer():
            raise ValueError(f"LFQ needs num_codes a power of two (its code dimension is log2 K), got {num_codes}; "
                             f"nearest: {2 ** round(bits)}")
        if min(entropy_weight, diversity_gamma, commitment_weight) < 0 or temperature <= 0:
            raise ValueError("LFQ weights must be >= 0 and its temperature > 0, got "
                             f"{entropy_weight}, {diversity_gamma}, {commitment_weight}, {temperature}")
        super().__init__(num_codes, int(bits), dead_code_steps)
        self.entropy_weight = entropy_weight
        self.diversity_gamma = diversity_gamma
        self.commitment_weight = commitment_weight
        self.temperature = temperature
        powers = 2 ** torch.arange(self.code_dim)
        self.register_buffer("_powers", powers, persistent=False)
        all_bits = (torch.arange(num_codes)[:, None] // powers) % 2
        self.register_buffer("_bits", all_bits.float(), persistent=False)  # (K, d), bit i of code k

    # ------------------------------------------------------------------ codes
    def rows_to_indices(self, rows: Tensor) -> Tensor:
        return ((rows > 0).long() * self._powers).sum(dim=1)

    def indices_of(self, z: Tensor) -> Tensor:
        b, _, h, w = z.shape
        return self.rows_to_indices(as_rows(z, self.code_dim).detach()).view(b, h, w)

    def codes_to_latent(self, indices: Tensor) -> Tensor:
        self.check_indices(indices)
        b, h, w = indices.shape
        rows = self._bits[indices.reshape(-1)] * 2.0 - 1.0
        return as_latent(rows, (b, h, w))

    # ------------------------------------------------------------------ the entropy term
    def entropy_terms(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(mean per-vector entropy, entropy of the batch's mean code distribution), in nats."""
        logits = 4.0 * rows.float() / self.temperature  # log p(+1 | z_i) - log p(-1 | z_i)
        per_vector = binary_entropy(logits).sum(1).mean()
        chunk = max(1, CHUNK_ELEMENTS // self.num_codes)
        total = logits.new_zeros(self.num_codes)
        for start in range(0, logits.shape[0], chunk):
            part = logits[start:start + chunk]
            if part.requires_grad and logits.shape[0] > chunk:
                total = total + checkpoint(code_probability_sum, part, self._bits, use_reentrant=False)
            else:
                total = total + code_probability_sum(part, self._bits)
        count = logits.new_tensor(float(logits.shape[0]))
        if self.training and distributed():
            total, count = _all_reduce_with_grad(total), _all_reduce_with_grad(count)
        mean = total / count
        batch = -(mean * torch.log(mean.clamp_min(1e-12))).sum()
        return per_vector, batch

    def forward(self, z_e: Tensor, *, generator: torch.Generator | None = None) -> Quantized:
        """Quantize ``z_e`` (B, log2 K, H, W) to signs; the loss terms; in training mode the usage statistics."""
        rows = as_rows(z_e, self.code_dim)
        b, _, h, w = z_e.shape
        signs = torch.where(rows > 0, 1.0, -1.0).to(rows.dtype)
        indices = self.rows_to_indices(rows.detach())
        losses = {"commitment": self.commitment_weight * F.mse_loss(rows, signs.detach())}
        if self.entropy_weight > 0:
            per_vector, batch = self.entropy_terms(rows)
            losses["entropy"] = self.entropy_weight * (per_vector - self.diversity_gamma * batch)
        counts = self.count_codes(indices)
        if self.training:
            self.track_usage(counts)
        out = rows + (signs - rows).detach()
        return Quantized(as_latent(out, (b, h, w)), indices.view(b, h, w), losses, perplexity_of(counts))
