"""Vector quantization (van den Oord et al. 2017, "Neural Discrete Representation Learning").

Each encoder output vector ``z_e`` is replaced by its nearest codebook entry ``e``. The paper's
objective (its equation 3), written once here:

    L = log p(x | z_q) + ||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2
                          ^ codebook term     ^ commitment term

``beta`` weighs the *commitment* term, which pulls the encoder towards its code. (A well-known
implementation put it on the codebook term for years; ``tests/nn/test_quantizer.py`` pins the
paper's form.) Gradients reach the encoder through the straight-through estimator
``z_q = z_e + sg[e - z_e]``.

Options: EMA codebook updates instead of the codebook loss (paper appendix A.1, with Laplace
smoothing of the cluster sizes), restart of codes unused for many steps from recent encoder
outputs, and code-usage statistics. Under DDP the per-step code counts and EMA sums are
all-reduced and restarted codes broadcast from rank 0, so every rank keeps the same codebook.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gen.nn import draws


class Quantized(NamedTuple):
    """What ``VectorQuantizer.forward`` returns.

    Attributes:
        z_q: (B, D, H, W) quantized latent with straight-through gradients to ``z_e``.
        indices: (B, H, W) int64 code index of every position.
        commitment: scalar ``beta * mean((z_e - sg[e])^2)``.
        codebook: scalar ``mean((sg[z_e] - e)^2)``; exactly zero with EMA updates.
        perplexity: scalar ``exp(entropy)`` of this batch's code histogram (K for uniform use of
            K codes, 1 for a single code).
    """

    z_q: Tensor
    indices: Tensor
    commitment: Tensor
    codebook: Tensor
    perplexity: Tensor


class CodeUsage(NamedTuple):
    """Code usage accumulated over training steps since the last ``reset_usage()``.

    Attributes:
        perplexity: ``exp(entropy)`` of the accumulated histogram.
        used_fraction: share of codes picked at least once.
        dead_codes: codes unused for at least ``dead_code_steps`` consecutive training steps.
    """

    perplexity: float
    used_fraction: float
    dead_codes: int


def perplexity_of(counts: Tensor) -> Tensor:
    """``exp(-sum p log p)`` of a histogram of code counts (1 for an empty histogram)."""
    total = counts.sum()
    probs = counts / total.clamp_min(1e-12)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return torch.exp(entropy)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantizer with a learned codebook.

    Args:
        num_codes (int): codebook size K.
        code_dim (int): dimension D of each code (the channels of ``z_e``).
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
    """

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        beta: float = 0.25,
        codebook_ema_decay: float | None = None,
        ema_eps: float = 1e-5,
        dead_code_steps: int = 100,
        restart_dead_codes: bool = False,
    ) -> None:
        super().__init__()
        # The config checks these where it reads them (the rules beside VQVAE's arguments).
        assert num_codes >= 2 and code_dim >= 1 and beta >= 0 and dead_code_steps >= 1, (num_codes, code_dim, beta)
        assert codebook_ema_decay is None or 0.0 < codebook_ema_decay < 1.0, codebook_ema_decay
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.beta = beta
        self.codebook_ema_decay = codebook_ema_decay
        self.ema_eps = ema_eps
        self.dead_code_steps = dead_code_steps
        self.restart_dead_codes = restart_dead_codes

        # The paper's uniform init; small codes start near the encoder's initial outputs.
        weight = torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        self.embedding = nn.Parameter(weight, requires_grad=codebook_ema_decay is None)
        if codebook_ema_decay is not None:
            # Sizes start at 1 and sums at the codes, so sum / size is the initial codebook.
            self.register_buffer("ema_cluster_size", torch.ones(num_codes))
            self.register_buffer("ema_embed_sum", weight.clone())
        self.register_buffer("unused_steps", torch.zeros(num_codes, dtype=torch.long))
        # Statistics for logging only: not part of the checkpoint.
        self.register_buffer("usage_counts", torch.zeros(num_codes), persistent=False)

    def parameters_learned_without_gradients(self) -> tuple[nn.Parameter, ...]:
        """The codebook when it is an EMA of its assigned vectors (trained, though not by the optimizer)."""
        return (self.embedding,) if self.codebook_ema_decay is not None else ()

    # ------------------------------------------------------------------ quantization
    def nearest_codes(self, flat: Tensor) -> Tensor:
        """Index of the nearest code (squared Euclidean distance) of each row of ``flat`` (N, D)."""
        codes = self.embedding.detach().float()
        flat = flat.float()
        # Autocast would run the matmul in half precision and pick wrong neighbours on near-ties.
        with torch.autocast(device_type=flat.device.type, enabled=False):
            distances = (
                flat.pow(2).sum(1, keepdim=True)
                - 2.0 * flat @ codes.t()
                + codes.pow(2).sum(1)[None, :]
            )  # (N, K)
        return distances.argmin(dim=1)

    def codes_to_latent(self, indices: Tensor) -> Tensor:
        """The quantized latent (B, D, H, W) of code indices (B, H, W)."""
        if indices.dtype != torch.long:
            raise TypeError(f"code indices must be int64, got {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"code indices must lie in [0, {self.num_codes}), got "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        return F.embedding(indices, self.embedding).permute(0, 3, 1, 2).contiguous()

    def forward(self, z_e: Tensor, *, generator: torch.Generator | None = None) -> Quantized:
        """Quantize ``z_e`` (B, D, H, W); in training mode also update EMA codes, restarts and statistics."""
        if z_e.ndim != 4 or z_e.shape[1] != self.code_dim:
            raise ValueError(f"expected z_e of shape (B, {self.code_dim}, H, W), got {tuple(z_e.shape)}")
        b, d, h, w = z_e.shape
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, d).float()  # (B*H*W, D)
        indices = self.nearest_codes(flat)
        z_q = F.embedding(indices, self.embedding).view(b, h, w, d).permute(0, 3, 1, 2).to(z_e.dtype)

        commitment = self.beta * F.mse_loss(z_e, z_q.detach())
        if self.codebook_ema_decay is None:
            codebook = F.mse_loss(z_q, z_e.detach())
        else:
            codebook = z_e.new_zeros(())

        counts = torch.bincount(indices, minlength=self.num_codes).float()
        if self.training:
            counts = self._all_reduce(counts)
            if self.codebook_ema_decay is not None:
                self._ema_update(flat, indices, counts)
            self._track_usage(counts)
            if self.restart_dead_codes:
                self._restart_dead(flat, generator)

        # Straight-through: the forward value is the code, the gradient is the identity to z_e.
        z_q = z_e + (z_q - z_e).detach()
        return Quantized(z_q, indices.view(b, h, w), commitment, codebook, perplexity_of(counts))

    # ------------------------------------------------------------------ codebook maintenance
    @torch.no_grad()
    def _ema_update(self, flat: Tensor, indices: Tensor, counts: Tensor) -> None:
        """N_k <- g N_k + (1-g) n_k;  m_k <- g m_k + (1-g) sum_{i: k_i = k} z_i;  e_k = m_k / N~_k."""
        decay = self.codebook_ema_decay
        sums = torch.zeros_like(self.ema_embed_sum).index_add_(0, indices, flat.to(self.ema_embed_sum.dtype))
        sums = self._all_reduce(sums)
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
    def _track_usage(self, counts: Tensor) -> None:
        used = counts > 0
        self.unused_steps.copy_(torch.where(used, torch.zeros_like(self.unused_steps), self.unused_steps + 1))
        self.usage_counts += counts

    @torch.no_grad()
    def _restart_dead(self, flat: Tensor, generator: torch.Generator | None) -> None:
        dead = self.unused_steps >= self.dead_code_steps
        n_dead = int(dead.sum())  # identical on every rank: counts were all-reduced
        if n_dead == 0:
            return
        picks = draws.randint(flat.shape[0], (n_dead,), generator=generator, device=flat.device)
        replacement = flat[picks].to(self.embedding.dtype)
        # A diverging batch must not seed codes with NaN: keep the old code where the pick is not finite.
        replacement = torch.where(torch.isfinite(replacement), replacement, self.embedding[dead])
        if _distributed():
            dist.broadcast(replacement, src=0)
        self.embedding[dead] = replacement
        if self.codebook_ema_decay is not None:
            self.ema_cluster_size[dead] = 1.0
            self.ema_embed_sum[dead] = replacement
        self.unused_steps[dead] = 0

    @staticmethod
    def _all_reduce(t: Tensor) -> Tensor:
        if _distributed():
            t = t.contiguous()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    # ------------------------------------------------------------------ statistics
    def code_usage(self) -> CodeUsage:
        """Usage accumulated over the training steps since the last ``reset_usage()``."""
        counts = self.usage_counts
        return CodeUsage(
            perplexity=float(perplexity_of(counts)),
            used_fraction=float((counts > 0).float().mean()),
            dead_codes=int((self.unused_steps >= self.dead_code_steps).sum()),
        )

    def reset_usage(self) -> None:
        """Start a new accumulation window for ``code_usage()`` (e.g. at each epoch)."""
        self.usage_counts.zero_()
