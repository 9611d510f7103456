"""lit_gen: generative image models (AE, VAE, VQ-VAE, VQ-GAN, diffusion) on PyTorch Lightning.

Importing the package starts nothing: no W&B, no datasets, no device work.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
