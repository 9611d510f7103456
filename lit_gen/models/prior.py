"""Autoregressive prior over the codes of a trained VQ-VAE or VQ-GAN (the second stage).

Stage 1 (``vqvae`` / ``vqgan``) learns to encode images to a grid of h x w discrete codes. Stage 2,
this model, learns p(codes) = prod_t p(c_t | c_<t [, label]) over the grid read in raster order,
with a small causal transformer trained by next-code cross-entropy. Sampling draws codes one at a
time and decodes them with the first stage.

The config names only the first-stage checkpoint: vocabulary size (number of codes) and sequence
length (h * w) come from it, never retyped. The first stage is frozen and stored inside the prior,
so a prior checkpoint samples on its own. The model reads no file: ``lit_gen.build.build_model``
reads the first-stage checkpoint once, when the prior is first built, and hands it
``first_stage_spec`` (the stage's family and arguments) and the weights; a saved prior rebuilds the
stage from that spec and its own weights.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_gen.errors import ConfigError
from lit_gen.models.base import GenerativeModule, LossOutput, to_unit_range
from lit_gen.models.capabilities import NLL, CodeAutoencoding
from lit_gen.models.first_stage import first_stage_spec, stage_from_spec
from lit_gen.nn import draws
from lit_gen.nn.transformer import CodeTransformer
from lit_gen.rules import Fraction, PositiveInt
from lit_gen.signatures import forward

class CodePrior(GenerativeModule):
    """Transformer prior p(codes [| label]) over a frozen VQ first stage.

    Args:
        first_stage (str): path to a ``vqvae`` or ``vqgan`` checkpoint. Its codebook size is the
            vocabulary and its code grid (h, w) gives the sequence length h * w.
        channels (int | None, default None), image_size (int | None, default None): the data's
            image shape, filled in by the config; a shape that differs from the first stage's is an
            error (a prior trained on images the first stage never saw). None skips the check.
        n_layer (int, default 4): transformer blocks.
        n_head (int, default 4): attention heads (must divide ``n_embd``).
        n_embd (int, default 128): transformer width.
        dropout (float, default 0.0): dropout in the transformer.
        num_classes (int | None, default None): class-conditional prior over this many labels.
        first_stage_spec (dict | None, default None): the first stage's family and arguments, filled
            by ``lit_gen.build.build_model`` (which reads ``first_stage``) when the prior is first
            built; leave it unset in configs.
        lr (float, default 3e-4), weight_decay, betas (default (0.9, 0.95)), warmup_steps,
            lr_schedule: see ``GenerativeModule``; only the transformer is optimized.

    Logged: ``train/nll`` and ``val/nll``, the next-code cross-entropy in nats per code (equal to
    the loss). ``sample(n, labels=, generator=, temperature=1.0, top_k=None)`` returns images in [0, 1].
    """

    #: This family's defaults for the optimizer arguments it forwards to ``GenerativeModule``.
    ARGUMENT_DEFAULTS: ClassVar[dict] = {"lr": 3e-4, "betas": (0.9, 0.95)}

    def __init__(
        self,
        first_stage: str,
        channels: PositiveInt | None = None,
        image_size: PositiveInt | None = None,
        n_layer: PositiveInt = 4,
        n_head: PositiveInt = 4,
        n_embd: PositiveInt = 128,
        dropout: Fraction = 0.0,
        num_classes: PositiveInt | None = None,
        first_stage_spec: dict | None = None,
        **optimizer,
    ) -> None:
        super().__init__(**forward(CodePrior, optimizer))
        if n_embd % n_head != 0:
            raise ConfigError(f"model.n_embd ({n_embd}) must be divisible by model.n_head ({n_head})")
        self.save_hyperparameters()
        stage = stage_from_spec(first_stage, first_stage_spec, CodeAutoencoding,
                                "a first stage with discrete codes (encode_indices / decode_indices)",
                                "configs/vqvae_digits.yaml")
        for name, given in (("channels", channels), ("image_size", image_size)):
            expected = getattr(stage, name)
            if given is not None and given != expected:
                raise ConfigError(
                    f"model.{name}={given} (from the data) differs from the first stage's {name}={expected} "
                    f"({first_stage}); train the prior on the first stage's data (set data.image_size={stage.image_size})"
                )
        self.first_stage = stage
        self.code_shape = tuple(stage.code_shape)
        self.num_classes = num_classes
        self.conditional = num_classes is not None
        self.transformer = CodeTransformer(
            vocab_size=stage.num_codes, block_size=self.code_shape[0] * self.code_shape[1],
            n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout, num_classes=num_classes,
        )

    @staticmethod
    def first_stage_spec_for(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
        """The ``first_stage_spec`` saved for a first stage of family ``name`` with ``hparams`` (``lit_gen.build``)."""
        return first_stage_spec(name, hparams)

    def train(self, mode: bool = True) -> CodePrior:
        super().train(mode)
        self.first_stage.eval()  # frozen: no dropout, no codebook updates, ever
        return self

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def codes_of(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] -> their first-stage codes as raster-ordered sequences (B, h * w)."""
        return self.first_stage.encode_indices(x).flatten(1)

    @torch.no_grad()
    def code_nll(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """-log p(codes of x [| labels]) per image, in nats summed over the h * w codes.

        Divide by ``h * w * ln 2`` for bits per code. It is not a likelihood of the pixels: the
        first stage's decoder is deterministic, so images have no probability under the pair.
        """
        codes = self.codes_of(x)
        logits = self.transformer(codes[:, :-1], labels if self.conditional else None)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), codes.flatten(), reduction="none")
        return nll.view(codes.shape).sum(1)

    def likelihood_unavailable(self) -> str | None:
        return None  # it has a likelihood, of codes: negative_log_likelihood says why that is no bits/dim

    @torch.no_grad()
    def negative_log_likelihood(self, x: Tensor, labels: Tensor, *, generator: torch.Generator, samples: int,
                                terms: int | None) -> NLL:
        """The cross-entropy of the image's codes, in bits per code; no bits/dim: the VQ decoder is deterministic,
        so an image has no probability under codes + decoder, only its codes do."""
        codes = self.code_shape[0] * self.code_shape[1]
        nats = self.code_nll(x, labels if self.conditional else None)
        reason = (f"the VQ decoder is deterministic: an image has no probability under codes + decoder, only its "
                  f"{codes} codes do (bits_per_code)")
        return NLL(None, {"bits_per_code": nats.double() / codes / math.log(2)}, "code cross-entropy",
                   {"weights": "raw", "codes_per_image": codes, "codebook_size": self.first_stage.num_codes,
                    "reason": reason})

    def loss(self, batch) -> LossOutput:
        x, labels = batch
        codes = self.codes_of(x)
        logits = self.transformer(codes[:, :-1], labels if self.conditional else None)  # (B, T, vocab)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), codes.flatten())
        return LossOutput(nll, {"nll": nll})

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0, top_k: int | None = None) -> Tensor:
        """``n`` images in [0, 1]: codes drawn from the prior, decoded by the first stage.

        Args:
            labels: (n,) int64 classes for a conditional prior; None draws them uniformly
                (from ``generator``). An unconditional prior takes no labels.
            generator: source of every draw; the same seed gives the same images.
            temperature: > 0; below 1 gives safer, less varied samples.
            top_k: sample only among the k most likely codes at each position (None: all).
        """
        if self.conditional:
            if labels is None:
                labels = draws.randint(self.num_classes, (n,), generator=generator, device=self.device)
            labels = torch.as_tensor(labels, device=self.device, dtype=torch.long)
            if labels.shape != (n,) or labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"labels must be {n} integers in [0, {self.num_classes}), got {labels.tolist()}")
        elif labels is not None:
            raise ValueError("this prior is unconditional (num_classes is null): call sample() without labels")
        codes = self.transformer.generate(n, labels=labels, generator=generator, temperature=temperature, top_k=top_k)
        return to_unit_range(self.first_stage.decode_indices(codes.view(n, *self.code_shape)))
