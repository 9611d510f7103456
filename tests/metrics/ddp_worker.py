"""A DDP rank for tests/metrics/test_fid.py, in a module of its own so spawned processes import little."""

from __future__ import annotations

import os

import torch

from lit_gen.metrics.features import FeatureExtractor, Features


class LinearFeatures(FeatureExtractor):
    """A fixed random projection of flattened 4x4 grey images: a cheap stand-in for a network."""

    name = "linear-test"

    def __init__(self, dim: int = 6, seed: int = 0) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(16, dim)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(dim, 16, generator=torch.Generator().manual_seed(seed)))
            self.proj.bias.zero_()
        self.num_features = dim

    def extract_batch(self, images01):
        return Features(self.proj(images01.flatten(1)), None)


def random_features(n: int, d: int, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """(n, d) float64 features with correlated dimensions, the same for a given seed."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix) * scale + shift


def ddp_rank(rank: int, world: int, port: int, out_dir: str) -> None:
    """Each rank adds its own share of the same features; every rank saves the synced FID."""
    import torch.distributed as dist

    from lit_gen.metrics.fid import FrechetDistance

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        real, fake = random_features(300, 8, seed=0), random_features(301, 8, seed=1, scale=0.8)
        metric = FrechetDistance(LinearFeatures(dim=8))
        metric.update_features(real[rank::world], real=True)
        metric.update_features(fake[rank::world], real=False)
        value = float(metric.compute())  # torchmetrics sums the ranks' sums first
        torch.save({"value": value, "count": metric.computed_fake_count}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
