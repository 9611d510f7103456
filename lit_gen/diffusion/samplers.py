"""One entry point, ``sample_loop``, for every sampler of every diffusion objective.

Ancestral DDPM (Ho et al. 2020) and DDIM (Song et al. 2021) run over a respaced discrete
schedule (``NoiseSchedule.respace``), so every variant runs the same loop; only the update from
(x_t, predicted x_0) to x_{t-1} differs:

- ``"ddpm"``: draw from the posterior q(x_{t-1} | x_t, x_0) of the (respaced) schedule.
- ``"ddim"``: x_{t-1} = sqrt(ab') x0 + sqrt(1 - ab' - sigma^2) eps + sigma z with
  sigma = eta sqrt((1 - ab') / (1 - ab)) sqrt(1 - ab / ab'). eta = 0 is deterministic; eta = 1
  gives sigma^2 = posterior variance, i.e. the ancestral sampler. x0 is clipped (pixels) and, by
  default, eps is rebuilt from the clipped x0 (``recompute_eps=True``); ``recompute_eps=False``
  keeps the network's own eps, as diffusers' DDIM does. Over 3 training seeds the network's own eps
  scored 1.78x the FID at 8x8 and was not told apart at 16x16 (``bench/results/few_step_8.json``,
  ``few_step.json``), so rebuilding is the default.

The few-step ODE samplers see any objective as a denoiser D(x, sigma) over noise levels
``x = alpha x0 + noise eps`` (``lit_gen.diffusion.objectives``; Karras et al. 2022's framework) and
integrate the probability-flow ODE dy/dsigma = (y - D(y, sigma)) / sigma of y = x / alpha:

- ``"euler"``: first order; one network evaluation per step. On a VP schedule it is exactly DDIM
  with eta = 0 and no clipping; on a flow model exactly Euler in t.
- ``"heun"``: Karras et al. 2022, Algorithm 1 (deterministic): an Euler step corrected with the
  slope at its end; 2 steps - 1 evaluations (the last step, to sigma = 0, is Euler; so is a first
  step from sigma = infinity, i.e. a flow model's t = 1).
- ``"dpmpp_2m"``: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): second-order
  multistep in log-SNR on the data prediction, one evaluation per step.

With ``clip_x0`` (pixel models) they clamp every step's x0 to [-1, 1] and rebuild eps from it, as
DDIM does: the static thresholding of Saharia et al. 2022 that Lu et al. 2022 pair with DPM-Solver++ for
pixel-space models. Without it a briefly trained eps network's ODE wanders outside the data range
(on the 16x16 digits, ``dpmpp_2m --steps 10`` went from 2.5x DDIM-50's FID to below it:
``bench/results/few_step.json``).

The network is reached only through ``model_fn(x, time) -> output`` (time = the training
timesteps, or an objective's continuous time), so it never sees the schedule. Every random number
comes from ``generator``: x_T, then (DDPM/DDIM) one noise tensor per step except the last, whatever
``eta``, so a generator seed fixes the samples and the two samplers see the same noises.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lit_gen.diffusion.objectives import Denoised, DiffusionObjective, Level, VPObjective
from lit_gen.diffusion.schedule import PREDICTIONS, SPACINGS, NoiseSchedule, Prediction, Spacing, extract
from lit_gen.nn import noise

log = logging.getLogger(__name__)

Sampler = Literal["ddpm", "ddim", "euler", "heun", "dpmpp_2m"]
SAMPLERS = ("ddpm", "ddim", "euler", "heun", "dpmpp_2m")
ODE_SAMPLERS = ("euler", "heun", "dpmpp_2m")
ModelFn = Callable[[Tensor, Tensor], Tensor]


def sampler_that_runs(sampler: str, discrete: bool) -> str:
    """The sampler a request runs: ``"ddim"`` on a continuous objective (edm, flow) is ``"euler"``,
    the same first-order step along its ODE; records name the one that ran."""
    return "euler" if sampler == "ddim" and not discrete else sampler


@torch.no_grad()
def sample_loop(
    model_fn: ModelFn,
    schedule: NoiseSchedule | DiffusionObjective,
    shape: tuple[int, ...],
    *,
    sampler: Sampler = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    prediction: Prediction = "eps",
    clip_x0: bool = True,
    recompute_eps: bool = True,
    spacing: Spacing | None = None,
    generator: torch.Generator | None = None,
    x_T: Tensor | None = None,
    device: torch.device | None = None,
    progress: bool = False,
) -> Tensor:
    """Run the reverse process from pure noise to x_0.

    :param model_fn: ``(x_t (B, ...), time (B,)) -> output`` of x_t's shape; time is int64 for a
        discrete schedule, float for the continuous objectives.
    :param schedule: the schedule a DDPM network was trained with (with ``prediction``), or the
        training objective (``lit_gen.diffusion.objectives``); its device is used for the noise.
    :param shape: shape of the batch to generate, e.g. (n, C, H, W).
    :param sampler: ``"ddpm"`` (ancestral), ``"ddim"``, ``"euler"``, ``"heun"`` or ``"dpmpp_2m"``.
        For the continuous objectives (edm, flow) ``"ddim"`` is ``"euler"`` and ``"ddpm"`` does not exist.
    :param steps: number of denoising steps; None uses every timestep of a discrete schedule.
    :param eta: DDIM noise scale (0 = deterministic, 1 = ancestral); only ``"ddim"`` on a discrete schedule.
    :param prediction: what ``model_fn`` predicts when ``schedule`` is a NoiseSchedule: ``"eps"``, ``"x0"`` or ``"v"``.
    :param clip_x0: clamp every step's predicted x_0 to [-1, 1] (right for pixels, wrong for latents);
        the ODE samplers and DDIM rebuild eps from it.
    :param recompute_eps: DDIM only: use the eps implied by the clipped x_0 (the default) instead
        of the network's own (False, as diffusers' DDIM).
    :param spacing: which training timesteps a discrete schedule keeps for ``steps`` (``"linspace"``,
        ``"leading"``, ``"trailing"``, ``"karras"``; see ``spaced_timesteps``); None = ``"linspace"``
        for DDPM/DDIM, ``"karras"`` for the ODE samplers. The continuous objectives have their own
        discretisation and take None only.
    :param generator: source of every random draw; None uses the global RNG.
    :param x_T: the standard-normal starting noise (the ODE samplers scale it to their first
        level's noise); None draws it from ``generator``.
    :param device: where to generate; None = the schedule's device (CPU for the continuous objectives).
    :param progress: show a tqdm progress bar (for long runs).
    :return: the generated batch in model space (about [-1, 1] for pixels), on the schedule's device.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if spacing is not None and spacing not in SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {SPACINGS}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = ancestral), got {eta}")
    if isinstance(schedule, NoiseSchedule):
        assert prediction in PREDICTIONS, prediction  # a model's setting, checked where its config is read
        objective = VPObjective(schedule, prediction)
    else:
        objective = schedule
    discrete = isinstance(objective, VPObjective)
    if not discrete:
        if sampler == "ddpm" or eta != 0:
            raise ValueError(f"objective {objective.name} samples along its ODE: use sampler ddim (= euler), heun or "
                             "dpmpp_2m with eta 0; the ancestral ddpm sampler needs objective ddpm")
        if steps is None:
            raise ValueError(f"objective {objective.name} has no discrete timesteps: give the number of steps")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        sampler = sampler_that_runs(sampler, discrete=False)
    if device is None:
        device = objective.schedule.betas.device if discrete else torch.device("cpu")
    x_T = _start_noise(shape, x_T, generator, device)
    if sampler in ODE_SAMPLERS:
        if discrete and spacing is None:
            # DPM-Solver++'s multistep extrapolation suffers from linspace's uneven steps in log-SNR
            # (test_karras_spacing_suits_the_multistep_solver).
            spacing = "karras"
        levels = objective.levels(len(objective.schedule) if steps is None else steps, spacing)
        return _solve_ode(objective, model_fn, levels, x_T * levels[0].noise, sampler, clip_x0, progress)
    return _ancestral_loop(model_fn, objective, x_T, sampler, steps, spacing, eta, clip_x0, recompute_eps,
                           generator, progress)


def _start_noise(shape, x_T: Tensor | None, generator, device) -> Tensor:
    if x_T is not None:
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={tuple(shape)} was asked for")
        return x_T.to(device=device, dtype=torch.float32)
    return noise.randn(shape, generator=generator, device=device)


def _ancestral_loop(model_fn, objective: VPObjective, x: Tensor, sampler, steps, spacing, eta, clip_x0,
                    recompute_eps, generator, progress) -> Tensor:
    """DDPM / DDIM over the respaced discrete schedule."""
    schedule = objective.schedule
    if steps is None or (steps == len(schedule) and spacing in (None, "linspace")):
        respaced = schedule
    else:
        respaced = schedule.respace(steps, spacing or "linspace")
    shape, n = x.shape, x.shape[0]
    for i in tqdm(range(len(respaced) - 1, -1, -1), desc=f"{sampler} sampling", disable=not progress, leave=False):
        t = torch.full((n,), i, dtype=torch.long, device=x.device)
        pred = model_fn(x, respaced.timestep_map[t])
        x0 = respaced.predict_x0(x, t, pred, objective.prediction)
        eps = pred if objective.prediction == "eps" else respaced.predict_eps(x, t, x0)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        z = noise.randn(shape, generator=generator, device=x.device) if i > 0 else torch.zeros_like(x)
        if sampler == "ddpm":
            posterior = respaced.posterior(x0, x, t)
            x = posterior.mean + posterior.variance.sqrt() * z
        else:
            if recompute_eps:
                eps = respaced.predict_eps(x, t, x0)
            x = _ddim_step(respaced, x, t, x0, eps, z, eta)
    return x


def _ddim_step(schedule: NoiseSchedule, x: Tensor, t: Tensor, x0: Tensor, eps: Tensor, z: Tensor, eta: float) -> Tensor:
    """Song et al. 2021, eq. 12."""
    ab = extract(schedule.alphas_cumprod, t, x.shape)
    ab_prev = extract(schedule.alphas_cumprod_prev, t, x.shape)
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
    # The clamp guards against rounding making 1 - ab' - sigma^2 slightly negative when eta = 1.
    direction = (1 - ab_prev - sigma**2).clamp(min=0.0).sqrt()
    return ab_prev.sqrt() * x0 + direction * eps + sigma * z


# ----------------------------------------------------------------------------------- ODE samplers
def _solve_ode(objective, model_fn, levels: list[Level], x: Tensor, sampler: str, clip_x0: bool,
               progress: bool) -> Tensor:
    """Integrate from ``levels[0]`` (x is a sample there) to clean data, one update per level."""
    final = Level(1.0, 0.0, 0.0)
    previous: tuple[Level, Tensor] | None = None  # DPM-Solver++(2M)'s last level and x0 estimate
    for i in tqdm(range(len(levels)), desc=f"{sampler} sampling", disable=not progress, leave=False):
        here, there = levels[i], levels[i + 1] if i + 1 < len(levels) else final
        d = _thresholded(objective.denoise(model_fn, x, here), x, here, clip_x0)
        if there.noise == 0:
            # The last step lands on sigma = 0, where every sampler returns the denoised estimate.
            return d.x0
        if sampler == "dpmpp_2m":
            x = _dpmpp_2m_step(x, here, there, d.x0, previous)
            previous = (here, d.x0)
            continue
        euler = there.alpha * d.x0 + there.noise * d.eps  # = alpha' (x0 + sigma' eps): DDIM's eta = 0 step
        if sampler == "euler" or here.alpha == 0:
            x = euler
            continue
        # Heun: average the slope dy/dsigma = eps at both ends (Karras et al. 2022, Algorithm 1, lines 7-8).
        end = _thresholded(objective.denoise(model_fn, euler, there), euler, there, clip_x0)
        x = euler + there.alpha * (there.sigma - here.sigma) * (end.eps - d.eps) / 2
    raise AssertionError("the last level is always followed by sigma = 0")


def _thresholded(d: Denoised, x: Tensor, level: Level, clip_x0: bool) -> Denoised:
    """``d`` with x0 clamped to [-1, 1] and eps rebuilt from it (x = alpha x0 + noise eps); ``d`` itself without clipping."""
    if not clip_x0:
        return d
    x0 = d.x0.clamp(-1.0, 1.0)
    return Denoised(x0, (x - level.alpha * x0) / level.noise)


def _lambda(level: Level) -> float:
    """Half the log-SNR, log(alpha / noise): DPM-Solver's time variable (-inf at pure noise)."""
    return -math.inf if level.alpha == 0 else math.log(level.alpha / level.noise)


def _dpmpp_2m_step(x: Tensor, here: Level, there: Level, x0: Tensor, previous: tuple[Level, Tensor] | None) -> Tensor:
    """Lu et al. 2022 (DPM-Solver++), Algorithm 2, one step from ``here`` to ``there`` (noise > 0).

    x' = (noise' / noise) x - alpha' (e^-h - 1) D with h = lambda' - lambda; D is the current x0,
    or, after the first step, (1 + 1 / 2r) x0 - (1 / 2r) x0_prev with r = h_prev / h.
    """
    ratio = there.noise / here.noise
    # e^-h = (alpha noise') / (alpha' noise), written so that alpha = 0 (flow's t = 1) gives 0, not nan.
    decay = here.alpha * there.noise / (there.alpha * here.noise)
    d = x0
    if previous is not None:
        h = _lambda(there) - _lambda(here)
        h_prev = _lambda(here) - _lambda(previous[0])
        k = h / (2 * h_prev)  # 1 / 2r; 0 when the previous level was pure noise (h_prev infinite)
        d = (1 + k) * x0 - k * previous[1]
    return ratio * x - there.alpha * (decay - 1) * d
