"""Images from a checkpoint alone: sample grids, latent interpolations, latent scatter plots, raw tensors.

    python -m lit_gen.sample --ckpt runs/vae_digits/<id>/checkpoints/last.ckpt --num 64 --out grid.png
    python -m lit_gen.sample --ckpt CKPT --labels 0-9 --num 80 --guidance 3 --out classes.png   # one row per class
    python -m lit_gen.sample --ckpt CKPT --labels 3,3,5 --sampler ddim --steps 50 --out threes.png
    python -m lit_gen.sample --ckpt CKPT --sampler dpmpp_2m --steps 10 --out few_steps.png   # any diffusion objective
    python -m lit_gen.sample --ckpt CKPT --sampler ddim --steps 50 --spacing leading --out grid.png  # diffusers' timesteps
    python -m lit_gen.sample --ckpt CKPT --interpolate 8 --pairs 6 --out grid.png            # + grid_interpolation.png
    python -m lit_gen.sample --ckpt CKPT --num 0 --latent-scatter scatter.png                # latent space of the test set
    python -m lit_gen.sample --ckpt CKPT --num 1000 --tensor samples.pt                      # raw images in [0, 1]

Interpolation and the scatter plot need a family with ``encode``/``decode`` (AE, VAE, VQ-VAE) and
the run's dataset (read from the ``config.yaml`` beside ``checkpoints/``, or ``--data``). An
interpolation row decodes lambda * h1 + (1 - lambda) * h2 for two test images, lambda from 0 to 1
across the columns. Sampler options (``--sampler``, ``--steps``, ``--spacing``, ``--eta``,
``--recompute-eps``, ``--guidance``, ``--no-ema``) are for diffusion checkpoints of every
objective, pixel or latent, guided or not; other families refuse them with a clear error.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from torch import Tensor

from lit_gen.errors import EvaluationError
from lit_gen.models.capabilities import Autoencoding

log = logging.getLogger("lit_gen.sample")


def parse_labels(spec: str, num_classes: int | None) -> list[int]:
    """``"0-9"`` -> [0..9]; ``"3,3,5"`` -> [3, 3, 5]; ranges and single labels can be mixed (``"0-2,7"``)."""
    labels: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part[1:]:
                low, high = part.split("-", 1)
                labels.extend(range(int(low), int(high) + 1))
            elif part:
                labels.append(int(part))
    except ValueError:
        raise EvaluationError(f"--labels {spec!r}: write a range (0-9), a list (3,3,5) or both (0-2,7)") from None
    if not labels:
        raise EvaluationError(f"--labels {spec!r} names no label")
    if num_classes is not None:
        bad = [v for v in labels if not 0 <= v < num_classes]
        if bad:
            raise EvaluationError(f"--labels {spec!r}: {bad} outside the model's classes 0-{num_classes - 1}")
    return labels


def grid_labels(model, spec: str | None, num: int) -> tuple[Tensor | None, int | None]:
    """Labels for a grid (one row per listed label, ``num // rows`` images each) and the row length."""
    conditional = bool(getattr(model, "conditional", False))
    classes = getattr(model, "num_classes", None)
    if spec is not None and not conditional:
        raise EvaluationError(f"--labels: this {type(model).__name__} is unconditional; leave --labels out")
    if not conditional:
        return None, None
    rows = parse_labels(spec, classes) if spec is not None else list(range(classes))
    per_row = max(1, num // len(rows))
    if per_row * len(rows) != num:
        # A grid has whole rows: say so rather than hand back a different count silently.
        log.warning("--num %d is not a multiple of the %d label rows: drawing %d per label (%d images)",
                    num, len(rows), per_row, per_row * len(rows))
    labels = torch.tensor(rows, dtype=torch.int64).repeat_interleave(per_row)
    return labels, per_row


@torch.no_grad()
def draw_samples(model, num: int, *, labels: Tensor | None, seed: int, options: dict, batch_size: int = 256) -> Tensor:
    """``num`` samples (or one per label) in [0, 1] on the CPU, from a generator seeded with ``seed``."""
    from lit_gen.metrics.sampling import generate_batches

    n = labels.shape[0] if labels is not None else num
    generator = torch.Generator().manual_seed(seed)
    labels = labels.to(model.device) if labels is not None else None
    return torch.cat([b.cpu() for b in generate_batches(model, n, batch_size, generator, options, labels=labels)])


def _test_images(datamodule, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """``count`` test images in [-1, 1] and their labels, chosen by a generator seeded with ``seed``."""
    dataset = datamodule.dataset("test")
    if len(dataset) < count:
        raise EvaluationError(f"the test split holds {len(dataset)} images; {count} are needed")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    items = [dataset[int(i)] for i in order]
    return torch.stack([img for img, _ in items]), torch.as_tensor([int(lbl) for _, lbl in items])


def _require_latent(model) -> None:
    if not isinstance(model, Autoencoding):
        raise EvaluationError(f"{type(model).__name__} has no encode/decode, so it has no latent space to "
                              f"interpolate or plot; use an autoencoder's checkpoint (ae, vae, vqvae)")


@torch.no_grad()
def interpolation_grid(model, datamodule, *, pairs: int, steps: int, seed: int = 0) -> Tensor:
    """(pairs * steps, C, H, W) images in [0, 1]: row i decodes lambda * h1 + (1 - lambda) * h2 of pair i.

    Column j uses lambda = j / (steps - 1), so the first column decodes h2 and the last h1.
    """
    _require_latent(model)
    if steps < 2 or pairs < 1:
        raise EvaluationError(f"--interpolate needs at least 2 steps and --pairs at least 1, got {steps} and {pairs}")
    images, _ = _test_images(datamodule, 2 * pairs, seed)
    images = images.to(model.device)
    was_training = model.training
    model.eval()
    try:
        h1, h2 = model.encode(images[:pairs]), model.encode(images[pairs:])
        lambdas = torch.linspace(0.0, 1.0, steps, device=h1.device)
        shape = (-1,) + (1,) * (h1.ndim - 1)
        rows = [model.decode(lam * h1 + (1.0 - lam) * h2) for lam in lambdas.view(shape)]  # steps x (pairs, C, H, W)
    finally:
        model.train(was_training)
    grid = torch.stack(rows, dim=1).flatten(0, 1)  # (pairs * steps, C, H, W), row-major by pair
    return ((grid + 1.0) / 2.0).clamp(0.0, 1.0).cpu()


@torch.no_grad()
def latent_scatter(model, datamodule, path: str | Path, *, max_points: int = 2000, seed: int = 0) -> Path:
    """Scatter plot of the test set's latents coloured by label: 2-D and 3-D as they are, larger ones PCA to 2-D."""
    from matplotlib.figure import Figure

    _require_latent(model)
    count = min(max_points, len(datamodule.dataset("test")))
    images, labels = _test_images(datamodule, count, seed)
    was_training = model.training
    model.eval()
    try:
        codes = torch.cat([model.encode(chunk.to(model.device)).flatten(1).double().cpu() for chunk in images.split(512)])
    finally:
        model.train(was_training)
    dim = codes.shape[1]
    figure = Figure(figsize=(6, 5), dpi=120)
    if dim == 3:
        import mpl_toolkits.mplot3d  # noqa: F401 - registers the 3-D projection

        ax = figure.add_subplot(projection="3d")
        points = ax.scatter(codes[:, 0], codes[:, 1], codes[:, 2], c=labels, cmap="tab10", s=6)
        ax.set_xlabel("z1"), ax.set_ylabel("z2"), ax.set_zlabel("z3")
    else:
        ax = figure.add_subplot()
        if dim <= 2:
            xy = codes if dim == 2 else torch.cat([codes, torch.zeros_like(codes)], 1)
            ax.set_xlabel("z1"), ax.set_ylabel("z2" if dim == 2 else "")
            title = f"latent space ({dim}-D)"
        else:
            centered = codes - codes.mean(0)
            _, s, vh = torch.linalg.svd(centered, full_matrices=False)
            xy = centered @ vh[:2].T
            share = (s[:2] ** 2 / (s ** 2).sum()).tolist()
            ax.set_xlabel(f"PC1 ({100 * share[0]:.0f}% of variance)"), ax.set_ylabel(f"PC2 ({100 * share[1]:.0f}%)")
            title = f"latent space ({dim}-D, PCA to 2-D)"
        points = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=6)
        ax.set_title(title)
    figure.colorbar(points, ax=ax, label="label")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path


# ----------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str]) -> argparse.Namespace:
    from lit_gen.metrics.sampling import add_sampler_arguments

    parser = argparse.ArgumentParser(prog="python -m lit_gen.sample", description="Images from a lit_gen checkpoint.")
    parser.add_argument("--ckpt", required=True, help="checkpoint file")
    parser.add_argument("--num", type=int, default=64, help="images in the grid (0: no grid); default 64")
    parser.add_argument("--out", default="samples.png", help="grid PNG (default samples.png)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", default=None, help="conditional models: 0-9 (one row per class) or 3,3,5")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: square, or per label)")
    parser.add_argument("--scale", type=int, default=0, help="pixel upscale factor (0: grids at least 256 px wide)")
    parser.add_argument("--batch-size", type=int, default=256)
    add_sampler_arguments(parser)
    latent = parser.add_argument_group("latent space (ae, vae, vqvae)")
    latent.add_argument("--interpolate", type=int, default=0, metavar="STEPS", help="interpolation grid with STEPS columns")
    latent.add_argument("--pairs", type=int, default=8, help="interpolation rows (pairs of test images); default 8")
    latent.add_argument("--interpolation-out", default=None, help="default <out stem>_interpolation.png")
    latent.add_argument("--latent-scatter", default=None, metavar="PNG", help="scatter plot of the test set's latents")
    latent.add_argument("--scatter-points", type=int, default=2000, help="test images in the scatter plot")
    parser.add_argument("--data", default=None, help="dataset name when the checkpoint has no config.yaml beside it")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: the one in the run's config)")
    parser.add_argument("--tensor", default=None, metavar="PT", help="also save the samples as a .pt file")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    from lit_gen.checkpoints import load_model
    from lit_gen.cli import setup_logging
    from lit_gen.images import save_grid
    from lit_gen.metrics.reference import datamodule_for_checkpoint
    from lit_gen.metrics.sampling import check_sample_options, pick_device, sampler_options

    args = parse_args(argv)
    setup_logging()
    if args.num < 0:
        raise EvaluationError(f"--num must be 0 or more, got {args.num}")
    model = load_model(args.ckpt, map_location=pick_device(args.device))
    options = check_sample_options(model, sampler_options(args))
    out = Path(args.out)
    if args.num > 0:
        labels, per_row = grid_labels(model, args.labels, args.num)
        images = draw_samples(model, args.num, labels=labels, seed=args.seed, options=options, batch_size=args.batch_size)
        print(f"samples    {save_grid(images, out, nrow=args.nrow or per_row, scale=args.scale)}")
        if args.tensor:
            tensor_path = Path(args.tensor)
            tensor_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"images": images, "labels": labels, "seed": args.seed, "checkpoint": str(args.ckpt),
                        "sample_options": options}, tensor_path)
            print(f"tensor     {tensor_path} {tuple(images.shape)} in [0, 1]")
    if args.interpolate or args.latent_scatter:
        _require_latent(model)
        datamodule, _ = datamodule_for_checkpoint(args.ckpt, data=args.data, data_root=args.data_root,
                                                  image_size=getattr(model.hparams, "image_size", None))
        datamodule.prepare_data()
        if args.interpolate:
            grid = interpolation_grid(model, datamodule, pairs=args.pairs, steps=args.interpolate, seed=args.seed)
            path = Path(args.interpolation_out or out.with_name(f"{out.stem}_interpolation.png"))
            print(f"interpolation {save_grid(grid, path, nrow=args.interpolate, scale=args.scale)}")
        if args.latent_scatter:
            print(f"scatter    {latent_scatter(model, datamodule, args.latent_scatter, max_points=args.scatter_points, seed=args.seed)}")
    return 0
