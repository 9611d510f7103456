"""lit_gen.nn.perceptual: LPIPS from local backbone weights only, with a clear error when they are missing."""

from __future__ import annotations

import pytest
import torch
import torchvision

from lit_gen.errors import ConfigError
from lit_gen.nn.perceptual import PerceptualLoss, backbone_filename


def fake_alexnet_checkpoint(path):
    """A file in torchvision's AlexNet format: random conv features, and the (unused) classifier as
    expanded zeros so the file stays small."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.alexnet().state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(s, generator=generator) * 0.1 if k.startswith("features") else torch.zeros(1).expand(s))
             for k, s in shapes.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_missing_backbone_weights_name_the_file_and_where_it_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        PerceptualLoss("vgg")
    message = str(info.value)
    assert "vgg16-397923af.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "weights_path" in message
    with pytest.raises(ConfigError, match="configured path"):
        PerceptualLoss("alex", weights_path=str(tmp_path / "nowhere.pth"))


def test_lpips_from_cached_or_configured_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    cached = fake_alexnet_checkpoint(tmp_path / "home" / "hub" / "checkpoints" / backbone_filename("alex"))
    lpips = PerceptualLoss("alex")
    assert not any(p.requires_grad for p in lpips.parameters())
    torch.manual_seed(0)
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    d = lpips(x, y)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(lpips(y, y), torch.zeros(2))
    d.sum().backward()
    assert x.grad.abs().sum() > 0  # usable as a loss
    gray = lpips(x[:, :1], y[:, :1])  # grayscale is repeated to three channels
    assert torch.allclose(gray, lpips(x[:, :1].expand(-1, 3, -1, -1), y[:, :1].expand(-1, 3, -1, -1)))

    elsewhere = cached.rename(tmp_path / "my_alexnet.pth")
    configured = PerceptualLoss("alex", weights_path=str(elsewhere))
    assert torch.allclose(configured(x, y), d)
    assert torch.hub.get_dir() == str(tmp_path / "home" / "hub")  # the temporary hub dir was undone
