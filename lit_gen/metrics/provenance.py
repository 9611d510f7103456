"""Where an FID's inputs came from: the feature network's provenance and the model's training images.

Shared by ``lit_gen.evaluate`` and the FID callback, so a record made during training carries the
same protocol fields as one made from a checkpoint.
"""

from __future__ import annotations

from lit_gen.metrics.features import FeatureExtractor
from lit_gen.nn.classifier import classifier_provenance


def feature_provenance(extractor: FeatureExtractor) -> dict:
    """Test accuracy and build command of a domain-classifier extractor's file (None for Inception)."""
    if extractor.name != "classifier" or not extractor.weights_path:
        return {"feature_test_accuracy": None, "feature_build_command": None}
    found = classifier_provenance(extractor.weights_path)
    return {"feature_test_accuracy": found["test_accuracy"], "feature_build_command": found["command"]}


def train_images_of(datamodule, data_name: str) -> dict:
    """Which images the evaluated model's datamodule trains on: dataset, split option and count."""
    return {"dataset": data_name, "split": getattr(datamodule, "train_split", "train"),
            "count": len(datamodule.dataset("train"))}
