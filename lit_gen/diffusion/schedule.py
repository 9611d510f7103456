"""The forward (noising) process of DDPM and everything derived from its betas.

Notation follows Ho et al. 2020: ``alphas = 1 - betas``, ``alphas_cumprod`` is alpha-bar_t and
``q(x_t | x_0) = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I)``. Constants are computed once in
float64 and stored as float32 buffers named after their formula, so they follow ``.to(device)``.

A schedule can be *respaced* to a subset of its timesteps (Nichol & Dhariwal 2021, section 4):
the kept steps keep their alpha-bar and get new betas, so DDPM and DDIM over fewer steps use the
same sampler code as the full chain.
"""

from __future__ import annotations

import math
import typing
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

BetaSchedule = Literal["linear", "cosine"]
Prediction = Literal["eps", "x0", "v"]
PREDICTIONS: tuple[str, ...] = typing.get_args(Prediction)
Spacing = Literal["linspace", "leading", "trailing", "karras"]
SPACINGS: tuple[str, ...] = typing.get_args(Spacing)


def spaced_timesteps(timesteps: int, steps: int, spacing: Spacing = "linspace", alphas_cumprod: Tensor | None = None) -> Tensor:
    """The ``steps`` training timesteps a respaced sampler visits, ascending (int64).

    The names are diffusers' (its ``timestep_spacing``; Lin et al. 2024, table 2, compare them):

    - ``"linspace"``: ``steps`` points evenly spread over [0, T - 1], rounded (999, 979, 958, ..., 20, 0
      for 50 of 1000): the first and last timesteps are always kept.
    - ``"leading"``: multiples of ``T // steps`` from 0 (980, 960, ..., 0 for 50 of 1000), diffusers'
      DDIM default; the noisiest step is below T - 1, so sampling starts from a slightly less noisy level.
    - ``"trailing"``: ``round(T - k T / steps) - 1`` for k = 0 .. steps - 1 (999, 979, ..., 19 for 50
      of 1000): starts at T - 1 and leaves the final step a wider jump to clean data.
    - ``"karras"``: the timesteps whose sigma = sqrt((1 - ab) / ab) is nearest (in log) to Karras et
      al. 2022's eq. 5 with rho = 7 between the schedule's sigma at 0 and at T - 1: dense at low
      noise, as the second-order samplers want. Needs ``alphas_cumprod``; neighbours that round to
      the same timestep are pushed apart so that ``steps`` distinct timesteps remain.
    """
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be in [1, {timesteps}] (the number of diffusion timesteps), got {steps}")
    if spacing == "linspace":
        return torch.linspace(0, timesteps - 1, steps, dtype=torch.float64).round().long()
    if spacing == "leading":
        return torch.arange(steps, dtype=torch.long) * (timesteps // steps)
    if spacing == "trailing":
        # floor(x + 0.5) rather than round-half-to-even: points >= 1 apart then never collide.
        points = timesteps - torch.arange(steps, dtype=torch.float64) * (timesteps / steps)
        return (torch.floor(points + 0.5).long() - 1).flip(0)
    if spacing == "karras":
        assert alphas_cumprod is not None and len(alphas_cumprod) == timesteps
        log_sigmas = (0.5 * ((1 - alphas_cumprod) / alphas_cumprod).log()).double()
        rho = 7.0
        lo, hi = (log_sigmas[0] / rho).exp(), (log_sigmas[-1] / rho).exp()
        wanted = rho * (lo + torch.linspace(0, 1, steps, dtype=torch.float64) * (hi - lo)).log()  # ascending
        kept = (wanted[:, None] - log_sigmas[None, :]).abs().argmin(1).tolist()
        for i in range(1, steps):  # strictly increasing, room left for the steps above
            kept[i] = max(kept[i], kept[i - 1] + 1)
        for i in range(steps - 1, -1, -1):
            kept[i] = min(kept[i], timesteps - steps + i)
        return torch.tensor(kept, dtype=torch.long)
    raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Ho et al.'s betas, evenly spaced from ``beta_start`` to ``beta_end`` (float64)."""
    return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal's cosine schedule: alpha-bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2) (float64).

    Betas are clipped at ``max_beta`` to avoid the singularity at t = T.
    """
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    alpha_bar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def extract(values: Tensor, t: Tensor, shape: torch.Size) -> Tensor:
    """``values[t]`` reshaped to (B, 1, 1, ...) so it broadcasts against a batch of ``shape``."""
    return values[t].reshape(t.shape[0], *([1] * (len(shape) - 1)))


class Posterior(NamedTuple):
    """q(x_{t-1} | x_t, x_0) = N(mean, variance); ``log_variance`` is clipped at t = 0."""

    mean: Tensor
    variance: Tensor
    log_variance: Tensor


class NoiseSchedule(nn.Module):
    """Betas, alpha-bars and the closed forms built on them.

    :param timesteps: number of diffusion steps T (>= 1); 1000 in Ho et al.
    :param kind: ``"linear"`` (Ho et al.) or ``"cosine"`` (Nichol & Dhariwal).
    :param beta_start: first beta of the linear schedule (0 < beta_start < beta_end).
    :param beta_end: last beta of the linear schedule (< 1).

    Index ``i`` of every buffer is a step of *this* schedule; ``timestep_map[i]`` is the timestep
    the network was trained on for it (the identity unless the schedule was respaced).
    """

    def __init__(
        self,
        timesteps: int = 1000,
        kind: BetaSchedule = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"timesteps must be at least 1, got {timesteps}")
        if kind == "linear":
            if not 0.0 < beta_start < beta_end < 1.0:
                raise ValueError(
                    f"the linear schedule needs 0 < beta_start < beta_end < 1, got beta_start={beta_start}, "
                    f"beta_end={beta_end} (Ho et al. use 1e-4 and 0.02)"
                )
            betas = linear_betas(timesteps, beta_start, beta_end)
        elif kind == "cosine":
            betas = cosine_betas(timesteps)
        else:
            raise ValueError(f"unknown beta schedule {kind!r}; choose 'linear' or 'cosine'")
        self.kind = kind
        self._set_betas(betas, torch.arange(timesteps))

    @classmethod
    def from_betas(cls, betas: Tensor, timestep_map: Tensor | None = None) -> "NoiseSchedule":
        """A schedule with the given betas (any float dtype; promoted to float64 for the math)."""
        schedule = cls.__new__(cls)
        nn.Module.__init__(schedule)
        schedule.kind = "custom"
        betas = betas.detach().to("cpu", torch.float64)
        schedule._set_betas(betas, torch.arange(len(betas)) if timestep_map is None else timestep_map.cpu())
        return schedule

    def _set_betas(self, betas: Tensor, timestep_map: Tensor) -> None:
        assert betas.ndim == 1 and len(betas) == len(timestep_map)
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("every beta must be in (0, 1)")
        self.num_steps = len(betas)
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        # Kept in float64 on the CPU (not a buffer: MPS has no float64) for respacing and the samplers' levels.
        self.alphas_cumprod64 = alphas_cumprod
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # posterior_variance[0] is 0; the log uses the next value there, as Ho et al. do.
        log_var = torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])) if self.num_steps > 1 \
            else torch.log(betas)
        constants = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": log_var,
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
        }
        # Not persistent: the hyperparameters rebuild them, so checkpoints need not store them.
        for name, value in constants.items():
            self.register_buffer(name, value.to(torch.float32), persistent=False)
        self.register_buffer("timestep_map", timestep_map.to(torch.long), persistent=False)

    def __len__(self) -> int:
        return self.num_steps

    # ------------------------------------------------------------------ respacing
    def respace(self, steps: int, spacing: Spacing = "linspace") -> "NoiseSchedule":
        """The schedule restricted to ``steps`` of its timesteps, chosen by ``spacing`` (see ``spaced_timesteps``).

        The kept timesteps keep their alpha-bar; betas become ``1 - alpha-bar_k / alpha-bar_{prev kept}``.
        ``steps == len(self)`` returns an equal schedule. The result is on this schedule's device.
        """
        kept = spaced_timesteps(self.num_steps, steps, spacing, self.alphas_cumprod64)
        alphas_cumprod = self.alphas_cumprod64[kept]
        previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        respaced = NoiseSchedule.from_betas(1.0 - alphas_cumprod / previous, self.timestep_map.cpu()[kept])
        return respaced.to(self.betas.device)

    # ------------------------------------------------------------------ forward process
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Draw x_t ~ q(x_t | x_0) with the given standard-normal ``noise``: sqrt(ab) x0 + sqrt(1 - ab) noise."""
        return (extract(self.sqrt_alphas_cumprod, t, x0.shape) * x0
                + extract(self.sqrt_one_minus_alphas_cumprod, t, x0.shape) * noise)

    def velocity(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022)."""
        return (extract(self.sqrt_alphas_cumprod, t, x0.shape) * noise
                - extract(self.sqrt_one_minus_alphas_cumprod, t, x0.shape) * x0)

    def target(self, x0: Tensor, t: Tensor, noise: Tensor, prediction: Prediction) -> Tensor:
        """What a network of the given ``prediction`` kind is trained to output for x_t = q_sample(x0, t, noise)."""
        if prediction == "eps":
            return noise
        if prediction == "x0":
            return x0
        if prediction == "v":
            return self.velocity(x0, t, noise)
        raise AssertionError(f"unknown prediction {prediction!r}")  # the config allows only PREDICTIONS

    # ------------------------------------------------------------------ reverse process
    def posterior(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Posterior:
        """q(x_{t-1} | x_t, x_0): mean = coef1 x0 + coef2 x_t, variance = beta_t (1 - ab_{t-1}) / (1 - ab_t)."""
        mean = (extract(self.posterior_mean_coef1, t, x_t.shape) * x0
                + extract(self.posterior_mean_coef2, t, x_t.shape) * x_t)
        return Posterior(
            mean,
            extract(self.posterior_variance, t, x_t.shape),
            extract(self.posterior_log_variance_clipped, t, x_t.shape),
        )
