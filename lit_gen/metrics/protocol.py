"""The protocol record that travels with every FID value, and the feature-extractor spec it names.

An FID number means nothing without how it was measured: which network gave the features (and
which weights file, by hash), which real images and how many, how many generated images, how they
were sampled (sampler, steps, guidance, EMA or raw weights, seed) and from which checkpoint.
``FIDRecord`` holds all of it; the evaluate CLI writes it as JSON and the FID callback appends it
to ``fid.jsonl`` in the run folder.

This module imports nothing heavy, so ``lit_gen.config`` can use ``parse_feature_spec`` to validate
the ``eval.feature`` key.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import lit_gen
from lit_gen.errors import ConfigError

CLASSIFIER_PREFIX = "classifier:"
#: Where statistics of real images are cached unless a config or flag says otherwise.
DEFAULT_STATS_CACHE_DIR = "~/.cache/lit_gen/fid_stats"


class FeatureSpec(NamedTuple):
    """A parsed ``eval.feature`` / ``--feature`` value."""

    kind: Literal["inception", "classifier"]
    path: str | None


def parse_feature_spec(spec: str) -> FeatureSpec:
    """``"inception"`` or ``"classifier:<path>"``; ConfigError naming both forms otherwise."""
    if spec == "inception":
        return FeatureSpec("inception", None)
    if isinstance(spec, str) and spec.startswith(CLASSIFIER_PREFIX) and spec[len(CLASSIFIER_PREFIX):].strip():
        return FeatureSpec("classifier", spec[len(CLASSIFIER_PREFIX):].strip())
    raise ConfigError(
        f"feature {spec!r}: expected 'inception' (Inception-v3 features, the published FID) or "
        "'classifier:<path>' (a domain classifier trained with "
        "`python -m lit_gen.metrics.classifier --data digits --out weights/digits_classifier.pt`)"
    )


def metric_label(metric: str, feature_suffix: str) -> str:
    """``"FID"`` for Inception features, ``"FID-digits-classifier"`` for a digits classifier, etc."""
    return f"{metric}{feature_suffix}"


@dataclass
class FIDRecord:
    """One FID measurement and everything needed to reproduce or compare it.

    Fields:
        metric: "FID" (Inception-v3 features, comparable with published numbers) or
            "FID-<dataset>-classifier" (domain-classifier features; never compare with Inception FID).
        value: the Fréchet distance.
        feature_extractor: network that gave the features, e.g. "inception-v3-pool3" or "classifier".
        feature_spec: the ``--feature`` / ``eval.feature`` value.
        feature_weights_path, feature_weights_sha256: the weights file of the extractor and its hash.
        feature_dim: length of a feature vector.
        feature_preprocessing: how images reach the network (quantization, resize, antialias).
        real_dataset, real_split, real_count, real_image_size: the reference images.
        real_stats_cache: file the reference statistics were read from or written to (None: not cached).
        real_stats_reused: whether they came from that cache.
        generated_count: number of generated images.
        sampler, steps, eta, guidance: sampler settings (None for families without them).
        weights: "ema" or "raw" model weights.
        sample_options: every option passed to ``model.sample()``.
        seed: seed of the generators that drew the samples.
        batch_size: images per ``sample()`` call (samples depend on it for a given seed).
        checkpoint: checkpoint file (None for an in-training evaluation).
        global_step, epoch: training progress of the evaluated weights.
        feature_test_accuracy: test accuracy of a domain-classifier extractor (None for Inception).
        feature_build_command: the command that built the extractor's weights file, with its seed
            (None when unknown, e.g. downloaded Inception weights: their hash identifies them).
        train_images: which images the evaluated model was trained on ({"dataset", "split", "count"}),
            so records of models trained on different images are never taken for one protocol.
        extra_metrics: other values from the same samples ("KID-...", "IS-..." with mean and std).
        yardstick: what stands beside the value (``lit_gen.metrics.yardstick.Yardstick``): FID of the
            same samples against the training images, precision and recall, the nearest-training-image
            ratio (memorisation) and the real-data floors; None when not measured (``--no-train-reference``).
        lit_gen_version, torch_version, torchmetrics_version: software versions.
        device: device the samples and features were computed on.
        created: UTC time of the measurement (ISO 8601).
        seconds: wall time of the measurement.
    """

    metric: str
    value: float
    feature_extractor: str
    feature_spec: str
    feature_weights_path: str | None
    feature_weights_sha256: str | None
    feature_dim: int
    feature_preprocessing: str
    real_dataset: str
    real_split: str
    real_count: int
    real_image_size: int
    real_stats_cache: str | None
    real_stats_reused: bool
    generated_count: int
    sampler: str | None
    steps: int | None
    eta: float | None
    guidance: float | None
    weights: Literal["ema", "raw"]
    sample_options: dict[str, Any]
    seed: int
    batch_size: int
    checkpoint: str | None
    global_step: int | None
    epoch: int | None
    feature_test_accuracy: float | None = None
    feature_build_command: str | None = None
    train_images: dict[str, Any] | None = None
    extra_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    yardstick: dict[str, Any] | None = None
    lit_gen_version: str = field(default_factory=lambda: lit_gen.__version__)
    torch_version: str = field(default_factory=lambda: _version("torch"))
    torchmetrics_version: str = field(default_factory=lambda: _version("torchmetrics"))
    device: str = "cpu"
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary_line(self) -> str:
        """One human line: value, features, counts and sampler."""
        sampler = f", {self.sampler} {self.steps} steps" if self.sampler else ""
        guidance = f", guidance {self.guidance:g}" if self.guidance not in (None, 1.0) else ""
        return (f"{self.metric} = {self.value:.4f}  ({self.generated_count} generated vs {self.real_count} "
                f"{self.real_dataset}/{self.real_split}; {self.weights} weights{sampler}{guidance}; seed {self.seed})")


#: Every key of a record, in order (the test checks each is present).
PROTOCOL_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(FIDRecord))

#: The fields two FID values must share to be compared (to stand in one table column): the feature
#: network (by hash), how images reach it, the reference set and its size, how many images were
#: generated and how, and the images the models were trained on. Value, seed, checkpoint, timing
#: and versions are not part of it.
COMPARABLE_FIELDS: tuple[str, ...] = (
    "metric", "feature_extractor", "feature_weights_sha256", "feature_dim", "feature_preprocessing",
    "real_dataset", "real_split", "real_count", "real_image_size", "generated_count",
    "sampler", "steps", "eta", "guidance", "weights", "train_images",
)


def protocol_of(record: FIDRecord | dict[str, Any]) -> dict[str, Any]:
    """The comparable part of an FID record (a ``FIDRecord`` or its dict): ``COMPARABLE_FIELDS`` only."""
    data = record.to_dict() if isinstance(record, FIDRecord) else dict(record)
    return {name: data.get(name) for name in COMPARABLE_FIELDS}


def protocol_differences(first: dict[str, Any], second: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """``["real_count: 1374 vs 1797", ...]``: the comparable fields where two protocols differ."""
    return [f"{name}: {first.get(name)!r} vs {second.get(name)!r}" for name in COMPARABLE_FIELDS
            if name not in ignore and first.get(name) != second.get(name)]


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
