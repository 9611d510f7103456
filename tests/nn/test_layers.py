"""lit_gen.nn.layers: one GroupNorm rule and one residual block for the U-Net, the codecs and the discriminator."""

from __future__ import annotations

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


def test_a_conditioned_block_starts_as_its_skip_path_and_uses_the_embedding():
    torch.manual_seed(0)
    block = ResBlock(4, 8, emb_dim=6, zero_last=True)
    x, emb = torch.randn(2, 4, 5, 5), torch.randn(2, 6)
    assert torch.equal(block(x, emb), block.skip(x))  # the last convolution starts at zero
    nn.init.normal_(block.conv2.weight)
    assert not torch.allclose(block(x, emb), block(x, torch.zeros_like(emb)))
    plain = ResBlock(4)
    assert isinstance(plain.skip, nn.Identity) and plain.emb_proj is None and plain(x).shape == x.shape


def test_a_vq_checkpoint_written_with_the_sequential_block_names_still_loads():
    torch.manual_seed(0)
    model = VQVAE(channels=1, image_size=8, hidden_channels=8, num_res_blocks=1, num_downsamples=1, num_codes=4, code_dim=4)
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
    fresh = VQVAE(channels=1, image_size=8, hidden_channels=8, num_res_blocks=1, num_downsamples=1, num_codes=4, code_dim=4)
    fresh.load_state_dict(old)  # strict: every old name found its parameter
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
