"""One reverse-process loop for ancestral DDPM (Ho et al. 2020) and DDIM (Song et al. 2021).

Fewer steps than the schedule has come from ``NoiseSchedule.respace``, so every variant runs the
same loop; only the update from (x_t, predicted x_0) to x_{t-1} differs:

- ``"ddpm"``: draw from the posterior q(x_{t-1} | x_t, x_0) of the (respaced) schedule.
- ``"ddim"``: x_{t-1} = sqrt(ab') x0 + sqrt(1 - ab' - sigma^2) eps + sigma z with
  sigma = eta sqrt((1 - ab') / (1 - ab)) sqrt(1 - ab / ab'). eta = 0 is deterministic; eta = 1
  gives sigma^2 = posterior variance, i.e. the ancestral sampler.

The network is reached only through ``model_fn(x_t, t) -> prediction`` (t = the training
timesteps), so it never sees the schedule. Every random number comes from ``generator``, drawn
in a fixed order (x_T, then one noise tensor per step except the last, whatever ``eta``), so a
generator seed fixes the samples and the two samplers see the same noises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lit_gen.diffusion.schedule import PREDICTIONS, NoiseSchedule, Prediction, extract
from lit_gen.nn import noise

log = logging.getLogger(__name__)

Sampler = Literal["ddpm", "ddim"]
SAMPLERS = ("ddpm", "ddim")
ModelFn = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def sample_loop(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    sampler: Sampler = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    prediction: Prediction = "eps",
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
    x_T: Tensor | None = None,
    progress: bool = False,
) -> Tensor:
    """Run the reverse process from pure noise to x_0.

    :param model_fn: ``(x_t (B, ...), t (B,) int64) -> prediction`` of x_t's shape.
    :param schedule: the schedule the network was trained with (its device is used).
    :param shape: shape of the batch to generate, e.g. (n, C, H, W).
    :param sampler: ``"ddpm"`` (ancestral) or ``"ddim"``.
    :param steps: number of denoising steps; None uses every timestep of ``schedule``.
    :param eta: DDIM noise scale (0 = deterministic, 1 = ancestral); ignored by ``"ddpm"``.
    :param prediction: what ``model_fn`` predicts: ``"eps"``, ``"x0"`` or ``"v"``.
    :param clip_x0: clamp each predicted x_0 to [-1, 1] (right for pixels, wrong for latents).
    :param generator: source of every random draw; None uses the global RNG.
    :param x_T: the starting noise; None draws it from ``generator``.
    :param progress: show a tqdm progress bar (for long runs).
    :return: the generated batch in model space (about [-1, 1] for pixels), on the schedule's device.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = ancestral), got {eta}")
    respaced = schedule if steps is None or steps == len(schedule) else schedule.respace(steps)
    device = schedule.betas.device
    if x_T is not None:
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={tuple(shape)} was asked for")
        x = x_T.to(device=device, dtype=torch.float32)
    else:
        x = noise.randn(shape, generator=generator, device=device)

    n = shape[0]
    for i in tqdm(range(len(respaced) - 1, -1, -1), desc=f"{sampler} sampling", disable=not progress, leave=False):
        t = torch.full((n,), i, dtype=torch.long, device=device)
        pred = model_fn(x, respaced.timestep_map[t])
        x0 = respaced.predict_x0(x, t, pred, prediction)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        z = noise.randn(shape, generator=generator, device=device) if i > 0 else torch.zeros_like(x)
        if sampler == "ddpm":
            posterior = respaced.posterior(x0, x, t)
            x = posterior.mean + posterior.variance.sqrt() * z
        else:
            x = _ddim_step(respaced, x, t, x0, z, eta)
    return x


def _ddim_step(schedule: NoiseSchedule, x: Tensor, t: Tensor, x0: Tensor, z: Tensor, eta: float) -> Tensor:
    """Song et al. 2021, eq. 12, with eps recomputed from the (possibly clipped) x_0."""
    eps = schedule.predict_eps(x, t, x0)
    ab = extract(schedule.alphas_cumprod, t, x.shape)
    ab_prev = extract(schedule.alphas_cumprod_prev, t, x.shape)
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
    # The clamp guards against rounding making 1 - ab' - sigma^2 slightly negative when eta = 1.
    direction = (1 - ab_prev - sigma**2).clamp(min=0.0).sqrt()
    return ab_prev.sqrt() * x0 + direction * eps + sigma * z
