"""Image grids as PNG files (used by the training callback and the sample CLI)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid


def grid_image(images: Tensor, nrow: int | None = None, scale: int = 0, padding: int = 1) -> Image.Image:
    """A PIL image of ``images`` (N, C, H, W) in [0, 1] laid out ``nrow`` per row.

    ``scale`` enlarges pixels (nearest neighbour) so tiny images stay visible; 0 picks a factor
    that makes the grid at least 256 pixels wide.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    images = images.detach().float().cpu().clamp(0, 1)
    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=1.0)
    array = (grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 or images.shape[1] == 1 else array)
    if scale == 0:
        scale = max(1, int(math.ceil(256 / picture.width)))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return picture


def save_grid(images: Tensor, path: str | Path, nrow: int | None = None, scale: int = 0) -> Path:
    """Write ``images`` in [0, 1] as one PNG grid and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    grid_image(images, nrow=nrow, scale=scale).save(tmp)
    tmp.replace(path)
    return path
