"""lit_gen.nn.layers: one GroupNorm rule and one residual block for the U-Net, the codecs and the discriminator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_gen.models.vqvae import VQVAE
from lit_gen.nn.codec import ConvEncoder
from lit_gen.nn.discriminator import PatchDiscriminator
from lit_gen.nn.layers import ResBlock, group_norm, norm_groups
from lit_gen.nn.unet import UNet


def test_norm_groups_divide_the_width():
    assert norm_groups(128, 32) == 32
    assert norm_groups(12, 32) == 12
    assert norm_groups(48, 32) == 24
    assert 20 % norm_groups(20, 8) == 0
    assert group_norm(64, 8).num_groups == 8 and group_norm(64, 32, 1e-6).eps == 1e-6


def test_every_network_normalises_by_the_one_rule():
    # Widths where the earlier three rules disagreed (48: gcd with 32 gave 16; 12 in the plain codec gave 4).
    nets = [UNet(in_channels=1, base_channels=48, channel_mults=(1, 2), attention_resolutions=(4,), image_size=8),
            ConvEncoder(1, (48, 48), 8, num_res_blocks=1), ConvEncoder(1, (12, 24), 4, num_res_blocks=1),
            PatchDiscriminator(1, 24, 2)]
    norms = [m for net in nets for m in net.modules() if isinstance(m, nn.GroupNorm)]
    assert norms
    for m in norms:
        assert m.num_groups == norm_groups(m.num_channels, 32), (m.num_channels, m.num_groups)
    assert any(m.num_groups == 24 for m in nets[1].modules() if isinstance(m, nn.GroupNorm))
    assert any(m.num_groups == 12 for m in nets[2].modules() if isinstance(m, nn.GroupNorm))


def test_a_conditioned_block_starts_as_its_skip_path():
    torch.manual_seed(0)
    block = ResBlock(4, 8, emb_dim=6, zero_last=True)
    x, emb = torch.randn(2, 4, 5, 5), torch.randn(2, 6)
    assert torch.equal(block(x, emb), block.skip(x))  # the last convolution starts at zero, exactly
    plain = ResBlock(4)
    assert isinstance(plain.skip, nn.Identity) and plain.emb_proj is None and plain(x).shape == x.shape


def _random_block(conditioning: str, channels: int, groups: int) -> ResBlock:
    """A float64 block with every weight random (its zero-initialised last convolution included)."""
    block = ResBlock(channels, channels, emb_dim=6, conditioning=conditioning, max_groups=groups, zero_last=True).double()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.5)
    return block


def _change(block: ResBlock) -> float:
    """Largest change of the block's output when only its embedding changes (float64)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, block.conv1.in_channels, 5, 5, generator=generator, dtype=torch.float64)
    emb_a, emb_b = (torch.randn(2, 6, generator=generator, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        return float((block(x, emb_a) - block(x, emb_b)).abs().max())


@pytest.mark.parametrize("channels, groups", [(8, 8), (8, 4), (32, 32), (64, 32)])
def test_scale_shift_conditioning_moves_the_output_at_every_group_size(channels, groups):
    assert _change(_random_block("scale_shift", channels, groups)) > 1e-2


def test_an_added_embedding_is_erased_by_a_groupnorm_of_one_channel_per_group():
    # Ho et al.'s order: the per-channel bias goes in before norm2; one channel per group subtracts it exactly.
    erased = _change(_random_block("add", 8, 8))
    assert erased < 1e-12  # float64: exact up to roundoff, whatever the kernels
    assert _change(_random_block("add", 8, 4)) > 1e-2  # two channels per group keep their difference


def test_scale_shift_is_the_norm_output_scaled_and_shifted_per_channel():
    block = _random_block("scale_shift", 4, 2)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 3, 3, generator=generator, dtype=torch.float64)
    emb = torch.randn(1, 6, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        scale, shift = block.emb_proj(torch.nn.functional.silu(emb)).chunk(2, dim=1)
        h = block.norm2(block.conv1(torch.nn.functional.silu(block.norm1(x))))
        by_hand = block.skip(x) + block.conv2(torch.nn.functional.silu(h * (1 + scale[:, :, None, None])
                                                                        + shift[:, :, None, None]))
        assert torch.allclose(block(x, emb), by_hand, rtol=0, atol=1e-12)


def test_a_vq_checkpoint_written_with_the_sequential_block_names_still_loads():
    torch.manual_seed(0)
    model = VQVAE(channels=1, image_size=8, hidden_channels=8, num_res_blocks=1, num_downsamples=1,
                  quantizer={"name": "vq", "num_codes": 4, "code_dim": 4})
    state = model.state_dict()
    # The names the VQ codecs' residual block had: body.0 / 2 / 3 / 5 for norm1, conv1, norm2, conv2.
    renames = {"norm1.": "body.0.", "conv1.": "body.2.", "norm2.": "body.3.", "conv2.": "body.5."}
    old = {}
    for key, value in state.items():
        for new, before in renames.items():
            if f".{new}" in key and "encoder" in key or f".{new}" in key and "decoder" in key:
                key = key.replace(f".{new}", f".{before}")
                break
        old[key] = value
    assert any(".body.5." in k for k in old) and not any(".conv2." in k for k in old)
    fresh = VQVAE(channels=1, image_size=8, hidden_channels=8, num_res_blocks=1, num_downsamples=1,
                  quantizer={"name": "vq", "num_codes": 4, "code_dim": 4})
    fresh.load_state_dict(old)  # strict: every old name found its parameter
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
