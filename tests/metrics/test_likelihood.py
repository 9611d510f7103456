"""lit_gen.metrics.likelihood: bits/dim of a split from a model's bound, and the record that says how.

The model here is a stand-in whose bound is a known number per image (the bound's own maths is tested
with each family), so every field of the record can be checked against a hand-worked value.
"""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lit_gen.errors import EvaluationError
from lit_gen.metrics.likelihood import CONVENTION, LikelihoodRecord, evaluate_likelihood, family_of
from lit_gen.models.capabilities import NLL

LN2 = math.log(2.0)


def images(n: int) -> TensorDataset:
    """n images of 1x2x3 whose first pixel is the image's index (the stand-in's bound reads it)."""
    x = torch.zeros(n, 1, 2, 3)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
    return TensorDataset(x, torch.arange(n) % 3)


class KnownBound(nn.Module):
    """-log p(x) = 10 + first pixel nats, split into a "prior" part of 1 and a "recon" part of the rest."""

    def __init__(self, unavailable: str | None = None, total: bool = True) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.unavailable, self.total, self.calls = unavailable, total, []

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    def likelihood_unavailable(self) -> str | None:
        return self.unavailable

    def negative_log_likelihood(self, x, labels, *, generator, samples, terms):
        self.calls.append({"batch": x.shape[0], "seen": x[:, 0, 0, 0].tolist(), "samples": samples, "terms": terms, "training": self.training,
                           "draw": float(torch.rand((), generator=generator))})
        if terms is not None and terms > 5:
            raise ValueError(f"terms must be at most 5, got {terms}")
        nats = 10.0 + x[:, 0, 0, 0].double()
        extra = {"samples": samples, "terms": terms, "bits_per_code": 3.5}
        if not self.total:
            extra["reason"] = "the bound is over codes, not pixels"
        return NLL(nats if self.total else None, {"prior": torch.ones_like(nats), "recon": nats - 1.0},
                   f"known bound k={samples}", extra)


class NoBound(nn.Module):
    no_likelihood = "an autoencoder has no density"


def test_bits_per_dim_is_the_mean_bound_over_the_split_in_bits_per_dimension():
    model = KnownBound().train()
    record = evaluate_likelihood(model, images(7), split="val", batch_size=3, samples=16, seed=5,
                                 checkpoint="run/last.ckpt", global_step=42)
    mean_nats = 10.0 + sum(range(7)) / 7  # 13 nats per image
    assert record.bits_per_dim == pytest.approx(mean_nats / (6 * LN2), rel=1e-12)
    assert (record.family, record.split, record.count, record.dims, record.seed) == ("knownbound", "val", 7, 6, 5)
    assert (record.bound, record.reason, record.samples, record.terms) == ("known bound k=16", None, 16, None)
    assert record.extra == {"bits_per_code": 3.5, "prior": pytest.approx(1.0), "recon": pytest.approx(12.0)}
    assert (record.checkpoint, record.global_step, record.convention) == ("run/last.ckpt", 42, CONVENTION)
    assert record.seconds is not None and record.seconds >= 0
    # Batches of 3, 3 and 1, in eval mode, one generator seeded once for the whole split; training restored.
    assert [c["seen"] for c in model.calls] == [[0, 1, 2], [3, 4, 5], [6]]  # in the split's order
    assert not any(c["training"] for c in model.calls) and model.training
    generator = torch.Generator().manual_seed(5)
    assert [c["draw"] for c in model.calls] == [float(torch.rand((), generator=generator)) for _ in range(3)]


def test_count_takes_the_first_images_and_must_fit_the_split():
    record = evaluate_likelihood(KnownBound(), images(7), count=2, batch_size=256)
    assert record.count == 2 and record.bits_per_dim == pytest.approx(10.5 / (6 * LN2))
    one, every = KnownBound(), KnownBound()
    assert evaluate_likelihood(one, images(7), count=1).count == 1 and one.calls[0]["seen"] == [0]
    assert evaluate_likelihood(every, images(7), count=7).count == 7 and every.calls[0]["seen"] == list(range(7))
    for bad in (0, 8):
        with pytest.raises(EvaluationError, match=rf"--count {bad}: the split holds 7 images; choose 1 \.\. 7"):
            evaluate_likelihood(KnownBound(), images(7), count=bad)


def test_an_option_the_model_refuses_is_an_evaluation_error_naming_the_model():
    with pytest.raises(EvaluationError, match=r"^KnownBound: terms must be at most 5, got 9$"):
        evaluate_likelihood(KnownBound(), images(4), terms=9)


def test_the_model_is_put_back_in_training_mode_even_when_it_fails():
    model = KnownBound().train()
    with pytest.raises(EvaluationError):
        evaluate_likelihood(model, images(4), terms=9)
    assert model.training


def test_a_bound_not_over_pixels_gives_no_bits_per_dim_and_the_models_reason():
    record = evaluate_likelihood(KnownBound(total=False), images(4), samples=8)
    assert record.bits_per_dim is None and record.reason == "the bound is over codes, not pixels"
    assert record.count == 4 and record.extra["bits_per_code"] == 3.5 and "reason" not in record.extra


def test_models_without_a_likelihood_say_why_and_are_not_run():
    unavailable = KnownBound(unavailable="trained on latents: not comparable")
    record = evaluate_likelihood(unavailable, images(4))
    assert (record.bits_per_dim, record.reason, record.bound, record.count) == (
        None, "trained on latents: not comparable", None, 0)
    assert unavailable.calls == []
    record = evaluate_likelihood(NoBound(), images(4))
    assert (record.bits_per_dim, record.reason, record.family) == (None, "an autoencoder has no density", "nobound")
    bare = evaluate_likelihood(nn.Linear(1, 1), images(4))
    assert bare.reason == "the linear family defines no likelihood (not comparable)"


def test_family_of_is_the_registered_name_or_the_class_name():
    from lit_gen.models.ae import DenoisingAutoencoder
    from lit_gen.models.prior import CodePrior

    # Registered names that are not the class's own.
    assert family_of(CodePrior.__new__(CodePrior)) == "prior"
    assert family_of(DenoisingAutoencoder.__new__(DenoisingAutoencoder)) == "dae"
    assert family_of(KnownBound()) == "knownbound"


def record(**changes) -> LikelihoodRecord:
    fields = dict(family="vae", bits_per_dim=1.23456, reason=None, bound="IWAE k=64", split="test", count=100,
                  dims=784, seed=3)
    return LikelihoodRecord(**{**fields, **changes})


def test_the_record_file_name_names_split_count_setting_and_seed():
    assert record(samples=64).file_name == "bpd_test_100_k64_seed3.json"
    assert record(terms=10).file_name == "bpd_test_100_t10_seed3.json"
    assert record(family="diffusion").file_name == "bpd_test_100_diffusion_seed3.json"


def test_the_summary_line_and_the_dict():
    assert record().summary_line() == "bits/dim   1.2346 (IWAE k=64; test split, N=100, seed 3)"
    assert record(bits_per_dim=None, reason="no density").summary_line() == "bits/dim   not defined for vae: no density"
    data = record(samples=64).to_dict()
    assert data["bits_per_dim"] == 1.23456 and data["samples"] == 64 and data["convention"] == CONVENTION
    assert set(data) == {"family", "bits_per_dim", "reason", "bound", "split", "count", "dims", "seed", "convention",
                         "samples", "timesteps", "terms", "weights", "extra", "checkpoint", "global_step", "seconds"}
