"""lit_gen.metrics.memorization against hand-worked sets of points."""

from __future__ import annotations

import pytest
import torch

from lit_gen.metrics.memorization import nearest_distances, nearest_neighbour_ratio, precision_recall


def column(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)[:, None]


def test_nearest_distances_skip_the_point_itself_and_count_the_kth():
    points = column(0, 1, 3, 7)
    assert nearest_distances(points, points).tolist() == [0, 0, 0, 0]
    assert nearest_distances(points, points, skip_self=True).tolist() == [1, 1, 2, 4]
    assert nearest_distances(points, points, skip_self=True, k=2).tolist() == [3, 2, 3, 6]


def test_precision_and_recall_of_a_hand_worked_case():
    real = column(*range(10))                      # k = 1: every real ball has radius 1
    generated = column(0.5, 1.5, 100, 101)         # two inside the real balls, two far away
    # Generated balls (k = 1) have radius 1: they hold the real points 0, 1 and 2 (0.5 from 1.5).
    assert precision_recall(real, generated, k=1) == (0.5, 0.3, 1)


def test_a_copy_of_the_real_set_has_full_precision_and_recall():
    real = torch.randn(50, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert precision_recall(real, real.clone()) == (1.0, 1.0, 3)


def test_k_must_leave_neighbours_in_both_sets():
    with pytest.raises(ValueError, match=r"k must be in \[1, 2\]"):
        precision_recall(column(0, 1, 2, 3), column(0, 1, 2), k=3)


def test_copies_of_training_images_score_a_ratio_of_zero_and_fresh_points_one():
    train = column(0, 10, 20, 30, 40)
    heldout = column(5, 15, 25, 35)                 # 5 from the nearest training point
    copies = nearest_neighbour_ratio(column(0, 10, 20, 30), train, heldout)
    assert copies.ratio == 0.0 and copies.copies == 1.0 and copies.heldout_median == 5.0
    fresh = nearest_neighbour_ratio(column(45, 35, 25, 5), train, heldout)
    assert fresh.ratio == 1.0 and fresh.copies == 0.0
    halfway = nearest_neighbour_ratio(column(2.5, 12.5, 22.5, 32.5), train, heldout)
    assert halfway.ratio == 0.5 and halfway.generated_median == 2.5
