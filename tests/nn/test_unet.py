"""The DDPM U-Net: shapes, conditioning, Ho et al.'s parameter count and image-size validation."""

import pytest
import torch
from torch import nn

from lit_gen.nn.unet import UNet


def randomised(net: UNet, seed: int = 0) -> UNet:
    """The net with every weight random: the zero-initialised output layers hide any dependence otherwise."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net


def tiny(**kwargs) -> UNet:
    args = dict(in_channels=1, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                attention_resolutions=(4,), image_size=8, groups=4)
    args.update(kwargs)
    return UNet(**args)


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({}, (2, 1, 8, 8)),
        ({"in_channels": 3, "out_channels": 6, "image_size": 16, "channel_mults": (1, 2, 2),
          "attention_resolutions": (8, 4), "num_res_blocks": 2}, (2, 3, 16, 16)),
        ({"base_channels": 12, "groups": 32}, (3, 1, 8, 8)),  # GroupNorm groups adapt to narrow widths
    ],
)
def test_output_has_the_input_shape(kwargs, shape):
    net = randomised(tiny(**kwargs))
    out = net(torch.randn(shape), torch.randint(0, 1000, (shape[0],)))
    assert out.shape == (shape[0], net.out_channels, *shape[2:])
    assert torch.isfinite(out).all()


def test_output_depends_on_the_timestep():
    net = randomised(tiny())
    x = torch.randn(1, 1, 8, 8).expand(2, -1, -1, -1)
    out = net(x, torch.tensor([3, 900]))
    assert not torch.allclose(out[0], out[1])


def test_a_fresh_net_predicts_zero():
    # Zero-initialised output layers (Ho et al.): training starts from the "predict 0" solution.
    out = tiny()(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]))
    assert torch.equal(out, torch.zeros_like(out))


def test_class_conditional_forward_uses_the_label_and_a_null_label():
    net = randomised(tiny(num_classes=10))
    x = torch.randn(1, 1, 8, 8).expand(3, -1, -1, -1)
    t = torch.full((3,), 50)
    out = net(x, t, torch.tensor([0, 9, 10]))  # 10 = the null label of classifier-free guidance
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    # No labels means unconditional, i.e. the null label.
    torch.testing.assert_close(net(x[:1], t[:1]), out[2:])


def test_unconditional_net_rejects_labels():
    with pytest.raises(ValueError, match="unconditional"):
        tiny()(torch.randn(1, 1, 8, 8), torch.tensor([1]), torch.tensor([0]))


def test_bad_image_size_names_the_sizes_that_work():
    with pytest.raises(ValueError) as err:
        UNet(in_channels=3, base_channels=8, channel_mults=(1, 2, 2), image_size=30, attention_resolutions=())
    message = str(err.value)
    assert "image_size 30 is not divisible by 4" in message
    assert "4, 8, 12, 16" in message and "fewer channel_mults" in message


def test_unreachable_attention_resolution_is_rejected():
    with pytest.raises(ValueError, match=r"attention_resolutions \[3\].*resolutions are \[8, 4\]"):
        tiny(attention_resolutions=(3,))


def test_ho_et_al_cifar10_architecture_has_35_7m_parameters():
    ho = dict(in_channels=3, base_channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2,
              attention_resolutions=(16,), dropout=0.1, image_size=32)
    net = UNet(**ho, conditioning="add")  # Ho et al. add the embedding: one projection row per channel
    count = sum(p.numel() for p in net.parameters())
    assert count == pytest.approx(35.7e6, rel=0.01)
    # Scale and shift need two rows per channel: each block's projection doubles, nothing else changes.
    projections = [m.emb_proj for m in net.modules() if getattr(m, "emb_proj", None) is not None]
    extra = sum(p.out_features * (p.in_features + 1) for p in projections)
    assert sum(p.numel() for p in UNet(**ho).parameters()) == count + extra
    attention = [m for m in net.modules() if type(m).__name__ == "SelfAttention"]
    assert len(attention) == 2 + 3 + 1  # 16x16 down (2), 16x16 up (3), middle (1)
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 32, 32), torch.tensor([999])).shape == (1, 3, 32, 32)


def test_dropout_is_active_only_in_training():
    net = randomised(tiny(dropout=0.5))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 6])
    net.eval()
    assert torch.equal(net(x, t), net(x, t))
    net.train()
    torch.manual_seed(0)
    a = net(x, t)
    assert not torch.allclose(a, net(x, t))
    assert isinstance(net.down[0][0].dropout, nn.Dropout)


def test_attention_heads_split_the_channels_and_keep_the_weights():
    from lit_gen.nn.unet import SelfAttention

    torch.manual_seed(0)
    one, four = SelfAttention(8, 4, heads=1), SelfAttention(8, 4, heads=4)
    four.load_state_dict(randomised(one).state_dict())  # same parameters whatever the head count
    x = torch.randn(2, 8, 4, 4)
    # Four heads by hand: each attends with its own 2 channels of q, k and v.
    q, k, v = one.qkv(one.norm(x)).reshape(2, 3, 8, 16).unbind(1)  # each (B, C, HW)
    heads = []
    for h in range(4):
        qh, kh, vh = (z[:, 2 * h:2 * h + 2].transpose(1, 2) for z in (q, k, v))  # (B, HW, 2)
        weights = torch.softmax(qh @ kh.transpose(1, 2) / 2**0.5, dim=-1)
        heads.append((weights @ vh).transpose(1, 2))
    expected = x + one.proj(torch.cat(heads, dim=1).reshape(2, 8, 4, 4))
    torch.testing.assert_close(four(x), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(one(x), four(x))


def test_attention_heads_must_divide_the_attended_widths():
    tiny(attention_heads=8)  # widths 8 (attended at 4x4) and 16 (middle)
    with pytest.raises(ValueError, match="attention_heads=3 does not divide the attended widths"):
        tiny(attention_heads=3)
