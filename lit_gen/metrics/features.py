"""Feature extractors for FID, KID and IS: Inception-v3 from a local weights file, or a domain classifier.

Both take images in [0, 1], shape (N, C, H, W), on any device, and return ``Features(features,
logits)``. Images are first quantized to 8-bit levels, exactly as saving them to PNG would, so
generated images and dataset images (stored as uint8) are measured the same way.

Inception weights are never downloaded here: a missing file raises ``EvaluationError`` naming the
file, where to get it and the flag or config key that points at it, before anything can hang on a
network that is not there.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lit_gen.errors import EvaluationError
from lit_gen.metrics.protocol import parse_feature_spec
from lit_gen.nn.classifier import load_classifier

log = logging.getLogger(__name__)

#: torch-fidelity's port of the TF-slim Inception graph used by the original TensorFlow FID code.
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"
#: pytorch-fid names its port of the same graph this way; accepted when found in the torch hub cache.
PYTORCH_FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_INPUT_SIZE = 299


class Features(NamedTuple):
    """Per-image features (N, D) float32 and, when the network has them, class logits (N, K)."""

    features: Tensor
    logits: Tensor | None


def quantize_unit(images: Tensor) -> Tensor:
    """[0, 1] images rounded to the 256 levels a PNG can hold (clamped first)."""
    return images.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


_SHA256_MEMO: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, remembered per (path, size, modification time): weights files are large."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    _cache = _SHA256_MEMO
    if key not in _cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _cache[key] = digest.hexdigest()
    return _cache[key]


def state_sha256(module: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class FeatureExtractor(nn.Module):
    """Base of the extractors: images in [0, 1] -> ``Features``; always in eval mode, never trained.

    Attributes:
        name: the network, e.g. "inception-v3-pool3" or "classifier".
        spec: the ``--feature`` value that built it.
        suffix: appended to metric names ("" for Inception; "-digits-classifier" for a digits classifier).
        num_features: length of a feature vector (torchmetrics reads this attribute).
        weights_path, weights_sha256: the weights file (None for in-memory weights) and the hash of the weights.
        preprocessing: how images reach the network, for the protocol record.
        test_accuracy, build_command: a domain classifier's test accuracy and the command that built
            its file, as saved in it (None for Inception and in-memory networks).
    """

    name: str = ""
    spec: str = ""
    suffix: str = ""
    num_features: int = 0
    weights_path: str | None = None
    weights_sha256: str | None = None
    preprocessing: str = ""
    test_accuracy: float | None = None
    build_command: str | None = None
    max_batch: int = 256

    def extract_batch(self, images01: Tensor) -> Features:
        raise NotImplementedError

    @torch.no_grad()
    def extract(self, images01: Tensor) -> Features:
        """Features of ``images01`` (N, C, H, W) in [0, 1], computed in chunks of ``max_batch``."""
        if images01.ndim != 4:
            raise EvaluationError(f"expected images of shape (N, C, H, W), got {tuple(images01.shape)}")
        parts = [self.extract_batch(chunk) for chunk in images01.split(self.max_batch)]
        features = torch.cat([p.features for p in parts]).float()
        logits = torch.cat([p.logits for p in parts]).float() if parts[0].logits is not None else None
        return Features(features, logits)

    def forward(self, images01: Tensor) -> Tensor:
        """Features only: the (N, D) contract of a torchmetrics custom feature module."""
        return self.extract(images01).features

    def train(self, mode: bool = True) -> "FeatureExtractor":
        # A metric network must never switch its normalization layers to batch statistics.
        return super().train(False)

    @property
    def has_logits(self) -> bool:
        return False

    def cache_identity(self) -> dict:
        """What makes two extractors give the same features (part of the reference-statistics key)."""
        return {"name": self.name, "weights_sha256": self.weights_sha256, "preprocessing": self.preprocessing,
                "num_features": self.num_features}


# ----------------------------------------------------------------------------------- Inception
def inception_weights_candidates() -> list[Path]:
    """Where a weights file is looked for when no path is given: torch's hub checkpoint cache."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return [folder / INCEPTION_WEIGHTS_FILE, folder / PYTORCH_FID_WEIGHTS_FILE]


def missing_weights_message(searched: list[Path]) -> str:
    where = ", ".join(str(p) for p in searched)
    return (
        f"Inception FID weights not found (looked at: {where}). This machine cannot download them. Download "
        f"{INCEPTION_WEIGHTS_URL} (torch-fidelity's release of the TF FID Inception weights) on a machine with "
        f"internet, copy the file here (e.g. weights/{INCEPTION_WEIGHTS_FILE}) and point at it with "
        f"--fid-weights-path PATH (python -m lit_gen.evaluate) or eval.fid_weights_path=PATH in the config, or put it "
        f"in {searched[0].parent}. Offline alternative: --feature classifier:weights/digits_classifier.pt "
        f"(python -m lit_gen.metrics.classifier trains one; its values are labelled FID-<dataset>-classifier)."
    )


def resolve_inception_weights(path: str | Path | None) -> Path:
    """The weights file to use: ``path`` when given (it must exist), else one in torch's hub cache."""
    if path is not None:
        given = Path(path).expanduser()
        if not given.is_file():
            raise EvaluationError(missing_weights_message([given]))
        return given
    candidates = inception_weights_candidates()
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise EvaluationError(missing_weights_message(candidates))


def _check_inception_state(path: Path) -> None:
    """Load the file safely (tensors only) and check it is an Inception-v3 FID state dict."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling, zip and I/O errors all mean "not a usable weights file"
        raise EvaluationError(f"{path} is not a readable weights file ({type(exc).__name__}: {exc}); "
                              f"expected {INCEPTION_WEIGHTS_FILE} from {INCEPTION_WEIGHTS_URL}") from None
    fc = state.get("fc.weight") if isinstance(state, dict) else None
    if fc is None or tuple(fc.shape) != (1008, 2048) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise EvaluationError(f"{path} does not hold Inception-v3 FID weights (no 1008x2048 'fc.weight' / Mixed_7c); "
                              f"expected {INCEPTION_WEIGHTS_FILE} from {INCEPTION_WEIGHTS_URL}")


class InceptionFeatures(FeatureExtractor):
    """Inception-v3 pool3 features (2048) and its 1008 unbiased logits, from a local weights file.

    Uses torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's network). Images are quantized to
    uint8, grey images repeated to three channels, and resized to 299x299: with ``antialias=False``
    (the default) by torch-fidelity's resize that reproduces TensorFlow 1.x bilinear resizing, as
    the original FID code did; ``antialias=True`` uses torch's antialiased bilinear resize instead
    (torchmetrics' default, which gives different numbers).

    Args:
        weights_path (str | None): the weights file; None looks in torch's hub cache.
        antialias (bool, default False): see above.
    """

    name = "inception-v3-pool3"
    max_batch = 64  # 299x299 activations: keep CPU and GPU memory bounded

    def __init__(self, weights_path: str | Path | None = None, antialias: bool = False) -> None:
        super().__init__()
        path = resolve_inception_weights(weights_path)
        _check_inception_state(path)
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
            from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
        except ImportError as exc:  # pragma: no cover - torchmetrics is a dependency
            raise EvaluationError(f"torchmetrics is needed for Inception features: {exc}") from None
        if not _TORCH_FIDELITY_AVAILABLE:
            raise EvaluationError("Inception features need torch-fidelity: pip install torch-fidelity")
        # One pass gives pool3 features and logits through torchmetrics' torch-fidelity forward; a
        # torchmetrics without that method still gives the features (then no Inception Score).
        self._with_logits = hasattr(NoTrainInceptionV3, "_torch_fidelity_forward")
        features_list = ["2048", "logits_unbiased"] if self._with_logits else ["2048"]
        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=features_list,
                                      feature_extractor_weights_path=str(path), antialias=antialias)
        self.spec = "inception"
        self.num_features = 2048
        self.antialias = antialias
        self.weights_path = str(path)
        self.weights_sha256 = file_sha256(path)
        resize = "torch bilinear, antialias" if antialias else "TF1-compatible bilinear, no antialias"
        self.preprocessing = f"uint8 quantization, grey->RGB, resize to {INCEPTION_INPUT_SIZE} ({resize})"

    @property
    def has_logits(self) -> bool:
        return self._with_logits

    def extract_batch(self, images01: Tensor) -> Features:
        x = quantize_unit(images01).mul(255.0).to(torch.uint8)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise EvaluationError(f"Inception features need 1 or 3 channels, got {x.shape[1]}")
        if not self._with_logits:
            return Features(self.net(x.contiguous()), None)
        features, logits = self.net._torch_fidelity_forward(x.contiguous())
        return Features(features.reshape(x.shape[0], -1), logits)


# ----------------------------------------------------------------------------------- classifier
class ClassifierFeatures(FeatureExtractor):
    """Penultimate-layer features and class logits of a domain classifier (``lit_gen.nn.classifier``).

    Images are quantized to 8-bit levels, grey images repeated for a colour classifier, and mapped
    to [-1, 1] as in training. They are never resized: a classifier judges images at the resolution
    it was trained at, so detail a smaller copy would lose (a faint haze, a thin stroke) stays visible
    to it. Images of another size raise an error that names the command training a classifier at
    their size. Values are labelled ``FID-<dataset>-classifier``.

    Args:
        net: a ``DomainClassifier``.
        dataset (str): the dataset it was trained on (names the metric).
        weights_path (str | None): its file, recorded with its hash (in-memory weights are hashed instead).
    """

    name = "classifier"

    def __init__(self, net: nn.Module, dataset: str, weights_path: str | Path | None = None) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.dataset = dataset
        self.spec = f"classifier:{weights_path}" if weights_path else "classifier:<in memory>"
        self.suffix = f"-{dataset}-classifier"
        self.num_features = int(net.feature_dim)
        self.weights_path = str(weights_path) if weights_path else None
        # In-memory weights still get a hash: the reference-statistics cache is keyed on it.
        self.weights_sha256 = file_sha256(weights_path) if weights_path else state_sha256(net)
        self.preprocessing = f"8-bit quantization at {net.image_size}x{net.image_size}, never resized, scaled to [-1, 1]"

    @classmethod
    def from_file(cls, path: str | Path, map_location="cpu") -> "ClassifierFeatures":
        net, meta = load_classifier(path, map_location=map_location)
        extractor = cls(net, meta["dataset"], weights_path=path)
        # Read once here, so every FID record made with it carries them without opening the file again.
        extractor.test_accuracy, extractor.build_command = meta.get("test_accuracy"), meta.get("command")
        return extractor

    @property
    def has_logits(self) -> bool:
        return True

    def extract_batch(self, images01: Tensor) -> Features:
        x = quantize_unit(images01)
        channels, size = self.net.channels, self.net.image_size
        if x.shape[1] != channels:
            if x.shape[1] == 1 and channels == 3:
                x = x.expand(-1, 3, -1, -1)
            else:
                raise EvaluationError(f"the {self.dataset} classifier takes {channels}-channel images, got {x.shape[1]} "
                                      f"channels; train a classifier on this dataset (python -m lit_gen.metrics.classifier)")
        if x.shape[-2:] != (size, size):
            got = "x".join(map(str, x.shape[-2:]))
            raise EvaluationError(
                f"the {self.dataset} classifier was trained on {size}x{size} images but these are {got}: features are "
                f"taken at the resolution images are made, never resized. Train one at this size: python -m "
                f"lit_gen.metrics.classifier --data {self.dataset} --image-size {x.shape[-1]} "
                f"--out weights/{self.dataset}{x.shape[-1]}_classifier.pt")
        features, logits = self.net.features_and_logits(x * 2.0 - 1.0)
        return Features(features, logits)


def build_extractor(spec: str = "inception", *, fid_weights_path: str | Path | None = None, antialias: bool = False,
                    device: torch.device | str = "cpu") -> FeatureExtractor:
    """The extractor a ``--feature`` value names, on ``device``."""
    kind, path = parse_feature_spec(spec)
    if kind == "inception":
        extractor: FeatureExtractor = InceptionFeatures(fid_weights_path, antialias=antialias)
    else:
        if not Path(path).is_file():
            raise EvaluationError(f"feature {spec!r}: no classifier file {path}; train one with "
                                  f"python -m lit_gen.metrics.classifier --data digits --out {path}")
        extractor = ClassifierFeatures.from_file(path)
    return extractor.to(device)


def random_inception_weights(path: str | Path) -> Path:
    """Write an Inception-v3 state dict with random weights (for timing and tests, never for reported FID)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original_url, original_load = fidelity.load_state_dict_from_url, fidelity.FeatureExtractorInceptionV3.load_state_dict
        fidelity.load_state_dict_from_url = lambda *args, **kwargs: None  # no download: keep the random init
        fidelity.FeatureExtractorInceptionV3.load_state_dict = lambda self, *args, **kwargs: None
        try:
            net = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        finally:
            fidelity.load_state_dict_from_url = original_url
            fidelity.FeatureExtractorInceptionV3.load_state_dict = original_load
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path
