"""Checks that a diffusion network depends on everything it is given: every test that builds one uses them.

A U-Net that ignores t (or the class label) still returns tensors of the right shape, so a test that
checks only formats passes on it. ``blind_blocks`` finds conditioned residual blocks whose output does
not move with their embedding; ``assert_sees_conditioning`` also checks the whole network end to end.
Both run in float64 on a copy whose zero-initialised layers get random weights (a zero last
convolution would hide any dependence), and decide with a margin far above float64 roundoff.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lit_gen.nn.layers import ResBlock
from lit_gen.nn.unet import UNet

#: Relative change below which an output counts as unmoved: float64 roundoff is ~1e-16, a real dependence ~1e-1.
MARGIN = 1e-8


def _unet_of(model) -> UNet:
    net = getattr(model, "unet", model)
    assert isinstance(net, UNet), f"expected a U-Net or a diffusion model, got {type(model).__name__}"
    return net


def _probe_copy(net: nn.Module, seed: int = 0) -> nn.Module:
    """A float64 copy in eval mode whose all-zero parameters are redrawn (so no zero layer masks a path)."""
    probe = copy.deepcopy(net).double().eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in probe.parameters():
            if not bool(p.any()):
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.1)
    return probe


def _moved(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) > MARGIN * max(1.0, float(a.abs().max()))


def blind_blocks(model) -> list[str]:
    """Names of the conditioned residual blocks whose output does not change with their embedding."""
    probe = _probe_copy(_unet_of(model))
    generator = torch.Generator().manual_seed(1)
    blind = []
    for name, block in probe.named_modules():
        if not isinstance(block, ResBlock) or block.emb_proj is None:
            continue
        x = torch.randn(2, block.conv1.in_channels, 4, 4, generator=generator, dtype=torch.float64)
        emb_a, emb_b = (torch.randn(2, block.emb_proj.in_features, generator=generator, dtype=torch.float64)
                        for _ in range(2))
        with torch.no_grad():
            if not _moved(block(x, emb_a), block(x, emb_b)):
                blind.append(name)
    return blind


def assert_sees_conditioning(model) -> None:
    """Every conditioned block and the whole network move with t, and with the label when the net is conditional."""
    net = _unet_of(model)
    blind = blind_blocks(net)
    assert not blind, f"residual blocks that never see their embedding (t / label): {blind}"
    probe = _probe_copy(net)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, net.in_channels, net.image_size, net.image_size, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        assert _moved(probe(x, torch.tensor([10, 10])), probe(x, torch.tensor([700, 700]))), "the network ignores t"
        if net.num_classes is not None:
            t = torch.tensor([300, 300])
            a = probe(x, t, torch.tensor([0, 0]))
            assert _moved(a, probe(x, t, torch.tensor([1, 1]))), "the network ignores the class label"
