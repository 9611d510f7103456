"""Measurements the comparison makes itself, once per run, kept in the run folder for next time.

- ``measures/sampling.json``: images per second of ``model.sample()`` with the family's default
  sampler (timed after a warm-up call), and a grid drawn from a fixed seed (the same for every run,
  so grids compare at equal seeds).
- ``measures/reconstruction.json``: for families that reconstruct, the mean squared error on [0, 1]
  pixels and LPIPS (when its backbone weights are on disk and the images are large enough); for those
  that code images as a grid of discrete codes (the VQ families, whatever their quantizer) also the rate:
  bits per image at face value (``h * w * log2 K``) and as the codes' entropy on the split (what an entropy
  coder of single codes would spend), with the codebook's use on the split.
- ``likelihood/bpd_*.json``: the bits-per-dimension record of ``lit_gen.metrics.likelihood``.

Each record says how it was made (split, N, seed, device); a measure that cannot be made records
its reason instead of a value.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from lit_gen.comparing.collect import RunInfo
from lit_gen.models.capabilities import Autoencoding, CodeAutoencoding
from lit_gen.runs import atomic_write_text

log = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _write(path: Path, record: dict) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


@torch.no_grad()
def measure_sampling(model, run: RunInfo, *, n: int = 16, seed: int = 0) -> dict:
    """Images/s of the default sampler and a grid of ``n`` samples from ``seed``."""
    from lit_gen.images import save_grid
    from lit_gen.metrics.sampling import sample_settings

    device = model.device
    model.eval()
    model.sample(2, generator=torch.Generator().manual_seed(seed))  # warm-up: first calls allocate and compile
    _sync(device)
    started = time.perf_counter()
    images = model.sample(n, generator=torch.Generator().manual_seed(seed))
    _sync(device)
    seconds = time.perf_counter() - started
    grid = save_grid(images.float().cpu(), run.path / "measures" / f"samples_seed{seed}.png")
    settings = sample_settings(model, {})
    return _write(run.path / "measures" / "sampling.json", {
        "images_per_second": n / seconds, "images": n, "seconds": seconds, "seed": seed, "grid": grid.name,
        "device": str(device), "threads": torch.get_num_threads(), **settings,
    })


@torch.no_grad()
def measure_reconstruction(model, run: RunInfo, dataset, *, split: str, count: int = 256, batch_size: int = 128) -> dict:
    """Mean squared error on [0, 1] pixels (and LPIPS when possible) of encode -> decode on a split."""
    from torch.utils.data import DataLoader, Subset

    path = run.path / "measures" / "reconstruction.json"
    if not isinstance(model, Autoencoding):
        return _write(path, {"mse": None, "lpips": None,
                             "reason": f"{type(model).__name__} does not reconstruct its input (no encode/decode)"})
    count = min(count, len(dataset))
    lpips, lpips_reason = _lpips(dataset)
    device = model.device
    if lpips is not None:
        lpips = lpips.to(device)
    model.eval()
    squared = distance = 0.0
    coded = isinstance(model, CodeAutoencoding)
    counts = torch.zeros(model.num_codes, dtype=torch.float64) if coded else None
    for x, _ in DataLoader(Subset(dataset, range(count)), batch_size=batch_size, shuffle=False):
        x = x.to(device)
        recon = model.decode(model.encode(x)).clamp(-1, 1)
        squared += float(((recon - x) / 2).pow(2).flatten(1).mean(1).double().sum())
        if lpips is not None:
            distance += float(lpips(recon, x).double().sum())
        if coded:
            counts += torch.bincount(model.encode_indices(x).flatten().cpu(), minlength=model.num_codes).double()
    record = {
        "mse": squared / count, "lpips": distance / count if lpips is not None else None,
        "lpips_reason": lpips_reason, "split": split, "count": count, "pixel_range": "[0, 1]",
        "code": model.encoded_as,
    }
    if coded:
        record.update(code_rate(counts, model.code_shape, model.num_codes))
        record["quantizer"] = getattr(model, "hparams", {}).get("quantizer")
    return _write(path, record)


def code_rate(counts, code_shape: tuple[int, int], num_codes: int) -> dict:
    """Bits per image of a code grid: at face value (every code equally likely) and as the entropy of the
    codes' histogram ``counts`` (single codes, no context); the share of codes used and their perplexity."""
    import math

    positions = code_shape[0] * code_shape[1]
    probs = counts / counts.sum()
    nonzero = probs[probs > 0]
    entropy_bits = float(-(nonzero * nonzero.log2()).sum())
    return {"bits_per_image": positions * math.log2(num_codes), "entropy_bits_per_image": positions * entropy_bits,
            "codes_used": float((counts > 0).double().mean()), "code_perplexity": 2.0 ** entropy_bits,
            "num_codes": num_codes, "code_grid": list(code_shape)}


def _lpips(dataset):
    """The LPIPS module, or None and the reason it cannot be used here."""
    from lit_gen.errors import ConfigError
    from lit_gen.nn.perceptual import MIN_IMAGE_SIZE, PerceptualLoss

    side = dataset[0][0].shape[-1]
    if side < MIN_IMAGE_SIZE["vgg"]:
        return None, f"LPIPS (VGG) needs images of at least {MIN_IMAGE_SIZE['vgg']} px; these are {side} px"
    try:
        return PerceptualLoss("vgg"), None
    except ConfigError as exc:
        return None, f"LPIPS backbone weights are not on disk: {exc}"


def measure_likelihood(model, run: RunInfo, dataset, *, split: str, count: int | None, samples: int,
                       terms: int | None, seed: int = 0, batch_size: int = 256) -> dict:
    """The bits/dim record (``lit_gen.metrics.likelihood``), written where ``evaluate --bpd`` writes it."""
    from lit_gen.metrics.likelihood import evaluate_likelihood

    record = evaluate_likelihood(model, dataset, split=split, count=count, batch_size=batch_size, samples=samples,
                                 terms=terms, seed=seed, checkpoint=str(run.checkpoint), global_step=run.steps)
    return _write(run.path / "likelihood" / record.file_name, record.to_dict())


def measure_run(run: RunInfo, *, device: torch.device, split: str = "test", count: int | None = 512,
                samples: int = 16, terms: int | None = None, refresh: bool = False) -> RunInfo:
    """Make the measures a run lacks (all of them with ``refresh``) and return it with them filled in.

    ``count`` images of ``split`` (None: all of it) serve both the reconstruction error and bits/dim.
    """
    if run.checkpoint is None:
        log.warning("%s has no checkpoints/last.ckpt: nothing to measure", run.label)
        return run
    need_sampling = refresh or "sampling" not in run.measures
    need_recon = refresh or "reconstruction" not in run.measures
    need_bpd = refresh or run.likelihood is None
    if not (need_sampling or need_recon or need_bpd):
        return run
    from lit_gen.checkpoints import load_model
    from lit_gen.metrics.reference import datamodule_for_checkpoint

    model = load_model(run.checkpoint, map_location=device)
    datamodule, _ = datamodule_for_checkpoint(run.checkpoint)
    datamodule.prepare_data()
    dataset = datamodule.dataset(split)
    n = len(dataset) if count is None else min(count, len(dataset))
    if need_sampling:
        run.measures["sampling"] = measure_sampling(model, run)
    if need_recon:
        run.measures["reconstruction"] = measure_reconstruction(model, run, dataset, split=split, count=n)
    if need_bpd:
        run.likelihood = measure_likelihood(model, run, dataset, split=split, count=n, samples=samples, terms=terms)
    return run
