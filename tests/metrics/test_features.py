"""lit_gen.metrics.features: Inception weights from a local file (never a download), classifier features."""

from __future__ import annotations

import time

import pytest
import torch

from lit_gen.errors import ConfigError, EvaluationError
from lit_gen.nn.classifier import DomainClassifier
from lit_gen.metrics.features import (
    INCEPTION_WEIGHTS_URL,
    ClassifierFeatures,
    InceptionFeatures,
    build_extractor,
    file_sha256,
    quantize_unit,
    random_inception_weights,
)
from lit_gen.metrics.fid import FrechetDistance
from lit_gen.metrics.protocol import parse_feature_spec


def test_missing_weights_file_fails_fast_naming_file_url_and_flags(tmp_path):
    missing = tmp_path / "weights" / "nothing.pth"
    started = time.perf_counter()
    with pytest.raises(EvaluationError) as error:
        build_extractor("inception", fid_weights_path=missing)
    assert time.perf_counter() - started < 5  # no download attempt to hang on
    message = str(error.value)
    for expected in (str(missing), INCEPTION_WEIGHTS_URL, "torch-fidelity", "--fid-weights-path PATH",
                     "eval.fid_weights_path", "classifier:"):
        assert expected in message


def test_without_a_path_the_torch_hub_cache_is_searched(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(EvaluationError, match="weights-inception-2015-12-05-6726825d.pth") as error:
        InceptionFeatures(None)
    assert str(tmp_path / "hub" / "checkpoints") in str(error.value)


def test_a_file_that_is_not_inception_weights_is_rejected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(10, 3)}, path)
    with pytest.raises(EvaluationError, match="does not hold Inception-v3 FID weights"):
        InceptionFeatures(path)


def test_inception_features_load_a_local_file_and_take_grey_images(tmp_path):
    # Random weights in the real architecture: checks loading, hashing, grey->RGB and the 299 resize.
    pytest.importorskip("torch_fidelity", reason="Inception features need torch-fidelity")
    path = random_inception_weights(tmp_path / "random_inception.pth")
    extractor = InceptionFeatures(path)
    assert extractor.weights_sha256 == file_sha256(path) and extractor.weights_path == str(path)
    assert not extractor.antialias and "no antialias" in extractor.preprocessing
    grey = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = extractor.extract(grey)
    assert out.features.shape == (2, 2048) and out.logits.shape == (2, 1008)
    rgb = extractor.extract(grey.expand(-1, 3, -1, -1))
    assert torch.equal(out.features, rgb.features)  # grey images are repeated to three channels

    metric = FrechetDistance(extractor)  # the torchmetrics path: images in, features extracted inside
    metric.update(grey, real=True)
    metric.update(grey, real=False)
    assert float(metric.compute()) == pytest.approx(0.0, abs=1e-6)
    path.unlink()  # 95 MB


def test_feature_spec_accepts_inception_and_classifier_paths_only():
    assert parse_feature_spec("inception") == ("inception", None)
    assert parse_feature_spec("classifier:weights/d.pt") == ("classifier", "weights/d.pt")
    for bad in ("inceptionv3", "classifier:", "clf:x.pt"):
        with pytest.raises(ConfigError, match="expected 'inception'"):
            parse_feature_spec(bad)


def test_missing_classifier_file_names_the_command_that_trains_one(tmp_path):
    with pytest.raises(EvaluationError, match="python -m lit_gen.metrics.classifier --data digits"):
        build_extractor(f"classifier:{tmp_path / 'none.pt'}")


def small_classifier(channels: int = 1, size: int = 8) -> ClassifierFeatures:
    torch.manual_seed(0)
    return ClassifierFeatures(DomainClassifier(channels, size, 10, widths=(4, 4, 4), feature_dim=6), "digits")


def test_classifier_features_quantize_never_resize_and_label_the_metric():
    extractor = small_classifier()
    assert extractor.suffix == "-digits-classifier" and extractor.weights_sha256  # in-memory weights are hashed
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    # Images are measured as a PNG would hold them: 8-bit levels.
    assert torch.equal(extractor.extract(images).features, extractor.extract(quantize_unit(images)).features)
    bigger = torch.nn.functional.interpolate(images, size=16, mode="nearest")
    # Never resized: a 16x16 image is judged by a 16x16 classifier, and the error says how to train one.
    with pytest.raises(EvaluationError, match=r"trained on 8x8 images but these are 16x16.*--data digits --image-size 16"):
        extractor.extract(bigger)
    assert small_classifier(size=16).extract(bigger).features.shape == (3, 6)
    with pytest.raises(EvaluationError, match="takes 1-channel images, got 3"):
        extractor.extract(torch.rand(2, 3, 8, 8))


def test_extractors_stay_in_eval_mode():
    extractor = small_classifier()
    extractor.train()
    assert not extractor.training and not extractor.net.training
