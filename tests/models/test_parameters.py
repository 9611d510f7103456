"""Parameter counts: the trained network only, with EMA copies and frozen parts apart."""

from __future__ import annotations

from torch import nn

from lit_gen.models.diffusion import Diffusion
from lit_gen.models.parameters import ParameterCounts, count_parameters
from lit_gen.nn.quantizers import VectorQuantizer
from lit_gen.comparing.run_report import describe_parameters


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_diffusion_counts_the_unet_once_and_its_ema_copy_apart():
    model = Diffusion(channels=1, image_size=8, base_channels=16, channel_mults=(1, 2), attention_resolutions=(), norm_groups=8)
    counts = count_parameters(model)
    assert counts.trained == _numel(model.unet)
    assert counts.ema == _numel(model.unet)
    assert counts.frozen == 0
    assert counts.total == _numel(model)
    assert describe_parameters({"parameter_counts": counts.as_dict()}) == f"{counts.trained:,} parameters (+{counts.ema:,} EMA copy)"


def test_diffusion_without_ema_has_no_copy():
    model = Diffusion(channels=1, image_size=8, base_channels=16, channel_mults=(1, 2), attention_resolutions=(),
                      norm_groups=8, ema={"name": "exponential", "decay": 0.0})
    assert count_parameters(model) == ParameterCounts(_numel(model.unet), 0, 0)


def test_frozen_parts_and_ema_codebooks():
    frozen = nn.Linear(3, 4).requires_grad_(False)
    model = nn.ModuleDict({"frozen": frozen, "trained": nn.Linear(2, 2), "vq": VectorQuantizer(8, 4, codebook_ema_decay=0.99)})
    counts = count_parameters(model)
    # The EMA codebook is learned (by its own rule), so it counts as trained.
    assert counts == ParameterCounts(trained=6 + 32, ema=0, frozen=16)
    assert describe_parameters({"parameter_counts": counts.as_dict()}) == "38 parameters (+16 frozen)"
