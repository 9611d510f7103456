"""Where an FID's inputs came from: the feature network's provenance and the model's training images.

Shared by ``lit_gen.evaluate`` and the FID callback, so a record made during training carries the
same protocol fields as one made from a checkpoint.
"""

from __future__ import annotations

from lit_gen.metrics.features import FeatureExtractor


def feature_provenance(extractor: FeatureExtractor) -> dict:
    """Test accuracy and build command of a domain-classifier extractor's file (None for Inception)."""
    return {"feature_test_accuracy": extractor.test_accuracy, "feature_build_command": extractor.build_command}


def train_images_of(datamodule, data_name: str) -> dict:
    """Which images the evaluated model's datamodule trains on: dataset, split option and count."""
    return {"dataset": data_name, "split": getattr(datamodule, "train_split", "train"),
            "count": len(datamodule.dataset("train"))}
