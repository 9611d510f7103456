"""Fully connected stacks (the classic MNIST autoencoder is one of each)."""

from __future__ import annotations

from torch import nn


def mlp(sizes: list[int], *, final_activation: nn.Module | None = None) -> nn.Sequential:
    """Linear layers through ``sizes`` with ReLU between them; the last layer is left linear.

    ``mlp([784, 128, 64, 12, 3])`` is the classic encoder: its bottleneck has no activation so
    the latent space is free to use every direction.
    """
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least an input and an output size, got {sizes}")
    layers: list[nn.Module] = []
    for i, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    if final_activation is not None:
        layers.append(final_activation)
    return nn.Sequential(*layers)
