"""A small GPT-style causal transformer over discrete codes (the prior of the VQ families).

Token + learned position embeddings, pre-LayerNorm blocks, causal self-attention through
``F.scaled_dot_product_attention``. Position 0 holds a start token: a learned vector for an
unconditional model, the class embedding for a class-conditional one. The logits at position t
predict code t, so a sequence of T codes needs T positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gen.nn import draws


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to positions <= t."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (u.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for u in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # (B, T, C)
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CodeTransformer(nn.Module):
    """Autoregressive model p(c_t | c_<t, label) over sequences of ``block_size`` codes.

    Args:
        vocab_size (int): number of distinct codes.
        block_size (int): sequence length T (e.g. h * w of the code map).
        n_layer (int, default 4): transformer blocks.
        n_head (int, default 4): attention heads; must divide ``n_embd``.
        n_embd (int, default 128): embedding width.
        dropout (float, default 0.0): dropout on embeddings, attention and residual branches.
        num_classes (int | None, default None): class-conditional when set (labels in [0, num_classes)).
    """

    def __init__(self, vocab_size: int, block_size: int, n_layer: int = 4, n_head: int = 4,
                 n_embd: int = 128, dropout: float = 0.0, num_classes: int | None = None) -> None:
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.num_classes = num_classes
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        # Start of every sequence: one learned vector, or one per class.
        self.start_emb = nn.Embedding(num_classes if num_classes is not None else 1, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2: scale residual projections so the residual stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def forward(self, codes: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits (B, t + 1, vocab) for a prefix ``codes`` (B, t), t < block_size: position i predicts code i."""
        b, t = codes.shape
        if t >= self.block_size:
            raise ValueError(f"prefix of {t} codes leaves nothing to predict (block_size {self.block_size})")
        if self.num_classes is not None:
            if labels is None:
                raise ValueError("this transformer is class-conditional: pass labels")
            start = self.start_emb(labels)[:, None, :]  # (B, 1, C)
        else:
            start = self.start_emb.weight[None].expand(b, 1, -1)
        x = torch.cat([start, self.tok_emb(codes)], dim=1)  # (B, t + 1, C)
        x = self.drop(x + self.pos_emb.weight[: t + 1])
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def generate(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None,
                 temperature: float = 1.0, top_k: int | None = None) -> Tensor:
        """Draw ``n`` code sequences (n, block_size) one code at a time.

        Args:
            labels: (n,) int64 classes, required for a class-conditional model.
            generator: source of the draws (a CPU generator gives the same codes on any device).
            temperature: divides the logits; < 1 sharpens, > 1 flattens.
            top_k: keep only the k most likely codes at each step (None keeps all).
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if top_k is not None and not 1 <= top_k <= self.vocab_size:
            raise ValueError(f"top_k must be in [1, {self.vocab_size}] or None, got {top_k}")
        device = self.head.weight.device
        codes = torch.zeros(n, 0, dtype=torch.long, device=device)
        for _ in range(self.block_size):
            logits = self(codes, labels)[:, -1, :].float() / temperature  # (n, vocab)
            if top_k is not None:
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            # Inverse-CDF draw: one uniform per row from the generator, on any device.
            cdf = logits.softmax(-1).cumsum(-1)
            u = draws.rand((n, 1), generator=generator, device=device) * cdf[:, -1:]
            nxt = torch.searchsorted(cdf, u, right=True).clamp_max(self.vocab_size - 1)
            codes = torch.cat([codes, nxt], dim=1)
        return codes
