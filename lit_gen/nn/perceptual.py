"""LPIPS perceptual distance (Zhang et al. 2018) as a training loss, built on torchmetrics.

torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` ships the calibrated linear heads; the
ImageNet backbone (VGG16 or AlexNet) comes from torchvision's checkpoint cache,
``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch/hub/checkpoints/``), or from a file the
config names. We look for that file *before* building anything: without it torchvision would try
to download it, which hangs or fails late on an offline cluster node.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from lit_gen.errors import ConfigError

#: The torchvision weights each LPIPS backbone needs.
_BACKBONE_WEIGHTS = {"vgg": "VGG16_Weights", "alex": "AlexNet_Weights"}

#: Smallest image side each backbone accepts (its pooling would empty smaller feature maps).
MIN_IMAGE_SIZE = {"vgg": 16, "alex": 32}


def backbone_url(net_type: str) -> str:
    """Download address of the torchvision backbone ``net_type`` ("vgg" or "alex") uses."""
    import torchvision

    return getattr(torchvision.models, _BACKBONE_WEIGHTS[net_type]).DEFAULT.url


def backbone_filename(net_type: str) -> str:
    """File name torchvision caches the backbone under, e.g. ``vgg16-397923af.pth``."""
    return backbone_url(net_type).rsplit("/", 1)[-1]


def find_backbone_weights(net_type: str, weights_path: str | None = None) -> Path:
    """The backbone checkpoint to use; a ConfigError naming the file and where it goes when absent."""
    if net_type not in _BACKBONE_WEIGHTS:
        raise ConfigError(f"perceptual net_type must be one of {sorted(_BACKBONE_WEIGHTS)}, got {net_type!r}")
    name = backbone_filename(net_type)
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"LPIPS backbone weights not found at the configured path {str(path)!r}. "
                f"It must be torchvision's {name} (from {backbone_url(net_type)})."
            )
        return path
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    path = cache / name
    if not path.is_file():
        raise ConfigError(
            f"LPIPS ({net_type}) needs torchvision's backbone weights {name}, which are not in {cache}/. "
            f"On a machine with internet, download {backbone_url(net_type)} and copy it to "
            f"{path} (set TORCH_HOME to move the cache), or pass the file's path as weights_path."
        )
    return path


@contextlib.contextmanager
def _hub_dir_holding(path: Path, filename: str):
    """Point torch.hub at a temporary cache that holds ``path`` under torchvision's file name."""
    previous = getattr(torch.hub, "_hub_dir", None)
    with tempfile.TemporaryDirectory() as hub:
        os.makedirs(os.path.join(hub, "checkpoints"))
        os.symlink(path.resolve(), os.path.join(hub, "checkpoints", filename))
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            # Restore exactly (None means "follow TORCH_HOME"), which set_dir cannot express.
            torch.hub._hub_dir = previous


class PerceptualLoss(nn.Module):
    """Per-image LPIPS distance between two batches in [-1, 1]; frozen, always in eval mode.

    Grayscale images are repeated to three channels. Gradients flow to the inputs only.

    Args:
        net_type ("vgg" | "alex", default "vgg"): backbone; "vgg" is the usual choice for a loss.
        weights_path (str | None, default None): torchvision backbone checkpoint; None looks in
            torchvision's cache (``$TORCH_HOME/hub/checkpoints/``).

    Raises:
        ConfigError: the backbone file is missing (checked before any download could start).
    """

    def __init__(self, net_type: Literal["vgg", "alex"] = "vgg", weights_path: str | None = None) -> None:
        super().__init__()
        path = find_backbone_weights(net_type, weights_path)
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        context = (_hub_dir_holding(path, backbone_filename(net_type)) if weights_path is not None
                   else contextlib.nullcontext())
        with context:
            metric = LearnedPerceptualImagePatchSimilarity(net_type=net_type)
        # The metric's network gives per-image distances without accumulating metric state.
        self.net = metric.net
        self.net.requires_grad_(False)
        self.net_type = net_type

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """LPIPS distance (B,) between images ``x`` and ``y`` (B, C, H, W) in [-1, 1], C in {1, 3}."""
        if min(x.shape[-2:]) < MIN_IMAGE_SIZE[self.net_type]:
            raise ValueError(f"LPIPS-{self.net_type} needs images of at least "
                             f"{MIN_IMAGE_SIZE[self.net_type]} pixels, got {tuple(x.shape[-2:])}")
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        return self.net(x, y).flatten()

    def train(self, mode: bool = True) -> PerceptualLoss:
        # Dropout in the linear heads and the frozen backbone must never switch to training.
        return super().train(False)
