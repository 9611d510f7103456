"""Drawing many samples from a model for evaluation: options, seeds, batches, DDP shares.

Sampler options (``sampler``, ``steps``, ``guidance``, ``use_ema``...) go only to a model whose
``sample()`` names them (the diffusion family); any other family gets a clear error instead of a silent ignore.
"""

from __future__ import annotations

import argparse

import hashlib
import inspect
from collections.abc import Iterator

import torch
from torch import Tensor

from lit_gen.diffusion.samplers import sampler_help
from lit_gen.diffusion.schedule import SPACINGS
from lit_gen.errors import EvaluationError
from lit_gen.models.capabilities import SamplingDefaults

# Arguments of sample() that are not sampler options.
_CORE_ARGS = {"self", "n", "labels", "generator"}


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EvaluationError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EvaluationError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def sample_parameters(model) -> dict[str, object]:
    """The named options of ``model.sample()`` and their defaults (empty for families without any)."""
    params = inspect.signature(model.sample).parameters
    return {name: p.default for name, p in params.items()
            if name not in _CORE_ARGS and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_sample_options(model, options: dict) -> dict:
    """``options`` when ``model.sample()`` takes every one of them; EvaluationError naming the family otherwise."""
    accepted = sample_parameters(model)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        family = type(model).__name__
        takes = f"it takes {', '.join(sorted(accepted))}" if accepted else "it takes no sampler options"
        raise EvaluationError(f"{family}.sample() does not take {', '.join(unknown)} ({takes}); sampler options "
                              f"such as --sampler/--steps/--spacing/--guidance/--no-ema apply to diffusion checkpoints")
    return dict(options)


def sample_settings(model, options: dict) -> dict:
    """Effective sampler, steps, eta, guidance and weights ("ema"/"raw") for the protocol record.

    A model that chooses its own defaults (``SamplingDefaults``: the diffusion family's default sampler)
    says what runs; for the others the options and the defaults of their ``sample()`` signature do.
    """
    if isinstance(model, SamplingDefaults):
        return model.sample_record(options)
    effective = {**sample_parameters(model), **options}
    return {"sampler": effective.get("sampler"), "steps": effective.get("steps"), "eta": effective.get("eta"),
            "guidance": effective.get("guidance"), "weights": "raw"}


def derived_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed mixed from ``seed`` and ``parts`` (e.g. the DDP rank): nearby inputs give unrelated seeds."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(f"fid:{text}".encode(), digest_size=8).digest(), "little") & ((1 << 63) - 1)


def rank_seed(seed: int, rank: int) -> int:
    """The generator seed of one DDP rank: ``seed`` itself on rank 0 (so a one-process measurement
    draws exactly what ``python -m lit_gen.evaluate --seed seed`` draws), a derived seed elsewhere."""
    return seed if rank == 0 else derived_seed(seed, rank)


def share_of(total: int, rank: int, world_size: int) -> int:
    """How many of ``total`` samples rank ``rank`` draws: an even split, the first ranks taking the remainder."""
    return total // world_size + (1 if rank < total % world_size else 0)


@torch.no_grad()
def generate_batches(model, n: int, batch_size: int, generator: torch.Generator, options: dict | None = None,
                     labels: Tensor | None = None, progress: bool = False, desc: str = "sampling") -> Iterator[Tensor]:
    """Yield ``n`` samples in [0, 1] from ``model`` in batches of at most ``batch_size``, drawn from ``generator``."""
    if batch_size < 1:
        raise EvaluationError(f"batch size must be at least 1, got {batch_size}")
    options = dict(options or {})
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=desc, unit="img", disable=None)
    was_training = model.training
    model.eval()
    try:
        done = 0
        while done < n:
            b = min(batch_size, n - done)
            batch_labels = labels[done:done + b] if labels is not None else None
            try:
                images = model.sample(b, labels=batch_labels, generator=generator, **options)
            except ValueError as exc:  # the families validate their own options and labels
                raise EvaluationError(f"{type(model).__name__}.sample(): {exc}") from None
            done += b
            if bar is not None:
                bar.update(b)
            yield images
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()


# ----------------------------------------------------------------------------------- CLI flags
def add_sampler_arguments(parser) -> None:
    """The diffusion sampler flags shared by the sample and evaluate CLIs."""
    group = parser.add_argument_group("sampler options (diffusion checkpoints only)")
    group.add_argument("--sampler", default=None,
                       help=sampler_help())  # checked by the model, from the same table, in one line
    group.add_argument("--steps", type=int, default=None, help="denoising steps")
    group.add_argument("--eta", type=float, default=None, help="DDIM noise (0 = deterministic)")
    group.add_argument("--spacing", default=None,
                       help=f"which timesteps the steps keep (objective vp): {' | '.join(SPACINGS)}")
    group.add_argument("--recompute-eps", action=argparse.BooleanOptionalAction, default=None,
                       help="DDIM: rebuild eps from the clipped x0 (the default), or keep the network's own "
                            "with --no-recompute-eps")
    group.add_argument("--guidance", type=float, default=None, help="classifier-free guidance weight (1 = none)")
    group.add_argument("--no-ema", action="store_true", help="sample with the raw weights, not the EMA")


def sampler_options(args) -> dict:
    """Only the options the user gave, so families without them fail only when one is asked for."""
    options = {name: getattr(args, name) for name in ("sampler", "steps", "eta", "guidance", "spacing")
               if getattr(args, name) is not None}
    if getattr(args, "recompute_eps", None) is not None:
        options["recompute_eps"] = args.recompute_eps
    if args.no_ema:
        options["use_ema"] = False
    return options
