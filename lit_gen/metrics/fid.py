"""Fréchet distance (FID) on streamed feature statistics, plus KID and IS, as torchmetrics metrics.

FID compares two Gaussians fitted to features of real and generated images::

    FID = |mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))

Statistics are running sums in float64 (sum of features, sum of outer products, count), so memory
stays flat however many images are measured, and under DDP torchmetrics sums each rank's sums:
the result equals the one-process value on the same images. The matrix square root is taken in
the symmetric form (R^T S_g R with R R^T = S_r), whose eigenvalues are real and non-negative,
instead of the general eigen-decomposition of S_r S_g that can return complex noise.

``FrechetDistance`` is torchmetrics' ``FrechetInceptionDistance`` over a lit_gen feature extractor
(Inception or a domain classifier), with cached reference statistics for the real side.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import Tensor
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from lit_gen.errors import EvaluationError
from lit_gen.metrics.features import FeatureExtractor


class GaussianStats(NamedTuple):
    """Mean (D,) and unbiased covariance (D, D), both float64 on the CPU, of ``count`` feature vectors."""

    mean: Tensor
    cov: Tensor
    count: int


def stats_from_sums(total: Tensor, outer: Tensor, count: int | Tensor) -> GaussianStats:
    """Mean and covariance from the running sums sum(x) and sum(x x^T) of ``count`` vectors."""
    n = int(count)
    if n < 2:
        raise EvaluationError(f"a covariance needs at least 2 images, got {n}")
    total, outer = total.detach().double().cpu(), outer.detach().double().cpu()
    mean = total / n
    cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
    return GaussianStats(mean, (cov + cov.T) / 2, n)


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64."""
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64).cpu(), torch.as_tensor(mu2, dtype=torch.float64).cpu()
    sigma1 = torch.as_tensor(sigma1, dtype=torch.float64).cpu()
    sigma2 = torch.as_tensor(sigma2, dtype=torch.float64).cpu()
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu {tuple(mu1.shape)}/{tuple(mu2.shape)}, "
                         f"sigma {tuple(sigma1.shape)}/{tuple(sigma2.shape)}")
    # tr((S1 S2)^(1/2)) = sum of sqrt(eigenvalues of R^T S2 R) for any R with R R^T = S1: the same
    # eigenvalues as S1 S2, but of a symmetric PSD matrix, so eigvalsh is exact where eigvals(S1 S2)
    # returns complex noise. R is the Cholesky factor (cheap) or, for a singular S1, its square root.
    sigma1 = (sigma1 + sigma1.T) / 2
    root, info = torch.linalg.cholesky_ex(sigma1)
    if int(info) != 0:
        w, v = torch.linalg.eigh(sigma1)
        root = (v * w.clamp(min=0).sqrt()) @ v.T
    middle = root.T @ sigma2 @ root
    tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    value = diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2.0 * tr_covmean
    return max(float(value), 0.0)  # >= 0 mathematically; clamps rounding of identical sets


def frechet_distance_of(a: GaussianStats, b: GaussianStats) -> float:
    """``frechet_distance`` of two ``GaussianStats``."""
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


class FeatureMoments:
    """Running float64 sums of feature vectors (one process; the metrics below sync across DDP ranks)."""

    def __init__(self, num_features: int) -> None:
        self.total = torch.zeros(num_features, dtype=torch.float64)
        self.outer = torch.zeros(num_features, num_features, dtype=torch.float64)
        self.count = 0

    def update(self, features: Tensor) -> None:
        f = features.detach().double()
        if f.ndim != 2 or f.shape[1] != self.total.shape[0]:
            raise EvaluationError(f"expected features of shape (N, {self.total.shape[0]}), got {tuple(f.shape)}")
        self.total = self.total.to(f.device) + f.sum(0)
        self.outer = self.outer.to(f.device) + f.T @ f
        self.count += f.shape[0]

    def stats(self) -> GaussianStats:
        return stats_from_sums(self.total, self.outer, self.count)


class FrechetDistance(FrechetInceptionDistance):
    """torchmetrics FID over a lit_gen ``FeatureExtractor``, with optional cached reference statistics.

    ``update(x, real)`` takes images (N, C, H, W) in [0, 1], whose features it extracts, or features
    (N, D) computed elsewhere (one extractor pass can then feed FID, KID and IS). With
    ``reference`` set, the real side comes from those statistics and not from real-image updates.
    Under DDP, ``compute()`` sums every rank's fake-image sums before the distance is taken.

    Args:
        extractor (FeatureExtractor): the feature network.
        reference (GaussianStats | None, default None): statistics of the real images.
    """

    def __init__(self, extractor: FeatureExtractor, reference: GaussianStats | None = None, **kwargs) -> None:
        super().__init__(feature=extractor, normalize=True, reset_real_features=False, **kwargs)
        self.reference = reference
        #: Generated images behind the last ``compute()``, summed over DDP ranks.
        self.computed_fake_count = 0

    def update(self, imgs: Tensor, real: bool) -> None:
        """Add images (N, C, H, W) in [0, 1] or their features (N, D) to the real or generated sums."""
        f = (imgs if imgs.ndim == 2 else self.inception.extract(imgs).features).detach().double()
        if f.shape[1] != self.inception.num_features:
            raise EvaluationError(f"expected {self.inception.num_features} features per image, got {f.shape[1]}")
        if real:
            self.real_features_sum += f.sum(0)
            self.real_features_cov_sum += f.T @ f
            self.real_features_num_samples += f.shape[0]
        else:
            self.fake_features_sum += f.sum(0)
            self.fake_features_cov_sum += f.T @ f
            self.fake_features_num_samples += f.shape[0]

    def update_features(self, features: Tensor, real: bool = False) -> None:
        """Add (N, D) features of real or generated images (``update`` through torchmetrics' bookkeeping)."""
        self.update(features, real)

    def fake_stats(self) -> GaussianStats:
        return stats_from_sums(self.fake_features_sum, self.fake_features_cov_sum, self.fake_features_num_samples)

    def real_stats(self) -> GaussianStats:
        if self.reference is not None:
            return self.reference
        return stats_from_sums(self.real_features_sum, self.real_features_cov_sum, self.real_features_num_samples)

    def compute(self) -> Tensor:
        """The distance as a float64 scalar tensor (every DDP rank gets the same value)."""
        # torchmetrics runs this on the synced states and restores each rank's own states afterwards.
        self.computed_fake_count = int(self.fake_features_num_samples)
        return torch.tensor(frechet_distance_of(self.real_stats(), self.fake_stats()), dtype=torch.float64)


def _seeded(compute, seed: int):
    # torchmetrics draws its KID subsets and IS splits from the global RNG: fork it so results are
    # reproducible and nothing else's random stream moves.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return compute()


class KernelDistance(KernelInceptionDistance):
    """torchmetrics KID (polynomial-kernel MMD, averaged over random subsets) fed with precomputed features.

    It keeps every feature vector (KID has no running-sum form): memory grows with the image count.
    """

    def __init__(self, extractor: FeatureExtractor, subsets: int = 100, subset_size: int = 1000) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            super().__init__(feature=extractor, subsets=subsets, subset_size=subset_size, normalize=True)

    def update(self, imgs: Tensor, real: bool) -> None:
        """Add images (N, C, H, W) in [0, 1] or their features (N, D)."""
        features = imgs if imgs.ndim == 2 else self.inception.extract(imgs).features
        (self.real_features if real else self.fake_features).append(features.detach().float())

    def update_features(self, features: Tensor, real: bool = False) -> None:
        self.update(features, real)

    def compute_seeded(self, seed: int) -> tuple[float, float]:
        mean, std = _seeded(self.compute, seed)
        return float(mean), float(std)


class ClassScore(InceptionScore):
    """torchmetrics Inception Score computed from class logits (Inception's or a domain classifier's)."""

    def __init__(self, extractor: FeatureExtractor, splits: int = 10) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            super().__init__(feature=extractor, splits=splits, normalize=False)

    def update(self, imgs: Tensor) -> None:
        """Add images (N, C, H, W) in [0, 1] or class logits (N, K): the score uses logits, not features."""
        logits = imgs if imgs.ndim == 2 else self.inception.extract(imgs).logits
        self.features.append(logits.detach().float())

    def update_logits(self, logits: Tensor) -> None:
        self.update(logits)

    def compute_seeded(self, seed: int) -> tuple[float, float]:
        mean, std = _seeded(self.compute, seed)
        return float(mean), float(std)
