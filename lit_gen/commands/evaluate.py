"""Measure FID (+ KID and IS) of a checkpoint, with the full protocol record.

    python -m lit_gen.evaluate --ckpt runs/vae_digits/<id>/checkpoints/last.ckpt --num-samples 10000 \\
        --feature classifier:weights/digits_classifier.pt
    python -m lit_gen.evaluate --ckpt runs/ddpm_cifar/<id>/checkpoints/last.ckpt --num-samples 50000 \\
        --sampler ddim --steps 100 --fid-weights-path weights/weights-inception-2015-12-05-6726825d.pth

The model is rebuilt from the checkpoint alone; its dataset from the run's ``config.yaml`` (beside
``checkpoints/``) or ``--data``. Samples are drawn in batches from one seeded generator, features
are streamed into running float64 sums, the real split's statistics come from the on-disk cache
when its key matches, and the record (value, features and weights hash, real and generated counts,
sampler, steps, guidance, EMA or raw weights, seed, checkpoint, versions) is printed and written as
JSON: ``--out``, by default ``<run>/evaluations/<metric>_<n>[_<sampler><steps>][_g<guidance>]_<weights>_seed<seed>.json``.

With ``--bpd`` it computes the likelihood instead, in bits per dimension (``lit_gen.metrics.likelihood``:
the VAE's importance-weighted bound, the diffusion family's variational bound over all T terms, a code prior's bits
per code), written with its protocol (split, N, importance samples k or timesteps) to ``--out``, by
default ``<run>/likelihood/bpd_<split>_<n>_<k or terms>_seed<seed>.json``::

    python -m lit_gen.evaluate --ckpt runs/ddpm_digits/<id>/checkpoints/last.ckpt --bpd --real-split test

Exit codes: 0 success, 2 a user error (missing weights file, wrong option for this family...).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from lit_gen.errors import EvaluationError
from lit_gen.metrics.features import FeatureExtractor
from lit_gen.metrics.protocol import DEFAULT_STATS_CACHE_DIR, FIDRecord, metric_label
from lit_gen.metrics.provenance import feature_provenance, train_images_of
from lit_gen.metrics.yardstick import MAX_POINTS, Yardstick, judge_against_training

log = logging.getLogger("lit_gen.evaluate")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate_model(model, datamodule, data_name: str, extractor: FeatureExtractor, *, num_samples: int,
                   batch_size: int = 256, seed: int = 0, sample_options: dict | None = None, real_split: str = "test",
                   real_count: int | None = None, cache_dir: str | Path | None = DEFAULT_STATS_CACHE_DIR, kid: bool = True,
                   inception_score: bool = True, checkpoint: str | None = None, global_step: int | None = None,
                   epoch: int | None = None, progress: bool = False, timings: dict | None = None,
                   train_reference: bool = True, memorization_points: int = MAX_POINTS) -> FIDRecord:
    """FID (and KID, IS) of ``num_samples`` samples of ``model`` against a real split, as a ``FIDRecord``.

    With ``train_reference`` (and a ``real_split`` other than "train") the record's ``yardstick`` also
    holds the FID of the same samples against the training images, precision and recall, the
    nearest-training-image ratio on up to ``memorization_points`` images per set, and the real-data
    floors (``lit_gen.metrics.yardstick``). ``timings``, when given, receives the seconds spent per
    stage (reference, generation, features, statistics).
    """
    from lit_gen.metrics.fid import ClassScore, FrechetDistance, KernelDistance
    from lit_gen.metrics.reference import reference_statistics
    from lit_gen.metrics.sampling import check_sample_options, generate_batches, sample_settings

    if num_samples < 2:
        raise EvaluationError(f"--num-samples must be at least 2, got {num_samples}")
    options = check_sample_options(model, dict(sample_options or {}))
    device = model.device
    extractor = extractor.to(device)
    timings = timings if timings is not None else {}
    started = time.perf_counter()
    judged = train_reference and real_split != "train"
    if train_reference and not judged:
        log.info("--real-split train: the reference is the training set itself, so there is no held-out FID, "
                 "memorisation measure or floor to add")
    reference = reference_statistics(datamodule, data_name, real_split, extractor, count=real_count,
                                     batch_size=batch_size, cache_dir=cache_dir, keep_features=kid or judged,
                                     device=device, progress=progress)
    train = (reference_statistics(datamodule, data_name, "train", extractor, batch_size=batch_size, cache_dir=cache_dir,
                                  keep_features=True, device=device, progress=progress) if judged else None)
    timings["reference"] = time.perf_counter() - started

    fid = FrechetDistance(extractor, reference.stats).to(device)
    kid_size = min(1000, reference.stats.count, num_samples)
    kid_metric = KernelDistance(extractor, subset_size=kid_size).to(device) if kid and kid_size >= 2 else None
    if kid_metric is not None:
        kid_metric.update_features(reference.features.to(device), real=True)
    is_metric = ClassScore(extractor, splits=min(10, num_samples)).to(device) if inception_score and extractor.has_logits else None

    generator = torch.Generator().manual_seed(seed)
    timings.update(generation=0.0, features=0.0, statistics=0.0)
    kept: list[torch.Tensor] = []  # the first generated features, for the pairwise memorisation measures
    kept_count = 0
    batches = generate_batches(model, num_samples, batch_size, generator, options, progress=progress, desc="samples")
    while True:
        t0 = time.perf_counter()
        images = next(batches, None)
        if images is None:
            break
        _sync(device)
        t1 = time.perf_counter()
        out = extractor.extract(images)
        _sync(device)
        t2 = time.perf_counter()
        fid.update_features(out.features, real=False)
        if kid_metric is not None:
            kid_metric.update_features(out.features)
        if is_metric is not None:
            is_metric.update_logits(out.logits)
        if judged and kept_count < memorization_points:
            kept.append(out.features[:memorization_points - kept_count].cpu())
            kept_count += kept[-1].shape[0]
        _sync(device)
        timings["generation"] += t1 - t0
        timings["features"] += t2 - t1
        timings["statistics"] += time.perf_counter() - t2
    t0 = time.perf_counter()
    value = float(fid.compute())
    yardstick = None
    if judged:
        yardstick = judge_against_training(
            fid.fake_stats(), reference.features, train.features, generated_points=torch.cat(kept),
            heldout_split=real_split, train_split="train", heldout_is_held_out=datamodule.held_out(real_split),
            seed=seed, max_points=memorization_points).to_dict()
    timings["statistics"] += time.perf_counter() - t0

    extra: dict[str, dict[str, float]] = {}
    if kid_metric is not None:
        mean, std = kid_metric.compute_seeded(seed)
        extra[metric_label("KID", extractor.suffix)] = {"mean": mean, "std": std, "subsets": 100, "subset_size": kid_size}
    if is_metric is not None:
        mean, std = is_metric.compute_seeded(seed)
        extra[metric_label("IS", extractor.suffix)] = {"mean": mean, "std": std, "splits": is_metric.splits}

    settings = sample_settings(model, options)
    return FIDRecord(
        metric=metric_label("FID", extractor.suffix),
        value=value,
        feature_extractor=extractor.name,
        feature_spec=extractor.spec,
        feature_weights_path=extractor.weights_path,
        feature_weights_sha256=extractor.weights_sha256,
        feature_dim=extractor.num_features,
        feature_preprocessing=extractor.preprocessing,
        real_dataset=data_name,
        real_split=real_split,
        real_count=reference.stats.count,
        real_image_size=reference.key["image_size"],
        real_stats_cache=str(reference.path) if reference.path else None,
        real_stats_reused=reference.reused,
        generated_count=fid.computed_fake_count,
        sampler=settings["sampler"],
        steps=settings["steps"],
        eta=settings["eta"],
        guidance=settings["guidance"],
        weights=settings["weights"],
        sample_options=_plain(options),
        seed=seed,
        batch_size=batch_size,
        checkpoint=checkpoint,
        global_step=global_step,
        epoch=epoch,
        **feature_provenance(extractor),
        train_images=train_images_of(datamodule, data_name),
        extra_metrics=extra,
        yardstick=yardstick,
        device=str(device),
        seconds=round(time.perf_counter() - started, 2),
    )


def default_record_name(record: FIDRecord) -> str:
    """``FID_50000_ddim100_g3_ema_seed0.json``: settings in the name, so evaluations do not overwrite each other."""
    parts = [record.metric, str(record.generated_count)]
    if record.sampler:
        parts.append(f"{record.sampler}{record.steps}")
    if record.guidance not in (None, 1.0):
        parts.append(f"g{record.guidance:g}")
    parts += [record.weights, f"seed{record.seed}"]
    return "_".join(parts) + ".json"


def _plain(options: dict) -> dict:
    return {k: (v if isinstance(v, (bool, int, float, str, type(None))) else str(v)) for k, v in options.items()}


# ----------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str]) -> argparse.Namespace:
    from lit_gen.metrics.sampling import add_sampler_arguments

    parser = argparse.ArgumentParser(prog="python -m lit_gen.evaluate",
                                     description="FID (+KID, IS) of a checkpoint, written with its protocol.")
    parser.add_argument("--ckpt", required=True, help="checkpoint file (runs/<name>/<id>/checkpoints/last.ckpt)")
    parser.add_argument("--num-samples", type=int, default=50000, help="generated images (default 50000)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per sample() call (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator (default 0)")
    add_sampler_arguments(parser)
    features = parser.add_argument_group("features")
    features.add_argument("--feature", default="inception", help="inception (default) | classifier:PATH")
    features.add_argument("--fid-weights-path", default=None, help="Inception weights file "
                          "(weights-inception-2015-12-05-6726825d.pth from torch-fidelity's GitHub release)")
    features.add_argument("--antialias", action="store_true",
                          help="antialiased resize to 299 (differs from the original TF FID; off by default)")
    features.add_argument("--no-kid", action="store_true", help="skip KID (it keeps every feature vector in memory)")
    real = parser.add_argument_group("real images")
    real.add_argument("--real-split", default="test", choices=("train", "val", "test"), help="default test")
    real.add_argument("--real-count", type=int, default=None, help="real images (default: the whole split)")
    real.add_argument("--data", default=None, help="dataset name when the checkpoint has no config.yaml beside it")
    real.add_argument("--data-root", default=None, help="dataset folder (default: the one in the run's config)")
    real.add_argument("--cache-dir", default=DEFAULT_STATS_CACHE_DIR, help=f"real-statistics cache (default {DEFAULT_STATS_CACHE_DIR})")
    real.add_argument("--no-cache", action="store_true", help="always recompute the real statistics")
    real.add_argument("--no-train-reference", action="store_true",
                      help="skip what stands beside the FID: FID against the training images, precision/recall, the "
                           "nearest-training-image ratio (memorisation) and the real-data floors")
    real.add_argument("--memorization-points", type=int, default=MAX_POINTS,
                      help=f"images per set compared pairwise for precision/recall and memorisation (default {MAX_POINTS})")
    likelihood = parser.add_argument_group("likelihood (--bpd)")
    likelihood.add_argument("--bpd", action="store_true",
                            help="compute bits per dimension on --real-split (--real-count images) instead of FID")
    likelihood.add_argument("--bpd-samples", type=int, default=64, help="VAE: importance samples k (default 64)")
    likelihood.add_argument("--bpd-terms", type=int, default=None,
                            help="diffusion: L_t terms to evaluate (default: all T-1; fewer gives an unbiased estimate)")
    parser.add_argument("--out", default=None, help="JSON record path (default <run>/evaluations/...json)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    from lit_gen.cli import setup_logging
    from lit_gen.metrics.features import build_extractor
    from lit_gen.metrics.sampling import check_sample_options, pick_device, sampler_options

    args = parse_args(argv)
    setup_logging()
    device = pick_device(args.device)
    # Cheap checks first: a bad checkpoint path or a missing weights file fails before any model is built.
    from lit_gen.checkpoints import model_name, read_checkpoint

    model_name(read_checkpoint(args.ckpt), args.ckpt)
    if args.bpd:
        return _bits_per_dim(args, device)
    extractor = build_extractor(args.feature, fid_weights_path=args.fid_weights_path, antialias=args.antialias, device=device)
    from lit_gen.checkpoints import load_model
    from lit_gen.metrics.reference import datamodule_for_checkpoint, run_dir_of

    model = load_model(args.ckpt, map_location=device)
    options = check_sample_options(model, sampler_options(args))
    datamodule, data_name = datamodule_for_checkpoint(args.ckpt, data=args.data, data_root=args.data_root,
                                                      image_size=getattr(model.hparams, "image_size", None))
    datamodule.prepare_data()
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True, mmap=True)
    record = evaluate_model(
        model, datamodule, data_name, extractor, num_samples=args.num_samples, batch_size=args.batch_size,
        seed=args.seed, sample_options=options, real_split=args.real_split, real_count=args.real_count,
        cache_dir=None if args.no_cache else args.cache_dir, kid=not args.no_kid, checkpoint=str(args.ckpt),
        global_step=state.get("global_step"), epoch=state.get("epoch"), progress=True,
        train_reference=not args.no_train_reference, memorization_points=args.memorization_points,
    )
    out = Path(args.out) if args.out else run_dir_of(args.ckpt) / "evaluations" / default_record_name(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    print(record.summary_line())
    if record.yardstick is not None:
        for line in Yardstick.from_dict(record.yardstick).summary_lines(record.metric, record.value):
            print(line)
    for name, values in record.extra_metrics.items():
        print(f"{name} = {values['mean']:.4f} ± {values['std']:.4f}")
    print(f"record     {out}")
    return 0


def _bits_per_dim(args: argparse.Namespace, device: torch.device) -> int:
    from lit_gen.checkpoints import load_model
    from lit_gen.metrics.likelihood import evaluate_likelihood
    from lit_gen.metrics.reference import datamodule_for_checkpoint, run_dir_of

    if args.bpd_samples < 1:
        raise EvaluationError(f"--bpd-samples must be at least 1, got {args.bpd_samples}")
    model = load_model(args.ckpt, map_location=device)
    datamodule, _ = datamodule_for_checkpoint(args.ckpt, data=args.data, data_root=args.data_root,
                                              image_size=getattr(model.hparams, "image_size", None))
    datamodule.prepare_data()
    datamodule.setup("fit")
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True, mmap=True)
    if args.bpd_terms is not None and not getattr(getattr(model, "objective", None), "discrete", False):
        raise EvaluationError(f"--bpd-terms {args.bpd_terms}: only diffusion models with discrete timesteps have terms")
    record = evaluate_likelihood(model, datamodule.dataset(args.real_split), split=args.real_split,
                                 count=args.real_count, batch_size=args.batch_size, samples=args.bpd_samples,
                                 terms=args.bpd_terms, seed=args.seed, checkpoint=str(args.ckpt),
                                 global_step=state.get("global_step"))
    out = Path(args.out) if args.out else run_dir_of(args.ckpt) / "likelihood" / record.file_name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    print(record.summary_line())
    print(f"record     {out}")
    return 0
