"""The samplers of the diffusion family: one function each, one table (``SAMPLERS``) that names them.

Every sampler walks a list of noise levels ``x = alpha x0 + noise eps`` from the noisiest to clean
data (``Level``; the objective lists them: ``objective.levels(steps, spacing)``), and reaches the
network only through the objective's denoiser, ``objective.denoise(model_fn, x, level) -> (x0, eps)``
(``lit_gen.diffusion.objectives``; Karras et al. 2022's framework), so there is one way from a network
output to x0. The samplers differ only in how they step from one level to the next:

- ``ddpm`` (Ho et al. 2020): a draw from the posterior q(x_{t-1} | x_t, x0) of the respaced discrete
  schedule; needs a discrete (VP) objective.
- ``ddim`` (Song et al. 2021, eq. 12): x' = alpha' x0 + sqrt(noise'^2 - sigma^2) eps + sigma z with
  sigma = eta sqrt((1 - ab') / (1 - ab)) sqrt(1 - ab / ab'), ab = alpha^2: eta = 0 is deterministic,
  eta = 1 the ancestral sampler. By default eps is rebuilt from the clipped x0 (``recompute_eps``); with
  ``recompute_eps=False`` it keeps the network's own, as diffusers' DDIM does. On a continuous objective
  (edm, flow) ``ddim`` is ``euler``, the same first-order step along its ODE.
- ``euler``: first order along the probability-flow ODE dy/dsigma = (y - D(y, sigma)) / sigma of
  y = x / alpha; one evaluation per step. On a VP schedule it is DDIM with eta = 0.
- ``heun`` (Karras et al. 2022, Algorithm 1): an Euler step corrected with the slope at its end;
  2 steps - 1 evaluations (the last step, to sigma = 0, is Euler; so is a first step from sigma =
  infinity, i.e. a flow model's t = 1).
- ``dpmpp_2m`` (Lu et al. 2022, "DPM-Solver++", Algorithm 2): second-order multistep in log-SNR on the
  data prediction, one evaluation per step.

With ``clip_x0`` (pixel models) every step's x0 is clamped to [-1, 1] and eps rebuilt from it: the
static thresholding of Saharia et al. 2022 that Lu et al. 2022 pair with DPM-Solver++ for pixel
models; without it a briefly trained network's ODE wanders outside the data range.

Every random number comes from ``generator``: x_T first, then (``ddpm``, ``ddim``) one noise tensor per
step except the last, whatever ``eta``, so a seed fixes the samples and both see the same noises.

Adding a sampler: write ``def name(step: Step) -> Tensor`` (the loop over ``step.levels``), add one
``SAMPLERS`` line saying how many network evaluations it makes and whether it needs a discrete
objective, and one test (docs/adding-a-sampler.md walks through it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lit_gen.diffusion.objectives import Denoised, Level, ModelFn
from lit_gen.nn import draws

#: The clean end every walk finishes on (alpha 1, no noise).
CLEAN = Level(1.0, 0.0, 0.0)


@dataclass
class Step:
    """What a sampler function gets: the objective's denoiser, the levels to walk, the options, and ``x_T``:
    standard-normal noise, which the ancestral samplers start from (Ho et al.'s x_T ~ N(0, I)) and the
    ODE samplers scale to their first level's noise."""

    denoise: Callable[[Tensor, Level], Denoised]
    levels: list[Level]
    x_T: Tensor
    generator: torch.Generator | None
    clip_x0: bool
    eta: float = 0.0
    recompute_eps: bool = True
    progress: bool = False
    name: str = ""

    def walk(self) -> list[tuple[int, Level, Level]]:
        """(index, level, next level) from the noisiest level to clean data, with a progress bar if asked."""
        pairs = [(i, here, self.levels[i + 1] if i + 1 < len(self.levels) else CLEAN)
                 for i, here in enumerate(self.levels)]
        return list(tqdm(pairs, desc=f"{self.name} sampling", disable=not self.progress, leave=False))

    def denoised(self, x: Tensor, level: Level) -> Denoised:
        """The denoiser's estimate at ``level``, thresholded when ``clip_x0``."""
        return thresholded(self.denoise(x, level), x, level, self.clip_x0)

    def noise(self, last: bool) -> Tensor:
        """The step's fresh noise (zeros on the last step, drawn nowhere)."""
        shape, device = self.x_T.shape, self.x_T.device
        return torch.zeros_like(self.x_T) if last else draws.randn(shape, generator=self.generator, device=device)

    def ode_start(self) -> Tensor:
        """x_T at the first level's noise, where an ODE sampler starts."""
        return self.x_T * self.levels[0].noise


def thresholded(d: Denoised, x: Tensor, level: Level, clip_x0: bool) -> Denoised:
    """``d`` with x0 clamped to [-1, 1] and eps rebuilt from it (x = alpha x0 + noise eps); ``d`` itself without clipping."""
    if not clip_x0:
        return d
    x0 = d.x0.clamp(-1.0, 1.0)
    return Denoised(x0, (x - level.alpha * x0) / level.noise)


# ----------------------------------------------------------------------------------- the samplers
def ddpm(step: Step) -> Tensor:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2) over the levels of a respaced discrete schedule."""
    x = step.x_T
    for i, here, there in step.walk():
        d = step.denoised(x, here)
        z = step.noise(last=there.noise == 0)
        ab, ab_next = here.alpha**2, there.alpha**2
        beta = 1.0 - ab / ab_next  # this (respaced) step's beta
        # Posterior q(x' | x, x0): mean = coef_x0 x0 + coef_x x, variance = beta (1 - ab') / (1 - ab).
        coef_x0 = beta * there.alpha / (1.0 - ab)
        coef_x = (1.0 - ab_next) * math.sqrt(1.0 - beta) / (1.0 - ab)
        std = math.sqrt(beta * (1.0 - ab_next) / (1.0 - ab))
        x = coef_x0 * d.x0 + coef_x * x + std * z
    return x


def ddim(step: Step) -> Tensor:
    """Song et al. 2021, eq. 12, with ``eta`` (0: deterministic) over the levels of a respaced discrete schedule."""
    x = step.x_T
    for i, here, there in step.walk():
        raw = step.denoise(x, here)
        d = thresholded(raw, x, here, step.clip_x0)
        eps = d.eps if step.recompute_eps else raw.eps
        z = step.noise(last=there.noise == 0)
        ab, ab_next = here.alpha**2, there.alpha**2
        sigma = step.eta * math.sqrt((1.0 - ab_next) / (1.0 - ab) * (1.0 - ab / ab_next))
        # max(): rounding can make noise'^2 - sigma^2 slightly negative when eta = 1.
        x = there.alpha * d.x0 + math.sqrt(max(there.noise**2 - sigma**2, 0.0)) * eps + sigma * z
    return x


def euler(step: Step) -> Tensor:
    """First-order steps along the probability-flow ODE: x' = alpha' x0 + noise' eps (DDIM's eta = 0 step)."""
    x = step.ode_start()
    for _, here, there in step.walk():
        d = step.denoised(x, here)
        x = there.alpha * d.x0 + there.noise * d.eps
    return x


def heun(step: Step) -> Tensor:
    """Karras et al. 2022, Algorithm 1: average the slope dy/dsigma = eps at both ends of each Euler step."""
    x = step.ode_start()
    for _, here, there in step.walk():
        d = step.denoised(x, here)
        predicted = there.alpha * d.x0 + there.noise * d.eps
        if there.noise == 0 or here.alpha == 0:  # into clean data, or out of pure noise: Euler only
            x = predicted
            continue
        end = step.denoised(predicted, there)
        x = predicted + there.alpha * (there.sigma - here.sigma) * (end.eps - d.eps) / 2
    return x


def dpmpp_2m(step: Step) -> Tensor:
    """Lu et al. 2022 (DPM-Solver++), Algorithm 2: second-order multistep in half the log-SNR, lambda = log(alpha / noise).

    x' = (noise' / noise) x - alpha' (e^-h - 1) D with h = lambda' - lambda; D is the current x0, or, after
    the first step, (1 + 1 / 2r) x0 - (1 / 2r) x0_prev with r = h_prev / h.
    """
    x = step.ode_start()
    previous: tuple[Level, Tensor] | None = None
    for _, here, there in step.walk():
        d = step.denoised(x, here)
        if there.noise == 0:  # the last step lands on clean data: the denoised estimate itself
            return d.x0
        # e^-h = (alpha noise') / (alpha' noise), written so that alpha = 0 (flow's t = 1) gives 0, not nan.
        decay = here.alpha * there.noise / (there.alpha * here.noise)
        data = d.x0
        if previous is not None:
            k = (_lambda(there) - _lambda(here)) / (2 * (_lambda(here) - _lambda(previous[0])))  # 1 / 2r
            data = (1 + k) * d.x0 - k * previous[1]
        x = (there.noise / here.noise) * x - there.alpha * (decay - 1) * data
        previous = (here, d.x0)
    return x


def _lambda(level: Level) -> float:
    """Half the log-SNR, log(alpha / noise): DPM-Solver's time variable (-inf at pure noise)."""
    return -math.inf if level.alpha == 0 else math.log(level.alpha / level.noise)


# ----------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class SamplerInfo:
    """A sampler's function and its facts: the CLI help, the checks and the records read them here."""

    run: Callable[[Step], Tensor]
    #: Network evaluations per sample for ``steps`` steps (without guidance's doubling).
    evaluations: Callable[[int], int]
    #: Whether it needs a discrete (VP) objective: the ancestral samplers draw from its posterior.
    discrete_only: bool
    #: What a continuous objective runs instead (None: itself).
    on_continuous: str | None
    help: str


SAMPLERS: dict[str, SamplerInfo] = {
    "ddpm": SamplerInfo(ddpm, lambda steps: steps, True, None, "ancestral (Ho et al.); steps = timesteps for the paper's"),
    "ddim": SamplerInfo(ddim, lambda steps: steps, False, "euler", "deterministic at eta 0 (Song et al.)"),
    "euler": SamplerInfo(euler, lambda steps: steps, False, None, "first-order ODE steps"),
    "heun": SamplerInfo(heun, lambda steps: max(1, 2 * steps - 1), False, None, "second order, 2 x steps - 1 evaluations"),
    "dpmpp_2m": SamplerInfo(dpmpp_2m, lambda steps: steps, False, None, "DPM-Solver++(2M), second-order multistep"),
}
#: The sampler names as a type: the config and ``sample()`` check a value against it.
Sampler = Literal[tuple(SAMPLERS)]  # type: ignore[valid-type]


def sampler_help() -> str:
    """``name (what it is) | ...`` for the CLI's --sampler help, from the table."""
    return " | ".join(f"{name} ({info.help})" for name, info in SAMPLERS.items())


def sampler_that_runs(sampler: str, discrete: bool) -> str:
    """The sampler a request runs: a continuous objective runs ``on_continuous`` (``"ddim"`` is ``"euler"``
    there, the same first-order step along its ODE); records name the one that ran."""
    info = SAMPLERS[sampler]
    return info.on_continuous if not discrete and info.on_continuous else sampler


def check_sampler(sampler: str, *, discrete: bool, eta: float = 0.0) -> str:
    """The sampler that runs for this request, or ValueError naming what is wrong and the choices."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = ancestral), got {eta}")
    runs = sampler_that_runs(sampler, discrete)
    if not discrete and (SAMPLERS[runs].discrete_only or eta != 0):
        ode = ", ".join(name for name, info in SAMPLERS.items() if not info.discrete_only)
        raise ValueError(f"a continuous objective samples along its ODE: use {ode} with eta 0; the ancestral {sampler} "
                         "sampler needs a discrete (vp) objective")
    return runs


@torch.no_grad()
def sample(model_fn: ModelFn, objective, shape: tuple[int, ...], *, sampler: str = "ddim", steps: int | None = None,
           spacing: str | None = None, clip_x0: bool = True, generator: torch.Generator | None = None,
           x_T: Tensor | None = None, device: torch.device | None = None, progress: bool = False,
           eta: float = 0.0, recompute_eps: bool = True) -> Tensor:
    """Generate a batch of ``shape`` from pure noise with one sampler of ``SAMPLERS``.

    :param model_fn: ``(x (B, ...), time (B,)) -> output`` of x's shape; time is what the objective tells
        the network (int64 timesteps for vp, a float time for edm and flow).
    :param objective: the training objective (``lit_gen.diffusion.objectives``): it lists the levels and
        turns network outputs into (x0, eps).
    :param sampler: a name of ``SAMPLERS``; ``steps``: levels to walk (None: every timestep of a discrete
        objective); ``spacing``: which timesteps a discrete objective keeps (``lit_gen.diffusion.schedule``).
    :param clip_x0: clamp every step's x0 to [-1, 1] (right for pixels, wrong for latents).
    :param generator: source of every random draw; ``x_T``: the standard-normal start (scaled to the first
        level's noise), drawn from ``generator`` when None.
    :param eta, recompute_eps: DDIM's options (see the module docstring).
    :return: the batch in model space (about [-1, 1] for pixels), on ``device`` (default: the objective's).
    """
    runs = check_sampler(sampler, discrete=objective.discrete, eta=eta)
    if steps is None:
        if not objective.discrete:
            raise ValueError(f"objective {objective.name} has no discrete timesteps: give the number of steps")
        steps = len(objective.schedule)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if spacing is None and objective.discrete:
        # The ancestral samplers keep Ho et al.'s even spacing; the ODE samplers take Karras et al.'s, which
        # DPM-Solver++'s multistep extrapolation needs (test_karras_spacing_suits_the_multistep_solver).
        spacing = "linspace" if SAMPLERS[runs].discrete_only or runs == "ddim" else "karras"
    levels = objective.levels(steps, spacing)
    device = objective.device if device is None else device
    if x_T is not None and tuple(x_T.shape) != tuple(shape):
        raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={tuple(shape)} was asked for")
    start = draws.randn(shape, generator=generator, device=device) if x_T is None else x_T.to(device, torch.float32)
    step = Step(lambda x, level: objective.denoise(model_fn, x, level), levels, start, generator, clip_x0, eta,
                recompute_eps, progress, runs)
    return SAMPLERS[runs].run(step)

