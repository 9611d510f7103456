"""Does a generator copy its training images? Precision, recall and nearest-neighbour distances on features.

FID alone cannot tell a model that reproduces its training set from one that has learnt the data
distribution: against the training images, a copying model scores best. Two measures tell them
apart, both on the same features as FID:

- **Precision and recall** (Kynkäänniemi et al. 2019, "Improved precision and recall metric for
  assessing generative models", section 3): each real feature vector gets a ball reaching its k-th
  nearest real neighbour; precision is the share of generated vectors inside some real ball, recall
  the share of real vectors inside some generated ball (balls of the generated set, built the same way).
- **Nearest-neighbour ratio**: the median distance from each generated image to its nearest
  training image, divided by the same median for real images the model never saw. About 1 for a model
  whose samples are as new as unseen real data; well below 1 for one that returns training images
  (a copy has distance 0). ``copies`` is the share of samples nearer to a training image than the
  nearest 1% of unseen real images are.

Distances are Euclidean, computed in float64 in blocks so memory stays bounded.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

#: Rows per block of a distance matrix (a block is BLOCK x the other set's size, float64).
BLOCK = 1024


class PrecisionRecall(NamedTuple):
    """Kynkäänniemi et al.'s precision and recall of a generated set against a real one, with their k."""

    precision: float
    recall: float
    k: int


class NearestNeighbours(NamedTuple):
    """Distances to the nearest training image: generated against unseen real images."""

    ratio: float
    generated_median: float
    heldout_median: float
    copies: float


def _check(name: str, features: Tensor, width: int | None = None) -> Tensor:
    if features.ndim != 2 or features.shape[0] < 2 or (width is not None and features.shape[1] != width):
        want = f"(N >= 2, {width})" if width is not None else "(N >= 2, D)"
        raise ValueError(f"{name}: expected features of shape {want}, got {tuple(features.shape)}")
    return features.detach().to(torch.float64)


def nearest_distances(queries: Tensor, references: Tensor, *, skip_self: bool = False, k: int = 1) -> Tensor:
    """Distance from each row of ``queries`` (N, D) to its k-th nearest row of ``references`` (M, D).

    With ``skip_self`` the two sets are the same and a row is not its own neighbour (k counts others).
    """
    queries, references = queries.double(), references.double()
    ref_norms = references.pow(2).sum(1)
    out = []
    for start in range(0, queries.shape[0], BLOCK):
        block = queries[start:start + BLOCK]
        squared = (block.pow(2).sum(1, keepdim=True) - 2.0 * block @ references.T + ref_norms[None, :]).clamp(min=0)
        if skip_self:
            rows = torch.arange(block.shape[0])
            squared[rows, rows + start] = float("inf")
        out.append(squared.kthvalue(k, dim=1).values.sqrt())
    return torch.cat(out)


def _inside_any_ball(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """(N,) bool: whether each point lies within radius of at least one centre."""
    centre_norms = centres.pow(2).sum(1)
    inside = []
    for start in range(0, points.shape[0], BLOCK):
        block = points[start:start + BLOCK]
        squared = (block.pow(2).sum(1, keepdim=True) - 2.0 * block @ centres.T + centre_norms[None, :]).clamp(min=0)
        inside.append((squared <= radii.pow(2)[None, :]).any(1))
    return torch.cat(inside)


def precision_recall(real: Tensor, generated: Tensor, k: int = 3) -> PrecisionRecall:
    """Kynkäänniemi et al. 2019's precision and recall (k = 3 as they recommend) of ``generated`` against ``real``."""
    real = _check("real", real)
    generated = _check("generated", generated, real.shape[1])
    if not 1 <= k < min(real.shape[0], generated.shape[0]):
        raise ValueError(f"k must be in [1, {min(real.shape[0], generated.shape[0]) - 1}] for these sets, got {k}")
    real_radii = nearest_distances(real, real, skip_self=True, k=k)
    generated_radii = nearest_distances(generated, generated, skip_self=True, k=k)
    precision = _inside_any_ball(generated, real, real_radii).double().mean()
    recall = _inside_any_ball(real, generated, generated_radii).double().mean()
    return PrecisionRecall(float(precision), float(recall), k)


def nearest_neighbour_ratio(generated: Tensor, train: Tensor, heldout: Tensor) -> NearestNeighbours:
    """Median distance of ``generated`` to the nearest ``train`` row over the same median for ``heldout``
    (real images the model was not trained on); ``copies`` as in the module docstring."""
    train = _check("train", train)
    generated = _check("generated", generated, train.shape[1])
    heldout = _check("heldout", heldout, train.shape[1])
    to_train = nearest_distances(generated, train)
    unseen = nearest_distances(heldout, train)
    heldout_median = float(unseen.median())
    threshold = torch.quantile(unseen, 0.01)
    return NearestNeighbours(
        ratio=float(to_train.median()) / heldout_median if heldout_median > 0 else float("inf"),
        generated_median=float(to_train.median()),
        heldout_median=heldout_median,
        copies=float((to_train < threshold).double().mean()),
    )
