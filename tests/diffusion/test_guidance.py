"""Classifier-free guidance: the Ho & Salimans combination, batched in one forward pass."""

import pytest
import torch

from lit_gen.diffusion.guidance import guided
from tests.diffusion.sampling import sample_loop
from lit_gen.diffusion.schedule import NoiseSchedule

NULL = 10


class ToyNet:
    """A label-dependent stand-in for a conditional network that records its batch sizes."""

    def __init__(self):
        self.batch_sizes = []

    def __call__(self, x, t, labels):
        self.batch_sizes.append(x.shape[0])
        return 0.5 * x + labels.float().view(-1, 1, 1, 1) * 0.1 + t.float().view(-1, 1, 1, 1) * 0.01


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 1, 3, 3, generator=g), torch.tensor([3, 7, 7, 0]), torch.tensor([0, 1, 2, 3])


def test_guidance_1_is_the_conditional_prediction_from_one_unbatched_pass(inputs):
    x, t, labels = inputs
    net = ToyNet()
    out = guided(net, labels, NULL, 1.0)(x, t)
    assert net.batch_sizes == [4]  # no unconditional half: it would be multiplied by zero
    torch.testing.assert_close(out, net(x, t, labels))


def test_guidance_0_is_the_unconditional_prediction(inputs):
    x, t, labels = inputs
    net = ToyNet()
    torch.testing.assert_close(guided(net, labels, NULL, 0.0)(x, t), net(x, t, torch.full_like(labels, NULL)))


@pytest.mark.parametrize("scale", [0.5, 2.0, 3.0])
def test_guidance_follows_ho_salimans_in_one_batched_pass(inputs, scale):
    x, t, labels = inputs
    net = ToyNet()
    out = guided(net, labels, NULL, scale)(x, t)
    assert net.batch_sizes == [8]  # conditional and unconditional halves in one forward pass
    cond, uncond = net(x, t, labels), net(x, t, torch.full_like(labels, NULL))
    torch.testing.assert_close(out, uncond + scale * (cond - uncond))


def test_guided_model_plugs_into_the_sampler(inputs):
    _, _, labels = inputs
    s = NoiseSchedule(10)
    out = sample_loop(guided(ToyNet(), labels, NULL, 2.0), s, (4, 1, 3, 3), steps=5,
                      generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 1, 3, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("scale", [-1.0, float("nan"), float("inf")])
def test_bad_guidance_scale_raises(inputs, scale):
    with pytest.raises(ValueError, match="guidance scale must be a finite number >= 0"):
        guided(ToyNet(), inputs[2], NULL, scale)
