"""Inception FID parity: lit_gen's whole FID path against torch-fidelity's own, on the same weights and images.

No real weights file can be downloaded here, so both sides load one seeded random Inception-v3
state dict from the same file. The point is the pipeline, not the network: uint8 quantisation,
grey -> RGB, the TF1-compatible resize to 299, the 2048-d pool3 features, float64 statistics and
the Fréchet distance must give torch-fidelity's value to 1e-3 relative.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

torch_fidelity = pytest.importorskip("torch_fidelity", reason="the parity reference is torch-fidelity itself")

from lit_gen.metrics.features import build_extractor, random_inception_weights  # noqa: E402
from lit_gen.metrics.fid import FrechetDistance  # noqa: E402
from lit_gen.metrics.reference import dataset_statistics  # noqa: E402


class Uint8Images(Dataset):
    """What torch-fidelity reads: (3, H, W) uint8 tensors."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def smooth_images(n: int, channels: int, size: int, seed: int, *, contrast: float, offset: float) -> torch.Tensor:
    """``n`` uint8 images (n, channels, size, size): blurred noise, so the resize has structure to interpolate."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, size // 8, size // 8, generator=generator)
    fine = torch.rand(n, channels, size, size, generator=generator)
    upsampled = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    pixels = offset + contrast * (0.8 * upsampled + 0.2 * fine - 0.5)
    return pixels.clamp(0, 1).mul(255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """One seeded random Inception-v3 state dict in a file both sides load.

    PyTorch's default init shrinks activations about threefold per layer, so through Inception's
    depth the pool3 features come out near 1e-6 and the FID near 1e-13, where rounding, not the
    pipeline, decides equality. He-normal convolutions keep features of order 0.1 and the FID of
    order 10, where a wrong resize or quantisation moves the value by 0.5% or more.
    """
    path = random_inception_weights(tmp_path_factory.mktemp("inception") / "random_inception.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(17)
    for name, value in state.items():
        if value.ndim == 4:  # convolution kernels (out, in, kh, kw)
            state[name] = torch.randn(value.shape, generator=generator) * math.sqrt(2.0 / value[0].numel())
    torch.save(state, path)
    return path


def fidelity_fid(weights, real: torch.Tensor, fake: torch.Tensor) -> float:
    """torch-fidelity's FID of two uint8 RGB sets, through its own extractor and statistics."""
    metrics = torch_fidelity.calculate_metrics(
        input1=Uint8Images(real), input2=Uint8Images(fake), fid=True, cuda=False, cache=False, verbose=False,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(weights), batch_size=16,
        save_cpu_ram=True,  # also means no DataLoader worker processes for a few in-memory images
    )
    return float(metrics["frechet_inception_distance"])


def lit_gen_fid(weights, real_pm1: torch.Tensor, fake01: torch.Tensor) -> float:
    """lit_gen's FID as ``lit_gen.evaluate`` and the FID callback take it: the real side's statistics
    from a dataset of [-1, 1] images (``dataset_statistics``, streamed in batches), the generated
    side's from [0, 1] images through ``FrechetDistance`` against those statistics."""
    extractor = build_extractor("inception", fid_weights_path=weights)
    dataset = TensorDataset(real_pm1, torch.zeros(real_pm1.shape[0], dtype=torch.int64))
    reference = dataset_statistics(dataset, extractor, batch_size=5)  # batches that do not divide the count
    metric = FrechetDistance(extractor, reference.stats)
    metric.update(fake01, real=False)
    return float(metric.compute())


@pytest.mark.slow
def test_fid_equals_torch_fidelity_on_the_same_weights_and_images(random_weights):
    # Colour real images against grey generated ones, 48x48 each: the resize, the grey -> RGB repeat
    # and the quantisation all act. 8 images a side already separate the pipelines (an antialiased
    # resize moves the FID by +0.6%, truncating instead of rounding by -2%); most of the test's time
    # is the two 2048x2048 eigen-decompositions, which more images would not shorten.
    real_u8 = smooth_images(8, 3, 48, seed=0, contrast=1.0, offset=0.5)
    fake_grey_u8 = smooth_images(8, 1, 48, seed=1, contrast=0.6, offset=0.45)
    # Real images reach lit_gen as a datamodule gives them, in [-1, 1]. Generated ones come as floats
    # in [0, 1] the way a model produces them: off the 8-bit grid by less than half a level, so only
    # the rounding to 256 levels brings them back to the bytes torch-fidelity reads.
    real_pm1 = real_u8.float() / 127.5 - 1.0
    jitter = torch.empty(fake_grey_u8.shape, dtype=torch.float64).uniform_(-0.45, 0.45, generator=torch.Generator().manual_seed(2))
    fake01 = ((fake_grey_u8.double() + jitter) / 255).float().clamp(0, 1)

    expected = fidelity_fid(random_weights, real_u8, fake_grey_u8.expand(-1, 3, -1, -1).contiguous())
    got = lit_gen_fid(random_weights, real_pm1, fake01)
    assert expected > 1.0  # well-scaled features (see random_weights), not a distance made of rounding
    assert got == pytest.approx(expected, rel=1e-3)
