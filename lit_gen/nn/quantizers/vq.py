"""Vector quantization with a learned codebook (van den Oord et al. 2017, "Neural Discrete Representation
Learning").

Each encoder output vector ``z_e`` is replaced by its nearest codebook entry ``e``. The paper's
objective (its equation 3), written once here:

    L = log p(x | z_q) + ||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2
                          ^ codebook term     ^ commitment term

``beta`` weighs the *commitment* term, which pulls the encoder towards its code. (A well-known
implementation put it on the codebook term for years; ``tests/nn/quantizers/test_vq.py`` pins the
paper's form.) Gradients reach the encoder through the straight-through estimator
``z_q = z_e + sg[e - z_e]``, or with ``rotation_trick`` through a rotation (Fifty et al. 2024,
"Restructuring Vector Quantization with the Rotation Trick"): ``z_q = sg[lambda R] z_e``, where ``R``
rotates the direction of ``z_e`` onto that of ``e`` and ``lambda = ||e|| / ||z_e||``. The forward value is
still ``e``; the gradient reaching the encoder is ``lambda R^T g`` instead of ``g``, so where in its
code's region a vector lies changes the update it gets.

Options: EMA codebook updates instead of the codebook loss (paper appendix A.1, with Laplace
smoothing of the cluster sizes), restart of codes unused for many steps from recent encoder
outputs. Under DDP the per-step code counts and EMA sums are all-reduced and restarted codes
broadcast from rank 0, so every rank keeps the same codebook.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gen.nn import draws
from lit_gen.rules import NonNegativeFloat, PositiveFloat, PositiveInt, Range
from lit_gen.nn.quantizers.base import Quantized, Quantizer, all_reduce_sum, as_latent, as_rows, distributed, perplexity_of


def rotate_onto(z: Tensor, e: Tensor, eps: float = 1e-6) -> Tensor:
    """The rotation trick for rows ``z`` and their codes ``e`` (N, D): value ``e``, gradient ``lambda R^T g``.

    ``R = I - 2 r r^T + 2 q u^T`` with ``u = z/||z||``, ``q = e/||e||``, ``r = (u + q)/||u + q||`` maps ``u``
    onto ``q``; it and ``lambda = ||e||/||z||`` are constants to autograd (computed without gradient), so
    ``R z`` is applied without forming ``R``: ``z - 2 r (r.z) + 2 q (u.z)``.
    """
    with torch.no_grad():
        z_norm = z.norm(dim=1, keepdim=True).clamp_min(eps)
        e_norm = e.norm(dim=1, keepdim=True)
        u = z / z_norm
        q = e / e_norm.clamp_min(eps)
        r = F.normalize(u + q, dim=1, eps=eps)
        scale = e_norm / z_norm
    rotated = z - 2.0 * r * (r * z).sum(1, keepdim=True) + 2.0 * q * (u * z).sum(1, keepdim=True)
    return scale * rotated


class VectorQuantizer(Quantizer):
    """Nearest-neighbour vector quantizer with a learned codebook (``model.quantizer: {name: vq}``).

    Args:
        num_codes (int, default 512): codebook size K.
        code_dim (int, default 64): dimension D of each code (the channels of ``z_e``).
        beta (float, default 0.25): weight of the commitment term ``||z_e - sg[e]||^2``.
        codebook_ema_decay (float | None, default None): when set (e.g. 0.99), codes follow an exponential
            moving average of the encoder outputs assigned to them and the codebook loss is zero;
            None learns the codebook by gradient of the codebook loss.
        ema_eps (float, default 1e-5): Laplace smoothing of the EMA cluster sizes, so a code that is
            rarely picked does not divide by zero.
        dead_code_steps (int, default 100): a code unused for this many consecutive training steps
            counts as dead (reported by ``code_usage()`` and restarted when enabled).
        restart_dead_codes (bool, default False): replace dead codes with random encoder outputs of
            the current batch. The draw uses ``generator`` when passed to ``forward`` and the
            global RNG otherwise (reseeded every step by the training loop).
        rotation_trick (bool, default False): carry the gradient to the encoder through the rotation of
            ``z_e`` onto its code instead of the straight-through copy.
    """

    def __init__(
        self,
        num_codes: Annotated[int, Range(ge=2)] = 512,
        code_dim: PositiveInt = 64,
        beta: NonNegativeFloat = 0.25,
        codebook_ema_decay: Annotated[float, Range(gt=0, lt=1)] | None = None,
        ema_eps: PositiveFloat = 1e-5,
        dead_code_steps: PositiveInt = 100,
        restart_dead_codes: bool = False,
        rotation_trick: bool = False,
    ) -> None:
        super().__init__(num_codes, code_dim, dead_code_steps)
        if beta < 0 or not (codebook_ema_decay is None or 0.0 < codebook_ema_decay < 1.0):
            raise ValueError(f"beta must be >= 0 and codebook_ema_decay None or in (0, 1), got {beta}, {codebook_ema_decay}")
        self.beta = beta
        self.codebook_ema_decay = codebook_ema_decay
        self.ema_eps = ema_eps
        self.restart_dead_codes = restart_dead_codes
        self.rotation_trick = rotation_trick

        # The paper's uniform init; small codes start near the encoder's initial outputs.
        weight = torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        self.embedding = nn.Parameter(weight, requires_grad=codebook_ema_decay is None)
        if codebook_ema_decay is not None:
            # Sizes start at 1 and sums at the codes, so sum / size is the initial codebook.
            self.register_buffer("ema_cluster_size", torch.ones(num_codes))
            self.register_buffer("ema_embed_sum", weight.clone())

    def parameters_learned_without_gradients(self) -> tuple[nn.Parameter, ...]:
        """The codebook when it is an EMA of its assigned vectors (trained, though not by the optimizer)."""
        return (self.embedding,) if self.codebook_ema_decay is not None else ()

    # ------------------------------------------------------------------ quantization
    def nearest_codes(self, flat: Tensor) -> Tensor:
        """Index of the nearest code (squared Euclidean distance) of each row of ``flat`` (N, D)."""
        codes = self.embedding.detach().float()
        flat = flat.detach().float()
        # Autocast would run the matmul in half precision and pick wrong neighbours on near-ties.
        with torch.autocast(device_type=flat.device.type, enabled=False):
            distances = (
                flat.pow(2).sum(1, keepdim=True)
                - 2.0 * flat @ codes.t()
                + codes.pow(2).sum(1)[None, :]
            )  # (N, K)
        return distances.argmin(dim=1)

    def indices_of(self, z: Tensor) -> Tensor:
        b, _, h, w = z.shape
        return self.nearest_codes(as_rows(z, self.code_dim)).view(b, h, w)

    def codes_to_latent(self, indices: Tensor) -> Tensor:
        self.check_indices(indices)
        return F.embedding(indices, self.embedding).permute(0, 3, 1, 2).contiguous()

    def forward(self, z_e: Tensor, *, generator: torch.Generator | None = None) -> Quantized:
        """Quantize ``z_e`` (B, D, H, W); in training mode also update EMA codes, restarts and statistics."""
        rows = as_rows(z_e, self.code_dim)
        b, _, h, w = z_e.shape
        flat = rows.detach().float()
        indices = self.nearest_codes(flat)
        codes = F.embedding(indices, self.embedding).to(z_e.dtype)  # (N, D), differentiable in the codebook

        losses = {"commitment": self.beta * F.mse_loss(rows, codes.detach())}
        if self.codebook_ema_decay is None:
            losses["codebook"] = F.mse_loss(codes, rows.detach())
        else:
            losses["codebook"] = z_e.new_zeros(())

        counts = self.count_codes(indices)
        if self.training:
            if self.codebook_ema_decay is not None:
                self._ema_update(flat, indices, counts)
            self.track_usage(counts)
            if self.restart_dead_codes:
                self._restart_dead(flat, generator)

        if self.rotation_trick:
            out = rotate_onto(rows, codes.detach())
        else:
            # Straight-through: the forward value is the code, the gradient is the identity to z_e.
            out = rows + (codes - rows).detach()
        return Quantized(as_latent(out, (b, h, w)), indices.view(b, h, w), losses, perplexity_of(counts))

    # ------------------------------------------------------------------ codebook maintenance
    @torch.no_grad()
    def _ema_update(self, flat: Tensor, indices: Tensor, counts: Tensor) -> None:
        """N_k <- g N_k + (1-g) n_k;  m_k <- g m_k + (1-g) sum_{i: k_i = k} z_i;  e_k = m_k / N~_k."""
        decay = self.codebook_ema_decay
        sums = torch.zeros_like(self.ema_embed_sum).index_add_(0, indices, flat.to(self.ema_embed_sum.dtype))
        sums = all_reduce_sum(sums)
        new_size = decay * self.ema_cluster_size + (1.0 - decay) * counts
        new_sum = decay * self.ema_embed_sum + (1.0 - decay) * sums
        # A non-finite batch (a diverging step) must not poison the codebook; no host sync needed.
        finite = torch.isfinite(new_sum).all() & torch.isfinite(new_size).all()
        self.ema_cluster_size.copy_(torch.where(finite, new_size, self.ema_cluster_size))
        self.ema_embed_sum.copy_(torch.where(finite, new_sum, self.ema_embed_sum))
        total = self.ema_cluster_size.sum()
        smoothed = (self.ema_cluster_size + self.ema_eps) / (total + self.num_codes * self.ema_eps) * total
        self.embedding.copy_(self.ema_embed_sum / smoothed[:, None])

    @torch.no_grad()
    def _restart_dead(self, flat: Tensor, generator: torch.Generator | None) -> None:
        dead = self.dead()
        n_dead = int(dead.sum())  # identical on every rank: counts were all-reduced
        if n_dead == 0:
            return
        picks = draws.randint(flat.shape[0], (n_dead,), generator=generator, device=flat.device)
        replacement = flat[picks].to(self.embedding.dtype)
        # A diverging batch must not seed codes with NaN: keep the old code where the pick is not finite.
        replacement = torch.where(torch.isfinite(replacement), replacement, self.embedding[dead])
        if distributed():
            dist.broadcast(replacement, src=0)
        self.embedding[dead] = replacement
        if self.codebook_ema_decay is not None:
            self.ema_cluster_size[dead] = 1.0
            self.ema_embed_sum[dead] = replacement
        self.unused_steps[dead] = 0
