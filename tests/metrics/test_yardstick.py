"""lit_gen.metrics.yardstick: FID against the training images, memorisation and floors beside a held-out FID."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_gen.data.digits import DigitsDataModule
from lit_gen.metrics.features import ClassifierFeatures
from lit_gen.metrics.yardstick import Yardstick, judge_against_training, stats_of
from lit_gen.metrics.fid import frechet_distance_of


def features(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


def test_floors_are_real_sets_against_each_others_reference_and_say_their_count():
    heldout, train = features(40, 1), features(60, 2)
    generated = features(100, 3)  # more samples than either real set holds
    judged = judge_against_training(generated, heldout, train)
    # N = 100 exceeds both sets: each floor uses the whole other set, and says it is not at the same count.
    assert judged.floor_train.value == pytest.approx(frechet_distance_of(stats_of(heldout), stats_of(train)), abs=1e-12)
    assert (judged.floor_train.count, judged.floor_train.at_same_count) == (40, False)
    assert judged.floor_heldout.value == pytest.approx(frechet_distance_of(stats_of(train), stats_of(heldout)), abs=1e-12)
    assert (judged.floor_heldout.count, judged.floor_heldout.at_same_count) == (60, False)
    assert judged.fid_train == pytest.approx(frechet_distance_of(stats_of(generated), stats_of(train)), abs=1e-12)
    assert Yardstick.from_dict(judged.to_dict()) == judged


def test_statistics_with_a_subset_of_points_give_the_same_fid_and_floors():
    heldout, train, generated = features(40, 1), features(60, 2), features(30, 3, 0.5)
    whole = judge_against_training(generated, heldout, train)
    streamed = judge_against_training(stats_of(generated), heldout, train, generated_points=generated)
    assert streamed == whole


class Replay(nn.Module):
    """A stand-in generator that returns real digits of one split, drawn with the generator (copying or fresh)."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images = images
        self.anchor = nn.Parameter(torch.zeros(()))

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    def sample(self, n: int, *, labels=None, generator=None) -> torch.Tensor:
        index = torch.randint(len(self.images), (n,), generator=generator)
        return (self.images[index] + 1) / 2


def test_evaluate_tells_a_copier_from_a_model_of_unseen_images(tmp_path_factory, tmp_path):
    from lit_gen.evaluate import evaluate_model
    from tests.eval_helpers import digits_classifier

    path, _ = digits_classifier(tmp_path_factory)
    data = DigitsDataModule()
    train = torch.stack([data.dataset("train")[i][0] for i in range(len(data.dataset("train")))])
    val = torch.stack([data.dataset("val")[i][0] for i in range(len(data.dataset("val")))])
    common = dict(num_samples=150, batch_size=50, real_split="test", cache_dir=tmp_path, kid=False, inception_score=False)
    extractor = ClassifierFeatures.from_file(path)
    copier = evaluate_model(Replay(train), data, "digits", extractor, **common).yardstick
    fresh = evaluate_model(Replay(val), data, "digits", extractor, **common).yardstick
    assert copier["heldout_is_held_out"] and copier["train_count"] == 1374 and copier["heldout_count"] == 270
    assert copier["nn_ratio"] == 0.0 and copier["copies"] == 1.0  # every sample is a training image
    assert 0.6 < fresh["nn_ratio"] < 1.6 and fresh["copies"] < 0.1  # unseen digits are as far as the test split
    # Against the training set the copier looks better than fresh digits; the held-out FID does not reward it.
    assert copier["fid_train"] < fresh["fid_train"]
    assert copier["floor_heldout"] == fresh["floor_heldout"] and copier["floor_heldout"]["count"] == 150


def test_a_model_trained_on_every_digit_has_no_held_out_split():
    assert DigitsDataModule().held_out("test") and not DigitsDataModule(train_split="all").held_out("test")
    assert not DigitsDataModule().held_out("train")
