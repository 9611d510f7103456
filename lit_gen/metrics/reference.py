"""Statistics of the real images, cached on disk under a key of everything that changes them.

The key holds the dataset name, the split, the image size, the image count, the dataset
arguments that change which images a split holds, and the feature extractor with its weights
hash. A cached file is reused only when its stored key equals the requested one, so statistics
never leak between datasets, sizes, counts or extractors (the trap of a single ``dataset_stats.npz``).

Also here: finding the datamodule a checkpoint was trained on (its run's ``config.yaml``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from lit_gen import registry
from lit_gen.errors import EvaluationError
from lit_gen.metrics.features import FeatureExtractor
from lit_gen.metrics.fid import FeatureMoments, GaussianStats
from lit_gen.metrics.protocol import DEFAULT_STATS_CACHE_DIR
from lit_gen.signatures import check_arguments, parameters

log = logging.getLogger(__name__)

FORMAT = "lit_gen.fid_reference/1"
# Datamodule arguments that change how images are loaded, not which pixels a split holds.
_LOADING_ARGS = {"root", "batch_size", "num_workers", "pin_memory", "persistent_workers", "hflip", "download"}
# Arguments that only choose the train and val images; the test split does not depend on them.
_SPLIT_ARGS = {"seed", "val_fraction", "train_split"}


class DatasetStats(NamedTuple):
    """Gaussian statistics of a set of images and, when asked, their features (N, D) on the CPU."""

    stats: GaussianStats
    features: Tensor | None


class ReferenceStats(NamedTuple):
    """Statistics of a real split, the key they are stored under, the cache file and whether it was reused."""

    stats: GaussianStats
    features: Tensor | None
    key: dict
    path: Path | None
    reused: bool


def to_unit(images: Tensor) -> Tensor:
    """Dataset images in [-1, 1] -> [0, 1]."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


@torch.no_grad()
def dataset_statistics(dataset, extractor: FeatureExtractor, *, count: int | None = None, batch_size: int = 256,
                       device: torch.device | str | None = None, keep_features: bool = False,
                       progress: bool = False) -> DatasetStats:
    """Statistics of the first ``count`` images of ``dataset`` (all when None), streamed in batches."""
    total = len(dataset)
    count = total if count is None else count
    if count > total:
        raise EvaluationError(f"asked for {count} real images, but the split holds only {total}; "
                              f"lower the real count or leave it unset to use the whole split")
    if count < 2:
        raise EvaluationError(f"FID needs at least 2 real images, got {count}")
    device = device if device is not None else next(extractor.parameters()).device
    loader = DataLoader(Subset(dataset, range(count)), batch_size=batch_size, shuffle=False, num_workers=0)
    moments = FeatureMoments(extractor.num_features)
    kept = []
    batches = loader
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(loader, desc="real features", unit="batch", disable=None)
    for images, _ in batches:
        features = extractor.extract(to_unit(images.to(device))).features
        moments.update(features)
        if keep_features:
            kept.append(features.cpu())
    return DatasetStats(moments.stats(), torch.cat(kept) if keep_features else None)


# ----------------------------------------------------------------------------------- the cache
def data_name_of(datamodule) -> str:
    """The registry name of a datamodule's class (its class name when it is not registered)."""
    try:
        return registry.name_of(type(datamodule), "data")
    except KeyError:
        return type(datamodule).__name__


def data_identity(datamodule, split: str) -> dict:
    """Constructor arguments of the datamodule that change the images of ``split`` (plain values only)."""
    out = {}
    for name in parameters(type(datamodule)):
        if name in _LOADING_ARGS or (split == "test" and name in _SPLIT_ARGS):
            continue
        value = getattr(datamodule, name, None)
        if isinstance(value, (bool, int, float, str, type(None))):
            out[name] = value
        elif isinstance(value, (tuple, list)) and all(isinstance(v, (bool, int, float, str)) for v in value):
            out[name] = list(value)
    return out


def reference_key(data_name: str, datamodule, split: str, count: int, extractor: FeatureExtractor) -> dict:
    """Everything the statistics of a real split depend on."""
    return {
        "format": FORMAT,
        "dataset": data_name,
        "split": split,
        "image_size": int(getattr(datamodule, "image_size", 0) or 0),
        "count": int(count),
        "data_args": data_identity(datamodule, split),
        "extractor": extractor.cache_identity(),
    }


def cache_file(cache_dir: str | Path, key: dict) -> Path:
    """``<cache_dir>/<dataset>_<split>_<size>px_<count>_<extractor>_<hash>.pt``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    extractor = key["extractor"]["name"].replace("/", "_")
    name = f"{key['dataset']}_{key['split']}_{key['image_size']}px_{key['count']}_{extractor}_{digest}.pt"
    return Path(cache_dir).expanduser() / name


def _read_cache(path: Path, key: dict, need_features: bool) -> DatasetStats | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file is recomputed, never trusted
        log.warning("ignoring unreadable FID statistics cache %s (%s)", path, type(exc).__name__)
        return None
    if not isinstance(state, dict) or state.get("key") != json.dumps(key, sort_keys=True):
        log.warning("ignoring FID statistics cache %s: it was written for another key", path)
        return None
    if need_features and state.get("features") is None:
        return None
    stats = GaussianStats(state["mean"].double(), state["cov"].double(), int(state["count"]))
    return DatasetStats(stats, state.get("features"))


def _write_cache(path: Path, key: dict, result: DatasetStats) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"key": json.dumps(key, sort_keys=True), "mean": result.stats.mean, "cov": result.stats.cov,
             "count": result.stats.count, "features": result.features}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # concurrent writers (DDP ranks, parallel jobs) each rename a complete file


def reference_statistics(datamodule, data_name: str, split: str, extractor: FeatureExtractor, *,
                         count: int | None = None, batch_size: int = 256, cache_dir: str | Path | None = DEFAULT_STATS_CACHE_DIR,
                         keep_features: bool = False, device: torch.device | str | None = None,
                         progress: bool = False) -> ReferenceStats:
    """Statistics of ``count`` images (None: all) of a real split: from the cache when its key matches.

    ``cache_dir=None`` disables the cache. ``keep_features`` also returns (and caches) the feature
    vectors themselves, which KID needs.
    """
    dataset = datamodule.dataset(split)
    count = len(dataset) if count is None else count
    key = reference_key(data_name, datamodule, split, count, extractor)
    path = cache_file(cache_dir, key) if cache_dir is not None else None
    if path is not None:
        cached = _read_cache(path, key, keep_features)
        if cached is not None:
            log.info("reusing real-image statistics %s", path)
            return ReferenceStats(cached.stats, cached.features, key, path, True)
    result = dataset_statistics(dataset, extractor, count=count, batch_size=batch_size, device=device,
                                keep_features=keep_features, progress=progress)
    if path is not None:
        _write_cache(path, key, result)
        log.info("wrote real-image statistics %s", path)
    return ReferenceStats(result.stats, result.features, key, path, False)


# ----------------------------------------------------------------------------------- checkpoint -> data
def run_dir_of(checkpoint: str | Path) -> Path:
    """The run folder of a checkpoint: ``runs/<name>/<id>/`` for ``runs/<name>/<id>/checkpoints/x.ckpt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def datamodule_for_checkpoint(checkpoint: str | Path, *, data: str | None = None, data_root: str | None = None,
                              image_size: int | None = None):
    """The datamodule a checkpoint was trained on, rebuilt from its run's ``config.yaml``, and its name.

    Without a ``config.yaml`` beside the checkpoint, ``data`` names the dataset (with ``image_size``,
    normally the model's). ``data_root`` replaces the dataset folder.
    """
    import yaml

    config = run_dir_of(checkpoint) / "config.yaml"
    section: dict
    if config.is_file():
        loaded = yaml.safe_load(config.read_text()) or {}
        section = dict(loaded.get("data") or {})
        if data is not None and data != section.get("name"):
            raise EvaluationError(f"--data {data} contradicts {config}, which trained on {section.get('name')!r}; "
                                  f"leave --data out to use the run's dataset")
    elif data is not None:
        section = {"name": data}
        if image_size is not None:
            section["image_size"] = image_size
    else:
        raise EvaluationError(f"no config.yaml beside {checkpoint} (looked for {config}); pass --data NAME "
                              f"(one of {', '.join(registry.names('data'))}) to say which dataset it was trained on")
    if data_root is not None:
        section["root"] = data_root
    name = section.pop("name", None)
    cls = registry.resolve("data", name)
    kwargs = check_arguments("data", cls, section)
    try:
        return cls(**kwargs), name
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"cannot rebuild the {name} datamodule: {exc}") from None
