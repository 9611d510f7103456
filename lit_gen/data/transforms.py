"""Pixel conversions shared by the datamodules: uint8 <-> [-1, 1], batched resizing, crop-and-resize.

Every datamodule stores or decodes images as uint8 and converts them to float in [-1, 1] only when an
item is read, so in-memory datasets stay four times smaller than their float copies.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

# Resizing 50,000 CIFAR images at once would hold ~600 MB of float32; chunks keep the peak small.
_RESIZE_CHUNK = 4096


def to_signed_unit(images: Tensor) -> Tensor:
    """uint8 pixels in [0, 255] -> float32 in [-1, 1] (0 -> -1, 255 -> 1)."""
    return images.float().div_(127.5).sub_(1.0)


def resize_uint8(images: Tensor, size: int) -> Tensor:
    """Resize uint8 images (N, C, H, W) to (N, C, size, size) with antialiased bilinear filtering.

    Antialiasing matters when shrinking (CelebA, CIFAR to 16x16): plain bilinear would alias
    fine detail. The result is rounded back to uint8.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start:start + _RESIZE_CHUNK].float()
        resized = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear",
                                                  antialias=True, align_corners=False)
        out[start:start + _RESIZE_CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def center_crop_box(width: int, height: int, crop_size: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of a centred ``crop_size`` square inside a width x height image."""
    left = (width - crop_size) // 2
    top = (height - crop_size) // 2
    return left, top, left + crop_size, top + crop_size


def center_crop_resize(image: Image.Image, crop_size: int, image_size: int) -> Tensor:
    """A PIL image -> uint8 RGB tensor (3, image_size, image_size): centred square crop, then resize.

    PIL's bilinear filter widens its support when shrinking, so the resize is antialiased. The crop
    comes first (not ``resize(box=...)``, whose filter reads pixels beyond the box), so nothing
    outside the square leaks into the border pixels.
    """
    if min(image.size) < crop_size:
        raise ValueError(f"image of {image.size[0]}x{image.size[1]} is smaller than the {crop_size}x{crop_size} crop")
    if image.mode != "RGB":
        image = image.convert("RGB")
    square = image.crop(center_crop_box(*image.size, crop_size))
    resized = square.resize((image_size, image_size), Image.Resampling.BILINEAR)
    # np.array copies, so the tensor owns writable memory (np.asarray of a PIL image is read-only).
    return torch.from_numpy(np.array(resized)).permute(2, 0, 1).contiguous()
