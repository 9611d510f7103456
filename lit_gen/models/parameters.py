"""How many parameters a model has, split by what happens to them during training.

A diffusion model holds a second copy of its U-Net (the EMA average) and latent diffusion or a code prior a
frozen first stage; counting them as model size doubles it. Everywhere lit_gen shows a size it
shows ``trained`` and lists the other two apart (``lit_gen.comparing.run_report.describe_parameters`` words it).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

from lit_gen.nn.ema import EMA


class ParameterCounts(NamedTuple):
    """Parameter counts of a model.

    ``trained``: learned during this run, by the optimizer or by a rule of their own (a codebook
    kept as an EMA of its assigned vectors); ``ema``: averaged copies used for sampling;
    ``frozen``: never changed (a first-stage autoencoder, a perceptual network).
    """

    trained: int
    ema: int
    frozen: int

    @property
    def total(self) -> int:
        return self.trained + self.ema + self.frozen

    def as_dict(self) -> dict[str, int]:
        return {"trained": self.trained, "ema": self.ema, "frozen": self.frozen}


def count_parameters(model: nn.Module) -> ParameterCounts:
    """Split ``model``'s parameters into trained, EMA copies and frozen ones (shared tensors count once)."""
    ema_ids: set[int] = set()
    learned_without_gradients: set[int] = set()
    for module in model.modules():
        if isinstance(module, EMA):
            ema_ids.update(id(p) for p in module.parameters())
        # Parameters a module updates by its own rule (the quantizer's EMA codebook) are trained.
        for param in getattr(module, "parameters_learned_without_gradients", lambda: ())():
            learned_without_gradients.add(id(param))
    trained = ema = frozen = 0
    seen: set[int] = set()
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        if id(param) in ema_ids:
            ema += param.numel()
        elif param.requires_grad or id(param) in learned_without_gradients:
            trained += param.numel()
        else:
            frozen += param.numel()
    return ParameterCounts(trained, ema, frozen)
