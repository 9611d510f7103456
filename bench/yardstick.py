"""The yardstick of the FID benchmarks: images judged at the resolution they are made, against images never trained on.

- **Features**: a domain classifier trained at the resolution of the images it judges (8x8 digits by
  an 8x8 classifier, 16x16 digits by a 16x16 one, MNIST by a 28x28 one), built by lit_gen's own CLI
  (``python -m lit_gen.metrics.classifier --data D --image-size R --seed 0``, the command kept in the
  file and in every record). Samples are never resized for it.
- **Partition**: every arm trains on the ``train`` split of one fixed partition (``data.seed`` 0:
  1,374 of the 1,797 digits; MNIST's 54,000); the ``val`` and ``test`` splits (423 digits; MNIST's
  16,000) are held out from every arm and form the held-out reference.
- **Per run** (``judge``): FID against the held-out images and against the training images, precision
  and recall against the held-out images, the nearest-training-image ratio and share of copies
  (``lit_gen.metrics.yardstick``), and the background haze (``haze``).
- **Floors** (``floors``): real images at the same N, i.e. N training images against the held-out
  reference and N held-out images against the training reference, plus the haze of real images.
  A run near its floor is as close to the data as the yardstick can tell; below it, the yardstick is
  saturated.

N, the generated images per run, is the held-out count (423 digits) unless a benchmark asks for
fewer, so both floors are measured at the same N as the samples.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.common import CACHE, REPO, child_env, python_command

#: Config overrides that make an arm train on the benchmark's training images (the held-out ones never).
TRAIN_OVERRIDES = ["data.train_split=train", "data.seed=0"]
#: The splits held out from every arm.
HELD_OUT = ("val", "test")
#: Seed of every yardstick classifier (the file records the command with it).
CLASSIFIER_SEED = 0
#: Haze: pixels whose 5x5 neighbourhood mean is below this are background (digits' strokes are far brighter).
BACKGROUND_LEVEL = 0.08
#: The haze samples may have (real 16x16 digits: about 0.002; the bound of the peer comparison and the ablations).
HAZE_BOUND = 0.005


def haze(images01: torch.Tensor) -> float:
    """Mean value in [0, 1] of the background pixels: those whose 5x5 neighbourhood mean is below 0.08.

    Real digits' background is black (about 0.002 at 16x16); a sampler that leaves noise behind raises it.
    """
    x = images01.float()
    local = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    background = local < BACKGROUND_LEVEL
    return float(x[background].mean()) if bool(background.any()) else 0.0


def classifier_path(dataset: str, resolution: int) -> Path:
    return CACHE / f"{dataset}{resolution}_classifier.pt"


def yardstick_classifier(dataset: str, resolution: int, data_root: str | None = None) -> Path:
    """The domain classifier of ``dataset`` at ``resolution``, trained once by lit_gen's CLI and reused."""
    from lit_gen.errors import CheckpointError
    from lit_gen.nn.classifier import classifier_provenance, load_classifier

    path = classifier_path(dataset, resolution)
    try:
        if classifier_provenance(path)["command"] and load_classifier(path)[0].image_size == resolution:
            return path
    except CheckpointError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    out = path.resolve().relative_to(REPO)  # relative: the command the file records is portable
    command = ["-m", "lit_gen.metrics.classifier", "--data", dataset, "--image-size", str(resolution), "--out", str(out),
               "--seed", str(CLASSIFIER_SEED), "--device", "cpu"]
    if data_root is not None:
        command += ["--data-root", data_root]
    result = subprocess.run(python_command(*command), cwd=REPO, env=child_env(), capture_output=True, text=True)
    if result.returncode != 0 or not path.is_file():
        raise SystemExit(f"training the {dataset} {resolution}x{resolution} classifier failed:\n{result.stderr[-2000:]}")
    return path


def _stack(dataset) -> torch.Tensor:
    """A dataset's images in [0, 1] (N, C, H, W)."""
    images = dataset.__getitems__(list(range(len(dataset)))).columns[0]
    return ((images + 1) / 2).clamp(0, 1)


@dataclass
class Yardstick:
    """One dataset at one resolution: its classifier, the training and held-out images and their features."""

    dataset: str
    resolution: int
    extractor: Any
    train_images: torch.Tensor
    heldout_images: torch.Tensor
    train_features: torch.Tensor
    heldout_features: torch.Tensor
    classifier: Path

    @classmethod
    def build(cls, dataset: str = "digits", resolution: int = 16, data_root: str | None = None) -> "Yardstick":
        from lit_gen import registry
        from lit_gen.metrics.features import ClassifierFeatures

        classifier = yardstick_classifier(dataset, resolution, data_root)
        extractor = ClassifierFeatures.from_file(classifier)
        kwargs: dict[str, Any] = {"image_size": resolution, "seed": 0}
        if data_root is not None:
            kwargs["root"] = data_root
        data = registry.resolve("data", dataset)(**kwargs)
        data.prepare_data()
        train = _stack(data.dataset("train"))
        heldout = torch.cat([_stack(data.dataset(split)) for split in HELD_OUT])
        assert all(data.held_out(split) for split in HELD_OUT)
        features = [extractor.extract(images).features.double() for images in (train, heldout)]
        return cls(dataset, resolution, extractor, train, heldout, *features, classifier)

    @property
    def n(self) -> int:
        """Generated images per run: as many as are held out, so the floors use the same N."""
        return len(self.heldout_images)

    def judge(self, samples01: torch.Tensor, seed: int = 0) -> dict[str, float]:
        """FIDs against held-out and training images, precision/recall, memorisation and haze of one run's samples."""
        from lit_gen.metrics.fid import frechet_distance_of
        from lit_gen.metrics.yardstick import judge_against_training, stats_of

        generated = self.extractor.extract(samples01.float()).features.double()
        judged = judge_against_training(generated, self.heldout_features, self.train_features,
                                        heldout_split="+".join(HELD_OUT), seed=seed)
        return {"fid": round(frechet_distance_of(stats_of(generated), stats_of(self.heldout_features)), 3),
                "fid_train": round(judged.fid_train, 3), "precision": round(judged.precision, 4),
                "recall": round(judged.recall, 4), "nn_ratio": round(judged.nn_ratio, 4),
                "copies": round(judged.copies, 4), "haze": round(haze(samples01), 5)}

    def floors(self, n: int | None = None, seed: int = 0) -> dict[str, Any]:
        """Real images at the same N: their FIDs against both references, their haze, and the N they used."""
        from lit_gen.metrics.fid import frechet_distance_of
        from lit_gen.metrics.yardstick import stats_of

        n = n or self.n
        generator = torch.Generator().manual_seed(seed)
        train_pick = torch.randperm(len(self.train_images), generator=generator)[:n]
        heldout_pick = torch.randperm(len(self.heldout_images), generator=generator)[:n]
        return {
            "n": n,
            "fid_heldout": round(frechet_distance_of(stats_of(self.train_features[train_pick]),
                                                     stats_of(self.heldout_features)), 3),
            "fid_train": round(frechet_distance_of(stats_of(self.heldout_features[heldout_pick]),
                                                   stats_of(self.train_features)), 3),
            "haze_train": round(haze(self.train_images), 5),
            "haze_heldout": round(haze(self.heldout_images), 5),
            "at_same_n": bool(len(train_pick) == n and len(heldout_pick) == n),
        }

    def protocol(self, reference: str, *, sampler: str | None, steps: int | None, generated_count: int,
                 guidance: float | None = None) -> dict[str, Any]:
        """The comparable protocol of one FID of this yardstick (``reference``: "heldout" or "train")."""
        extractor = self.extractor
        real = self.heldout_images if reference == "heldout" else self.train_images
        return {
            "metric": f"FID{extractor.suffix}", "feature_extractor": extractor.name,
            "feature_weights_sha256": extractor.weights_sha256, "feature_dim": extractor.num_features,
            "feature_preprocessing": extractor.preprocessing, "real_dataset": self.dataset,
            "real_split": "+".join(HELD_OUT) if reference == "heldout" else "train", "real_count": len(real),
            "real_image_size": self.resolution, "generated_count": generated_count, "sampler": sampler, "steps": steps,
            "eta": 0.0 if sampler == "ddim" else None, "guidance": guidance, "weights": "ema",
            "train_images": {"dataset": self.dataset, "split": "train", "seed": 0, "count": len(self.train_images)},
        }

    def feature(self) -> dict[str, Any]:
        """The classifier file's path, test accuracy and build command, as FID entries carry them."""
        return {"feature_weights_path": str(self.classifier.relative_to(REPO)),
                "feature_test_accuracy": self.extractor.test_accuracy,
                "feature_build_command": self.extractor.build_command}
