"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Each of a few channels is bounded and rounded to one of ``L_i`` levels; the code is the tuple of levels and
the implicit codebook their product, ``K = prod L_i``. Nothing is learned, so there is no codebook or
commitment loss and no code can die of neglect. The bound (the paper's appendix A.1):

    f(z) = tanh(z + s) * h - o,    h = (L - 1)(1 + eps) / 2,   o = 1/2 for even L else 0,   s = atanh(o / h)

puts exactly ``L`` integers within reach of ``round(f(z))`` (from ``-floor(L/2)`` to ``ceil(L/2) - 1``) and maps
``z = 0`` to the level 0; dividing by ``floor(L/2)`` keeps codes within [-1, 1]. (The paper's listing writes
``1 - eps`` and ``tan``; with ``1 - eps`` two levels cannot be centred, ``o / h > 1``, so this follows the
``1 + eps`` and ``atanh`` of the common implementation, vector-quantize-pytorch, which the tests agree with.) The rounding passes gradients straight through. A code's index
is its levels read as a mixed-radix number, channel 0 the least significant digit. Codes are not fixed
points of the bound (``indices_of`` takes the encoder's latent, as ``forward`` does).
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import Tensor

from lit_gen.rules import Fraction, PositiveInt, Range
from lit_gen.nn.quantizers.base import Quantized, Quantizer, as_latent, as_rows, perplexity_of

#: The paper's recommended levels for a target codebook size (its table 1), by log2 of the size.
RECOMMENDED_LEVELS: dict[int, tuple[int, ...]] = {
    8: (8, 6, 5),
    10: (8, 5, 5, 5),
    12: (7, 5, 5, 5, 5),
    14: (8, 8, 8, 6, 5),
    16: (8, 8, 8, 5, 5, 5),
}


def levels_for(num_codes: int) -> tuple[int, ...]:
    """The paper's recommended levels for ``num_codes`` (2^8, 2^10, 2^12, 2^14 or 2^16)."""
    bits = math.log2(num_codes)
    if bits not in RECOMMENDED_LEVELS:
        sizes = ", ".join(str(2 ** b) for b in RECOMMENDED_LEVELS)
        raise ValueError(f"no recommended FSQ levels for {num_codes} codes: give levels explicitly "
                         f"(e.g. levels: [8, 5, 5, 5]) or pick num_codes among {sizes}")
    return RECOMMENDED_LEVELS[int(bits)]


def round_straight_through(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()


class FiniteScalarQuantizer(Quantizer):
    """FSQ (``model.quantizer: {name: fsq, levels: [8, 5, 5, 5]}``): round bounded channels to fixed levels.

    Args:
        levels (list[int] | None, default None): levels per channel (each >= 2; the code dimension is their
            count). None takes the paper's recommended set for ``num_codes``.
        num_codes (int | None, default None): with ``levels`` None, the codebook size whose recommended
            levels to use (256, 1024, 4096, 16384 or 65536; the sets give a codebook near that size, e.g.
            240 codes for 256); must equal the product of ``levels`` when both are given.
        eps (float, default 1e-3, in (0, 1)): widens the bound a little, so the outer levels are reached before
            tanh saturates (and two levels' shift stays finite).
        dead_code_steps (int, default 100): training steps without use after which a code counts as dead
            (reported only: FSQ has no codebook to restart).
    """

    def __init__(self, levels: list[Annotated[int, Range(ge=2)]] | None = None,
                 num_codes: Annotated[int, Range(ge=2)] | None = None, eps: Fraction = 1e-3,
                 dead_code_steps: PositiveInt = 100) -> None:
        if levels is None:
            if num_codes is None:
                raise ValueError("FSQ needs its levels (e.g. levels: [8, 5, 5, 5]) or a num_codes to pick them")
            levels = list(levels_for(num_codes))
            num_codes = None  # the recommended sets are near, not at, their power of two (2^8 -> 240 codes)
        levels = [int(level) for level in levels]
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        product = math.prod(levels)
        if num_codes is not None and num_codes != product:
            raise ValueError(f"FSQ levels {levels} give {product} codes, not num_codes={num_codes}: drop one of the two")
        if not 0.0 < eps < 1.0:
            raise ValueError(f"FSQ eps must lie in (0, 1), got {eps}: without it two levels' shift atanh(1) is infinite")
        super().__init__(product, len(levels), dead_code_steps)
        self.levels = levels
        levels_t = torch.tensor(levels, dtype=torch.float64)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.long), dim=0)
        # Constants of the levels, rebuilt from the config: not part of the checkpoint.
        self.register_buffer("_levels", levels_t.float(), persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("_half_width", torch.floor(levels_t / 2).float(), persistent=False)
        half_l = (levels_t - 1) * (1 + eps) / 2
        offset = torch.where(levels_t % 2 == 0, 0.5, 0.0)
        self.register_buffer("_half_l", half_l.float(), persistent=False)
        self.register_buffer("_offset", offset.float(), persistent=False)
        self.register_buffer("_shift", torch.atanh(offset / half_l).float(), persistent=False)

    def bound(self, rows: Tensor) -> Tensor:
        """``tanh(z + s) * h - o`` per channel: each channel's values within reach of its L integers."""
        return torch.tanh(rows + self._shift) * self._half_l - self._offset

    def quantize_rows(self, rows: Tensor) -> Tensor:
        """Rows (N, D) -> their codes in [-1, 1] (N, D), gradients straight through the rounding."""
        return round_straight_through(self.bound(rows.float())) / self._half_width

    def rows_to_indices(self, codes: Tensor) -> Tensor:
        digits = torch.round(codes * self._half_width + self._half_width).long()
        return (digits * self._basis).sum(dim=1)

    def indices_to_rows(self, indices: Tensor) -> Tensor:
        digits = (indices[:, None] // self._basis) % self._levels.long()
        return (digits.float() - self._half_width) / self._half_width

    def indices_of(self, z: Tensor) -> Tensor:
        b, _, h, w = z.shape
        with torch.no_grad():
            return self.rows_to_indices(self.quantize_rows(as_rows(z, self.code_dim))).view(b, h, w)

    def codes_to_latent(self, indices: Tensor) -> Tensor:
        self.check_indices(indices)
        b, h, w = indices.shape
        return as_latent(self.indices_to_rows(indices.reshape(-1)), (b, h, w))

    def forward(self, z_e: Tensor, *, generator: torch.Generator | None = None) -> Quantized:
        """Quantize ``z_e`` (B, D, H, W); no loss terms; in training mode also the usage statistics."""
        rows = as_rows(z_e, self.code_dim)
        b, _, h, w = z_e.shape
        codes = self.quantize_rows(rows)
        indices = self.rows_to_indices(codes.detach())
        counts = self.count_codes(indices)
        if self.training:
            self.track_usage(counts)
        z_q = as_latent(codes.to(z_e.dtype), (b, h, w))
        return Quantized(z_q, indices.view(b, h, w), {}, perplexity_of(counts))
