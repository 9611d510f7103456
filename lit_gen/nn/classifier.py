"""The domain classifier network and its file: a small CNN whose penultimate layer gives offline FID features.

The network and its file format live here, below ``lit_gen.metrics``: the feature extractor reads
the file and the training tool (``python -m lit_gen.metrics.classifier``) writes it, so neither
imports the other.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from lit_gen.errors import CheckpointError

FORMAT = "lit_gen.domain_classifier/1"


class DomainClassifier(nn.Module):
    """Three 3x3 conv stages (the last two with stride 2), global average pooling, a feature layer, logits.

    Args:
        channels (int): image channels.
        image_size (int): side length of the images it was trained on (others are resized to it).
        num_classes (int): classes of the dataset.
        widths (tuple[int, int, int], default (32, 64, 128)): channels of the three conv stages.
        feature_dim (int, default 64): width of the penultimate layer (the FID features).
    """

    def __init__(self, channels: int, image_size: int, num_classes: int, widths: tuple[int, int, int] = (32, 64, 128),
                 feature_dim: int = 64) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.widths, self.feature_dim = tuple(widths), feature_dim
        a, b, c = widths
        self.body = nn.Sequential(
            nn.Conv2d(channels, a, 3, padding=1), nn.SiLU(),
            nn.Conv2d(a, b, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(b, c, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.feature = nn.Sequential(nn.Linear(c, feature_dim), nn.SiLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def config(self) -> dict:
        return {"channels": self.channels, "image_size": self.image_size, "num_classes": self.num_classes,
                "widths": list(self.widths), "feature_dim": self.feature_dim}

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(penultimate features (N, feature_dim), logits (N, num_classes)) of images in [-1, 1]."""
        features = self.feature(self.body(x))
        return features, self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.features_and_logits(x)[1]


# ----------------------------------------------------------------------------------- files
def save_classifier(path: str | Path, net: DomainClassifier, meta: dict) -> Path:
    """Write weights, architecture and metadata (plain values only: loadable with weights_only=True)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "config": net.config(), "state_dict": {k: v.cpu() for k, v in net.state_dict().items()},
             "meta": meta}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_classifier(path: str | Path, map_location="cpu") -> tuple[DomainClassifier, dict]:
    """The classifier and its metadata (``dataset``, ``test_accuracy``, ``sanity``...)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"classifier file {path} does not exist; train one with "
                              f"python -m lit_gen.metrics.classifier --data digits --out {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any unreadable file gets the same advice
        raise CheckpointError(f"{path} is not a readable classifier file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a lit_gen domain classifier (expected format {FORMAT}); "
                              f"train one with python -m lit_gen.metrics.classifier")
    config = state["config"]
    # Building the layers draws their (discarded) initial weights: keep that off the global RNG, so
    # loading a classifier mid-training changes nothing of the run.
    with torch.random.fork_rng(devices=[]):
        net = DomainClassifier(config["channels"], config["image_size"], config["num_classes"],
                               tuple(config["widths"]), config["feature_dim"])
    net.load_state_dict(state["state_dict"])
    return net.eval().to(map_location), dict(state.get("meta") or {})


def classifier_provenance(path: str | Path) -> dict:
    """``{"test_accuracy", "command"}`` of a classifier file, for the FID records that use its features."""
    _, meta = load_classifier(path)
    return {"test_accuracy": meta.get("test_accuracy"), "command": meta.get("command")}
