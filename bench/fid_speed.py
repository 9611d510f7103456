"""How long an FID measurement takes, stage by stage, on this machine.

    python bench/fid_speed.py --num 10000 --out bench/results/fid_speed.json

Measures ``lit_gen.evaluate.evaluate_model`` (the code the evaluate CLI runs) on ``--num`` generated
32x32 RGB images from a small convolutional VAE, against ``--num`` real-set stand-in images:

- generation: ``model.sample()`` in batches,
- features: a domain classifier (``lit_gen.nn.classifier.DomainClassifier``, 64 features),
- statistics: float64 running sums and the final Fréchet distance,
- reference: the real set's statistics (computed once, then cached; the cached read is timed too).

Weights are random: the timings are what matter, the FID value is meaningless. Inception weights
cannot be downloaded here, so Inception is timed separately on ``--inception-subset`` images with
random weights in the real architecture (same cost per image as the real weights) and extrapolated
to ``--num``; the Fréchet distance on 2048-dimensional features is timed on its own.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import load_average, machine_info  # noqa: E402
from lit_gen.evaluate import evaluate_model  # noqa: E402
from lit_gen.nn.classifier import DomainClassifier  # noqa: E402
from lit_gen.metrics.features import ClassifierFeatures, InceptionFeatures, random_inception_weights  # noqa: E402
from lit_gen.metrics.fid import frechet_distance  # noqa: E402
from lit_gen.models.vae import VAE  # noqa: E402


class StandInImages:
    """A datamodule-shaped holder of ``n`` random RGB images in [-1, 1] (the real set's stand-in)."""

    def __init__(self, n: int, image_size: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        images = torch.rand(n, 3, image_size, image_size, generator=g) * 2 - 1
        self.image_size = image_size
        self._data = torch.utils.data.TensorDataset(images, torch.zeros(n, dtype=torch.int64))

    def dataset(self, split: str):
        return self._data


def versions() -> dict:
    out = {"python": platform.python_version()}
    for package in ("torch", "torchmetrics", "torch-fidelity", "lightning", "numpy", "scipy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def time_inception(images: int, total: int, device: torch.device, workdir: Path) -> dict:
    weights = random_inception_weights(workdir / "random_inception.pth")
    extractor = InceptionFeatures(weights).to(device)
    batch = torch.rand(images, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    extractor.extract(batch[:2])  # warm-up
    started = time.perf_counter()
    extractor.extract(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return {"images_timed": images, "seconds": round(seconds, 2), "images_per_second": round(images / seconds, 2),
            "extrapolated_seconds_for_num": round(seconds / images * total, 1),
            "note": "random weights in the real architecture (cost per image equals the real weights'); "
                    "the official weights cannot be downloaded on this machine"}


def time_frechet(dim: int) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4 * dim, dim, generator=g, dtype=torch.float64)
    cov = a.T @ a / a.shape[0]
    started = time.perf_counter()
    frechet_distance(torch.zeros(dim), cov, torch.full((dim,), 0.1), cov * 1.1)
    return round(time.perf_counter() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=10000, help="generated (and real) images")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--inception-subset", type=int, default=64, help="images Inception is timed on")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "fid_speed.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = {**machine_info(), "load_average_start": load_average()}

    torch.manual_seed(0)
    model = VAE(channels=3, image_size=32, architecture="conv", conv_channels=(32, 64), latent_dim=8).to(device).eval()
    net = DomainClassifier(3, 32, 10)  # the digits/MNIST classifier's architecture, at CIFAR's shape
    extractor = ClassifierFeatures(net, "standin").to(device)
    real = StandInImages(args.num)
    with tempfile.TemporaryDirectory() as tmp:
        timings: dict = {}
        record = evaluate_model(model, real, "standin", extractor, num_samples=args.num, batch_size=args.batch_size,
                                cache_dir=Path(tmp) / "cache", kid=False, timings=timings, train_reference=False)
        cached: dict = {}
        evaluate_model(model, real, "standin", extractor, num_samples=2, batch_size=2,
                       cache_dir=Path(tmp) / "cache", kid=False, inception_score=False, timings=cached,
                       train_reference=False)
        inception = time_inception(args.inception_subset, args.num, device, Path(tmp))
    info["load_average_end"] = load_average()

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "versions": versions(),
        "device": str(device),
        "num_generated": args.num,
        "num_real": args.num,
        "image_shape": [3, 32, 32],
        "batch_size": args.batch_size,
        "generator_model": "VAE conv (32, 64), latent 8x8x8, random weights",
        "features": "classifier (DomainClassifier, 64 features, random weights); Inception timed separately",
        "seconds": {
            "generation": round(timings["generation"], 2),
            "features": round(timings["features"], 2),
            "statistics": round(timings["statistics"], 3),
            "reference_first_time": round(timings["reference"], 2),
            "reference_from_cache": round(cached["reference"], 3),
            "total": record.seconds,
        },
        "frechet_distance_seconds": {"dim_64": time_frechet(64), "dim_2048": time_frechet(2048)},
        "inception_features": inception,
        "fid_value_meaningless": record.value,
    }
    seconds = result["seconds"]
    result["headline"] = {
        f"FID of {args.num} generated against {args.num} real images": (
            f"{seconds['total']:.1f} s in all on {torch.get_num_threads()} thread(s): generation {seconds['generation']:.1f} s, "
            f"features {seconds['features']:.1f} s, statistics {seconds['statistics']:.3f} s, reference "
            f"{seconds['reference_first_time']:.1f} s the first time and {seconds['reference_from_cache']:.3f} s from the cache"),
        "Frechet distance at 2048 features": f"{result['frechet_distance_seconds']['dim_2048']:.2f} s",
        "Inception features (its architecture, random weights)": (
            f"{inception['images_per_second']:.1f} images/s over {inception['images_timed']} images, "
            f"i.e. about {inception['extrapolated_seconds_for_num']:.0f} s for {args.num}")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
