"""lit_gen.metrics.fid and .reference: the distance, streaming statistics, DDP sync, the statistics cache."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.multiprocessing as mp

from lit_gen.data.digits import DigitsDataModule
from lit_gen.errors import EvaluationError
from lit_gen.nn.classifier import DomainClassifier
from lit_gen.metrics.features import ClassifierFeatures
from lit_gen.metrics.fid import ClassScore, FeatureMoments, FrechetDistance, frechet_distance
from lit_gen.metrics.reference import reference_statistics
from tests.metrics.ddp_worker import LinearFeatures, ddp_rank, random_features


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook computation (as in the original TF/pytorch-fid code): scipy's sqrtm of S1 S2."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_of_a_set_against_itself_is_zero():
    metric = FrechetDistance(LinearFeatures())
    images = torch.rand(200, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    metric.update(images, real=True)
    metric.update(images, real=False)
    assert float(metric.compute()) == pytest.approx(0.0, abs=1e-8)


def test_fid_on_random_features_matches_scipy_reference():
    a, b = random_features(400, 12, seed=0), random_features(300, 12, seed=1, scale=1.4, shift=0.3)
    metric = FrechetDistance(LinearFeatures(dim=12))
    for chunk in a.split(64):  # streamed in batches, as during evaluation
        metric.update_features(chunk, real=True)
    for chunk in b.split(64):
        metric.update_features(chunk, real=False)
    expected = scipy_fid(a.numpy(), b.numpy())
    assert expected > 0.5
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-3)
    assert frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T)) == pytest.approx(expected, rel=1e-3)


def test_singular_covariances_match_the_eigenvalue_formula():
    # Fewer images than dimensions (e.g. 270 test digits, 2048 Inception features): S1 is singular.
    a, b = random_features(5, 8, seed=3), random_features(40, 8, seed=4, scale=0.7)
    s1, s2 = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    eig = np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)
    expected = ((a.numpy().mean(0) - b.numpy().mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum()
    got = frechet_distance(a.mean(0), torch.from_numpy(s1), b.mean(0), torch.from_numpy(s2))
    assert got == pytest.approx(expected, rel=1e-6)


def test_streaming_statistics_keep_constant_memory_and_match_numpy():
    features = random_features(1000, 5, seed=2)
    moments = FeatureMoments(5)
    for chunk in features.split(37):
        moments.update(chunk)
    # The state is the same size whatever the count: a sum vector, a sum-of-outer-products matrix, a count.
    assert moments.total.shape == (5,) and moments.outer.shape == (5, 5) and moments.total.dtype == torch.float64
    stats = moments.stats()
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mean.numpy(), features.numpy().mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.cov.numpy(), np.cov(features.numpy(), rowvar=False), rtol=1e-9, atol=1e-12)


def test_frechet_distance_names_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))


def test_too_few_generated_images_is_a_clear_error():
    metric = FrechetDistance(LinearFeatures())
    metric.update_features(random_features(10, 6, seed=0), real=True)
    metric.update_features(random_features(1, 6, seed=1), real=False)
    with pytest.raises(EvaluationError, match="at least 2 images"):
        metric.compute()


def test_class_score_reads_logits_not_features():
    # Confident predictions spread over ten classes score close to 10; all of one class scores 1.
    diverse = ClassScore(LinearFeatures(), splits=2)
    diverse.update_logits(torch.eye(10).repeat(50, 1) * 50.0)
    single = ClassScore(LinearFeatures(), splits=2)
    single.update_logits(torch.eye(10)[:1].repeat(500, 1) * 50.0)
    assert 9.5 < diverse.compute_seeded(0)[0] <= 10.0 + 1e-4
    assert single.compute_seeded(0)[0] == pytest.approx(1.0, abs=1e-4)
    assert diverse.compute_seeded(3) == diverse.compute_seeded(3)  # subsets come from the given seed


# ----------------------------------------------------------------------------------- DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_fid_equals_one_process_value(tmp_path):
    # fork: the ranks inherit the imported modules instead of importing torch and torchmetrics again.
    mp.start_processes(ddp_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    single = FrechetDistance(LinearFeatures(dim=8))
    single.update_features(random_features(300, 8, seed=0), real=True)
    single.update_features(random_features(301, 8, seed=1, scale=0.8), real=False)
    expected = float(single.compute())
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["value"] == pytest.approx(expected, rel=1e-9)
        assert result["count"] == 301


# ----------------------------------------------------------------------------------- cache
@pytest.fixture(scope="module")
def digits():
    dm = DigitsDataModule()
    dm.setup()
    return dm


def tiny_extractor(seed: int) -> ClassifierFeatures:
    torch.manual_seed(seed)
    return ClassifierFeatures(DomainClassifier(1, 8, 10, widths=(4, 4, 4), feature_dim=5), "digits")


def test_cached_reference_statistics_equal_fresh_ones_and_keys_do_not_collide(digits, tmp_path):
    extractor = tiny_extractor(0)
    fresh = reference_statistics(digits, "digits", "test", extractor, count=100, cache_dir=tmp_path)
    assert not fresh.reused and fresh.path.is_file()
    again = reference_statistics(digits, "digits", "test", extractor, count=100, cache_dir=tmp_path)
    assert again.reused and again.path == fresh.path
    assert torch.equal(again.stats.mean, fresh.stats.mean) and torch.equal(again.stats.cov, fresh.stats.cov)
    uncached = reference_statistics(digits, "digits", "test", extractor, count=100, cache_dir=None)
    assert torch.allclose(uncached.stats.cov, fresh.stats.cov, rtol=0, atol=1e-12)

    # A different count, split or extractor never reuses that file.
    for other in (
        reference_statistics(digits, "digits", "test", extractor, count=90, cache_dir=tmp_path),
        reference_statistics(digits, "digits", "val", extractor, count=100, cache_dir=tmp_path),
        reference_statistics(digits, "digits", "test", tiny_extractor(1), count=100, cache_dir=tmp_path),
    ):
        assert not other.reused and other.path != fresh.path
    assert len(list(tmp_path.glob("*.pt"))) == 4


def test_a_cache_file_written_for_another_key_is_not_trusted(digits, tmp_path):
    extractor = tiny_extractor(0)
    first = reference_statistics(digits, "digits", "test", extractor, count=50, cache_dir=tmp_path)
    state = torch.load(first.path, weights_only=True)
    state["key"] = state["key"].replace('"count": 50', '"count": 49')
    torch.save(state, first.path)
    second = reference_statistics(digits, "digits", "test", extractor, count=50, cache_dir=tmp_path)
    assert not second.reused and torch.equal(second.stats.mean, first.stats.mean)


def test_more_real_images_than_the_split_holds_is_a_clear_error(digits, tmp_path):
    with pytest.raises(EvaluationError, match="holds only 270"):
        reference_statistics(digits, "digits", "test", tiny_extractor(0), count=5000, cache_dir=tmp_path)


def test_comparable_protocol_fields_and_their_differences():
    from lit_gen.metrics.protocol import COMPARABLE_FIELDS, protocol_differences, protocol_of

    base = {name: None for name in COMPARABLE_FIELDS} | {
        "metric": "FID-digits-classifier", "feature_weights_sha256": "ab" * 32, "real_dataset": "digits",
        "real_split": "train", "real_count": 1797, "generated_count": 1000, "sampler": "ddim", "steps": 50,
        "train_images": {"dataset": "digits", "split": "all", "count": 1797}, "value": 12.0, "seed": 0}
    protocol = protocol_of(base)
    assert "value" not in protocol and "seed" not in protocol  # values and seeds vary inside one protocol
    same = protocol_of(base | {"value": 3.0, "seed": 4})
    assert protocol_differences(protocol, same) == []
    other = protocol_of(base | {"real_count": 1374, "feature_weights_sha256": "cd" * 32})
    differences = protocol_differences(protocol, other)
    assert [d.split(":")[0] for d in differences] == ["feature_weights_sha256", "real_count"]
    assert "1797 vs 1374" in differences[1]
    assert protocol_differences(protocol, other, ignore=("real_count", "feature_weights_sha256")) == []


def test_evaluate_record_names_the_feature_network_and_the_training_images(tmp_path_factory, tmp_path):
    from lit_gen.checkpoints import load_model
    from lit_gen.evaluate import evaluate_model
    from lit_gen.nn.classifier import load_classifier
    from lit_gen.metrics.features import file_sha256
    from tests.eval_helpers import digits_classifier, digits_run

    path, _ = digits_classifier(tmp_path_factory)
    model = load_model(digits_run(tmp_path_factory) / "checkpoints" / "last.ckpt")
    data = DigitsDataModule(train_split="all")
    record = evaluate_model(model, data, "digits", ClassifierFeatures.from_file(path), num_samples=20, batch_size=20,
                            real_split="train", cache_dir=tmp_path, kid=False, inception_score=False)
    _, meta = load_classifier(path)
    assert record.feature_weights_sha256 == file_sha256(path)
    assert record.feature_test_accuracy == meta["test_accuracy"] > 0.8
    assert record.feature_build_command == meta["command"] and "--seed 0" in record.feature_build_command
    assert record.train_images == {"dataset": "digits", "split": "all", "count": 1797}
    assert (record.real_dataset, record.real_split, record.real_count, record.generated_count) == ("digits", "train", 1797, 20)
    default = evaluate_model(model, DigitsDataModule(), "digits", ClassifierFeatures.from_file(path), num_samples=20,
                             batch_size=20, real_split="train", cache_dir=tmp_path, kid=False, inception_score=False)
    assert default.train_images["count"] == 1374 and default.real_count == 1374 and not default.real_stats_reused
