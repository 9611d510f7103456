"""What an FID needs beside it to be read: the training images, memorisation and the real-data floor.

An FID against the images a model trained on rewards copying them; one against held-out images
does not. ``judge_against_training`` takes the generated images' features and the features of two
real sets, the held-out reference (e.g. the test split) and the training images, and returns:

- ``fid_train``: FID of the same samples against the training images (beside the held-out FID);
- precision and recall against the held-out images (Kynkäänniemi et al. 2019, k = 3);
- the nearest-training-neighbour ratio (``lit_gen.metrics.memorization``): about 1 when samples are
  as far from the training images as unseen real images are, near 0 when they copy them;
- the floors: what real images score at the same N, i.e. FID of N training images against the
  held-out reference, and of N held-out images against the training images. A model below its floor
  means the yardstick is saturated, not that the model beats the data. A floor needs N real images
  outside its reference; with fewer it is computed at the largest N available and says so.

Memorisation measures use at most ``max_points`` vectors per set (seeded random subsets), since they
compare every pair.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from lit_gen.metrics.fid import FeatureMoments, GaussianStats, frechet_distance_of
from lit_gen.metrics.memorization import nearest_neighbour_ratio, precision_recall

#: Most feature vectors per set the pairwise memorisation measures compare.
MAX_POINTS = 5000
#: Nearest neighbour used for precision and recall (Kynkäänniemi et al.'s recommendation).
PR_K = 3


@dataclass(frozen=True)
class Floor:
    """FID of ``count`` real images from outside ``reference`` against it: what real data scores there."""

    reference: str
    value: float
    count: int
    at_same_count: bool


@dataclass(frozen=True)
class Yardstick:
    """The values that stand beside an FID against held-out images (see the module docstring)."""

    fid_train: float
    train_split: str
    train_count: int
    heldout_split: str
    heldout_count: int
    heldout_is_held_out: bool
    precision: float
    recall: float
    k: int
    nn_ratio: float
    nn_generated_median: float
    nn_heldout_median: float
    copies: float
    memorization_points: int
    floor_heldout: Floor
    floor_train: Floor

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Yardstick":
        floors = {name: Floor(**data[name]) for name in ("floor_heldout", "floor_train")}
        return cls(**{**data, **floors})

    def summary_lines(self, metric: str, fid_heldout: float) -> list[str]:
        return [
            f"{metric} against {self.heldout_split} {fid_heldout:.4f} (real-data floor {self.floor_heldout.value:.4f} "
            f"at N={self.floor_heldout.count}); against {self.train_split} {self.fid_train:.4f} "
            f"(floor {self.floor_train.value:.4f} at N={self.floor_train.count})",
            f"precision {self.precision:.3f}, recall {self.recall:.3f} (k={self.k}, against {self.heldout_split}); "
            f"nearest-training-image ratio {self.nn_ratio:.3f} (1 = as new as unseen real images; 0 = copies), "
            f"copies {100 * self.copies:.1f}%",
        ]


def stats_of(features: Tensor) -> GaussianStats:
    moments = FeatureMoments(features.shape[1])
    moments.update(features)
    return moments.stats()


def _subset(features: Tensor, count: int, generator: torch.Generator) -> Tensor:
    if features.shape[0] <= count:
        return features
    return features[torch.randperm(features.shape[0], generator=generator)[:count]]


def _floor(outside: Tensor, reference: GaussianStats, name: str, n: int, generator: torch.Generator) -> Floor:
    count = min(n, outside.shape[0])
    return Floor(name, frechet_distance_of(stats_of(_subset(outside, count, generator)), reference), count, count == n)


def judge_against_training(generated: Tensor | GaussianStats, heldout: Tensor, train: Tensor, *,
                           generated_points: Tensor | None = None, heldout_split: str = "test",
                           train_split: str = "train", heldout_is_held_out: bool = True, seed: int = 0,
                           max_points: int = MAX_POINTS) -> Yardstick:
    """The yardstick of generated images against ``heldout`` and ``train`` real features (N, D).

    ``generated`` is the generated images' features (N, D), or their statistics when there are too many
    to keep; then ``generated_points`` holds some of their feature vectors (any unbiased subset, e.g.
    the first ones drawn) for the pairwise measures. ``heldout_is_held_out`` records whether the model
    really never saw ``heldout`` (a model trained on every image has no held-out split; the record says so).
    """
    generator = torch.Generator().manual_seed(seed)
    heldout, train = heldout.detach().double().cpu(), train.detach().double().cpu()
    if isinstance(generated, GaussianStats):
        assert generated_points is not None, "statistics alone cannot give the pairwise measures"
        generated_stats, generated_points = generated, generated_points.detach().double().cpu()
    else:
        generated_points = generated.detach().double().cpu()
        generated_stats = stats_of(generated_points)
    n = generated_stats.count
    heldout_stats, train_stats = stats_of(heldout), stats_of(train)
    points = min(max_points, generated_points.shape[0], heldout.shape[0], train.shape[0])
    sample_g, sample_h = _subset(generated_points, points, generator), _subset(heldout, points, generator)
    pr = precision_recall(sample_h, sample_g, k=min(PR_K, points - 1))
    nn = nearest_neighbour_ratio(sample_g, _subset(train, max_points, generator), sample_h)
    return Yardstick(
        fid_train=frechet_distance_of(generated_stats, train_stats),
        train_split=train_split, train_count=train.shape[0],
        heldout_split=heldout_split, heldout_count=heldout.shape[0], heldout_is_held_out=heldout_is_held_out,
        precision=pr.precision, recall=pr.recall, k=pr.k,
        nn_ratio=nn.ratio, nn_generated_median=nn.generated_median, nn_heldout_median=nn.heldout_median,
        copies=nn.copies, memorization_points=points,
        floor_heldout=_floor(train, heldout_stats, heldout_split, n, generator),
        floor_train=_floor(heldout, train_stats, train_split, n, generator),
    )
