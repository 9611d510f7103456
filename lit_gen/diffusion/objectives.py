"""The training objectives of the diffusion family, each also a denoiser D(x, sigma) for the samplers.

Every objective noises data as ``x = alpha x0 + noise * eps`` at a *level* (alpha, noise); in
Karras et al. 2022's terms (EDM, "Elucidating the design space of diffusion-based generative
models", section 2) that is the scaled form of ``x / alpha = x0 + sigma eps`` with
``sigma = noise / alpha``, so one set of samplers serves them all:

- ``"vp"`` (``VPObjective``, Ho et al. 2020's variance-preserving DDPM objective; ``"ddpm"`` is its
  alias): alpha = sqrt(ab_t), noise = sqrt(1 - ab_t), hence sigma = sqrt((1 - ab_t) / ab_t); the network
  predicts eps, x0 or v at the integer timestep t. Optional min-SNR-gamma loss weighting (Hang et al. 2023).
- ``"edm"`` (``EDMObjective``, Karras et al. 2022, table 1): alpha = 1, noise = sigma, the network
  F is wrapped as D = c_skip x + c_out F(c_in x, c_noise) and sigma is log-normal in training.
- ``"flow"`` (``FlowObjective``, rectified flow / flow matching: Liu et al. 2022, Lipman et al. 2022):
  x_t = (1 - t) x0 + t eps, so alpha = 1 - t, noise = t, sigma = t / (1 - t); the network predicts
  the velocity eps - x0, and t is logit-normal in training (Esser et al. 2024, section 3.1).

Each objective is a registered component (``lit_gen.registry.OBJECTIVES``): its constructor arguments
are the ``model.objective`` section of a config, e.g. ``{name: flow, time_sampling: uniform}``. It states
its facts as class attributes: ``discrete`` (integer timesteps: the ancestral samplers apply) and
``likelihood_bound`` (a variational bound in bits/dim exists). Objectives are modules only so that their
buffers (the VP schedule) follow the model's device; they hold no parameters.

Training draws every random number from the global RNG (the loop reseeds it each step, which keeps
resume exact). Nothing here holds a network: samplers pass ``model_fn(x, time) -> output``.
Adding an objective: one class here with ``training_example``, ``levels`` and ``denoise``, one registry
line, one test (docs/adding-an-objective.md walks through it).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from typing import Annotated, Literal, NamedTuple

import torch
from torch import Tensor, nn

from lit_gen.diffusion.schedule import PREDICTIONS, BetaSchedule, NoiseSchedule, Prediction, Spacing, spaced_timesteps
from lit_gen.rules import PositiveFloat, PositiveInt, Range

FlowTimeSampling = Literal["logit_normal", "uniform"]
ModelFn = Callable[[Tensor, Tensor], Tensor]

# The U-Net's sinusoidal time embedding was built for timesteps 0 .. 999; continuous objectives
# scale their time variable by this so the embedding sees angles of the same range.
TIME_SCALE = 1000.0


class Level(NamedTuple):
    """One noise level: ``x = alpha x0 + noise eps``; ``time`` is what the network is told there.

    Samplers walk levels of one number each; a batch whose images sit at different levels (a likelihood
    bound's timesteps) holds tensors that broadcast against it, and ``time`` (B,) then.
    """

    alpha: float | Tensor
    noise: float | Tensor
    time: float | Tensor

    @property
    def sigma(self) -> float:
        """The noise-to-signal ratio noise / alpha (infinite at pure noise, alpha = 0)."""
        return math.inf if self.alpha == 0 else self.noise / self.alpha


class Denoised(NamedTuple):
    """The network's estimates at one level: the clean data and the noise, ``x = alpha x0 + noise eps``."""

    x0: Tensor
    eps: Tensor


class TrainingExample(NamedTuple):
    """One noised batch: regress ``net(x_t, time)`` on ``target`` with per-example ``weight``.

    ``quartile`` (B,) int64 says which quarter of the objective's noise-level distribution each
    example came from, 0 being the least noisy (logged as ``loss_q0`` .. ``loss_q3``).
    """

    x_t: Tensor
    time: Tensor
    target: Tensor
    weight: Tensor
    quartile: Tensor


def _quartile(cdf: Tensor) -> Tensor:
    return (cdf * 4).long().clamp(0, 3)


def min_snr_weight(snr: Tensor, gamma: float, prediction: Prediction) -> Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023, "Efficient diffusion training via Min-SNR weighting
    strategy", eq. 10 and section 3.4) for a network of kind ``prediction``.

    Each weight makes the loss equal ``min(SNR, gamma) ||x0 - x0_hat||^2`` (SNR = ab / (1 - ab)): the
    x0 loss is weighted by min(SNR, gamma); since ||x0 - x0_hat||^2 = ||eps - eps_hat||^2 / SNR, the
    eps loss by min(SNR, gamma) / SNR; since ||x0 - x0_hat||^2 = ||v - v_hat||^2 / (SNR + 1), the v
    loss by min(SNR, gamma) / (SNR + 1).
    """
    clipped = snr.clamp(max=gamma)
    if prediction == "eps":
        return clipped / snr
    if prediction == "x0":
        return clipped
    if prediction == "v":
        return clipped / (snr + 1)
    raise AssertionError(f"unknown prediction {prediction!r}")  # the config allows only PREDICTIONS


class Objective(nn.Module):
    """Base of the objectives: their facts, and the device their buffers are on."""

    name: str = ""
    #: Integer timesteps of a fixed schedule: the ancestral samplers (ddpm, ddim with eta) apply.
    discrete: bool = False
    #: A variational bound on the likelihood exists (``lit_gen.diffusion.likelihood``).
    likelihood_bound: bool = False

    @property
    def device(self) -> torch.device:
        return next(self.buffers(), torch.empty(0)).device

    def training_example(self, x0: Tensor) -> "TrainingExample":
        raise NotImplementedError

    def levels(self, steps: int, spacing: Spacing | None = None) -> list[Level]:
        raise NotImplementedError

    def denoise(self, model_fn: ModelFn, x: Tensor, level: Level) -> Denoised:
        raise NotImplementedError


class VPObjective(Objective):
    """DDPM's discrete variance-preserving objective (Ho et al. 2020, eq. 14), optionally min-SNR weighted.

    Args:
        timesteps (int, default 1000): diffusion steps T.
        beta_schedule ("linear" | "cosine", default "linear"): Ho et al.'s linear betas or Nichol &
            Dhariwal's cosine alpha-bar (``lit_gen.diffusion.schedule``).
        beta_start (float, default 1e-4), beta_end (float, default 0.02): ends of the linear schedule.
        prediction ("eps" | "x0" | "v", default "eps"): what the network outputs and the MSE targets
            (v: Salimans & Ho 2022).
        min_snr_gamma (float | None, default None): gamma of the min-SNR weighting (Hang et al. use 5);
            None = Ho et al.'s unweighted "simple" loss.
    """

    name = "vp"
    discrete = True
    likelihood_bound = True

    def __init__(self, timesteps: PositiveInt = 1000, beta_schedule: BetaSchedule = "linear",
                 beta_start: Annotated[float, Range(gt=0, lt=1)] = 1e-4, beta_end: Annotated[float, Range(gt=0, lt=1)] = 0.02,
                 prediction: Prediction = "eps", min_snr_gamma: PositiveFloat | None = None) -> None:
        super().__init__()
        assert prediction in PREDICTIONS, prediction  # the config checks the Literal
        self.schedule = NoiseSchedule(timesteps, beta_schedule, beta_start, beta_end)
        self.prediction = prediction
        self.min_snr_gamma = min_snr_gamma

    @classmethod
    def from_schedule(cls, schedule: NoiseSchedule, prediction: Prediction = "eps",
                      min_snr_gamma: float | None = None) -> "VPObjective":
        """The objective over a schedule built elsewhere (custom betas, a respaced or reordered schedule)."""
        objective = cls(timesteps=1, beta_schedule="linear", beta_start=0.5, beta_end=0.6, prediction=prediction,
                        min_snr_gamma=min_snr_gamma)
        objective.schedule = schedule
        return objective

    def training_example(self, x0: Tensor) -> TrainingExample:
        T = len(self.schedule)
        t = torch.randint(0, T, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        x_t = self.schedule.q_sample(x0, t, eps)
        target = self.schedule.target(x0, t, eps, self.prediction)
        if self.min_snr_gamma is None:
            weight = torch.ones(x0.shape[0], device=x0.device)
        else:
            ab = self.schedule.alphas_cumprod[t]  # float32 on purpose: MPS has no float64
            weight = min_snr_weight(ab / (1 - ab), self.min_snr_gamma, self.prediction)
        return TrainingExample(x_t, t, target, weight, t * 4 // T)

    def levels(self, steps: int, spacing: Spacing | None = None) -> list[Level]:
        """The levels at ``steps`` training timesteps (chosen by ``spacing``, default ``"linspace"``), noisiest first."""
        all_ab = self.schedule.alphas_cumprod64
        kept = spaced_timesteps(len(self.schedule), steps, spacing or "linspace", all_ab).flip(0)
        times = self.schedule.timestep_map.cpu()[kept]  # the network's timesteps (a respaced schedule maps its own)
        return [Level(math.sqrt(ab), math.sqrt(1.0 - ab), float(t)) for ab, t in zip(all_ab[kept].tolist(), times.tolist())]

    def denoise(self, model_fn: ModelFn, x: Tensor, level: Level) -> Denoised:
        """(x0, eps) from the network's output at ``level``: the one conversion every sampler and the bound use."""
        t = level.time if isinstance(level.time, Tensor) else torch.full((x.shape[0],), int(level.time), device=x.device)
        pred = model_fn(x, t)
        a, s = level.alpha, level.noise
        if self.prediction == "eps":
            return Denoised((x - s * pred) / a, pred)  # the network's own eps, not one rebuilt from x0
        if self.prediction == "x0":
            return Denoised(pred, (x - a * pred) / s)
        return Denoised(a * x - s * pred, s * x + a * pred)  # v: alpha^2 + noise^2 = 1 inverts it


class EDMObjective(Objective):
    """Karras et al. 2022's preconditioned denoiser (EDM, table 1 and section 5).

    D(x, sigma) = c_skip x + c_out F(c_in x, c_noise) with c_skip = sd^2 / (sigma^2 + sd^2),
    c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4
    (sd = sigma_data). Training draws ln(sigma) ~ N(p_mean, p_std^2) and minimises
    lambda(sigma) ||D(x0 + sigma eps) - x0||^2 with lambda = (sigma^2 + sd^2) / (sigma sd)^2. Since
    lambda c_out^2 = 1, that loss is exactly the unweighted ||F - (x0 - c_skip x) / c_out||^2, the
    form used here. Sampling walks Karras et al.'s sigmas (eq. 5, rho = 7) from sigma_max to sigma_min.

    Args:
        sigma_data (float, default 0.5): the data's standard deviation (0.5 for images in [-1, 1], as
            EDM uses; 1.0 for latents scaled to unit variance).
        p_mean (float, default -1.2), p_std (float, default 1.2): mean and std of ln(sigma) in training.
        sigma_min (float, default 0.002), sigma_max (float, default 80), rho (float, default 7): the
            sampling discretisation.
    """

    name = "edm"

    def __init__(self, sigma_data: PositiveFloat = 0.5, p_mean: float = -1.2, p_std: PositiveFloat = 1.2,
                 sigma_min: PositiveFloat = 0.002, sigma_max: PositiveFloat = 80.0, rho: PositiveFloat = 7.0) -> None:
        super().__init__()
        self.sigma_data, self.p_mean, self.p_std = sigma_data, p_mean, p_std
        self.sigma_min, self.sigma_max, self.rho = sigma_min, sigma_max, rho

    def preconditioning(self, sigma: Tensor | float) -> tuple:
        """(c_skip, c_out, c_in, network time) at ``sigma``; the network time is TIME_SCALE * c_noise."""
        # Python floats (sampling) in float64; training tensors keep their dtype (MPS has no float64).
        sigma = sigma if isinstance(sigma, Tensor) else torch.tensor(sigma, dtype=torch.float64)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1 / (sigma**2 + sd2).sqrt()
        return c_skip, c_out, c_in, TIME_SCALE * sigma.log() / 4

    def training_example(self, x0: Tensor) -> TrainingExample:
        n = torch.randn(x0.shape[0], device=x0.device)
        sigma = (self.p_mean + self.p_std * n).exp()
        eps = torch.randn_like(x0)
        c_skip, c_out, c_in, time = self.preconditioning(sigma)
        shape = (-1,) + (1,) * (x0.ndim - 1)
        x = x0 + sigma.view(shape) * eps
        target = (x0 - c_skip.view(shape) * x) / c_out.view(shape)
        return TrainingExample(c_in.view(shape) * x, time, target, torch.ones_like(time), _quartile(torch.special.ndtr(n)))

    def levels(self, steps: int, spacing: Spacing | None = None) -> list[Level]:
        """Karras et al.'s eq. 5: sigma_i = (s_max^(1/rho) + i / (N - 1) (s_min^(1/rho) - s_max^(1/rho)))^rho."""
        if spacing is not None:
            raise ValueError(f"spacing={spacing!r} picks discrete timesteps of objective vp; objective edm "
                             "samples at Karras et al.'s sigmas (rho 7): leave spacing unset")
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
        sigmas = (hi + ramp * (lo - hi)) ** self.rho
        return [Level(1.0, s, float(self.preconditioning(s)[3])) for s in sigmas.tolist()]

    def denoise(self, model_fn: ModelFn, x: Tensor, level: Level) -> Denoised:
        c_skip, c_out, c_in, time = (float(c) for c in self.preconditioning(level.noise))
        out = model_fn(c_in * x, torch.full((x.shape[0],), time, device=x.device))
        x0 = c_skip * x + c_out * out
        return Denoised(x0, (x - x0) / level.noise)


class FlowObjective(Objective):
    """Rectified flow / flow matching with the linear interpolant x_t = (1 - t) x0 + t eps (Liu et al. 2022,
    "Flow straight and fast"; Lipman et al. 2022, "Flow matching for generative modeling").

    The network predicts the velocity dx_t/dt = eps - x0; training draws t = sigmoid(n), n ~ N(0, 1),
    the logit-normal density of Esser et al. 2024 ("Scaling rectified flow transformers", section 3.1),
    which spends more of training at the intermediate t where the velocity is hardest to predict
    (``time_sampling="uniform"``: t ~ U(0, 1), Liu et al.'s and Lipman et al.'s choice).
    Sampling walks evenly spaced t from 1 (pure noise) down; the network is told TIME_SCALE * t.

    Args:
        time_sampling ("logit_normal" | "uniform", default "logit_normal"): how training draws t.
    """

    name = "flow"

    def __init__(self, time_sampling: FlowTimeSampling = "logit_normal") -> None:
        super().__init__()
        assert time_sampling in typing.get_args(FlowTimeSampling), time_sampling  # the config checks the Literal
        self.time_sampling = time_sampling

    def training_example(self, x0: Tensor) -> TrainingExample:
        if self.time_sampling == "logit_normal":
            n = torch.randn(x0.shape[0], device=x0.device)
            t, quantile = torch.sigmoid(n), torch.special.ndtr(n)
        else:
            t = quantile = torch.rand(x0.shape[0], device=x0.device)
        eps = torch.randn_like(x0)
        tt = t.view((-1,) + (1,) * (x0.ndim - 1))
        return TrainingExample((1 - tt) * x0 + tt * eps, TIME_SCALE * t, eps - x0, torch.ones_like(t), _quartile(quantile))

    def levels(self, steps: int, spacing: Spacing | None = None) -> list[Level]:
        """t = 1, 1 - 1/steps, ..., 1/steps: evenly spaced, noisiest first (the last step goes to t = 0)."""
        if spacing is not None:
            raise ValueError(f"spacing={spacing!r} picks discrete timesteps of objective vp; objective flow "
                             "samples at evenly spaced t: leave spacing unset")
        ts = torch.linspace(1, 0, steps + 1, dtype=torch.float64)[:-1]
        return [Level(1.0 - t, t, TIME_SCALE * t) for t in ts.tolist()]

    def denoise(self, model_fn: ModelFn, x: Tensor, level: Level) -> Denoised:
        t = level.noise
        v = model_fn(x, torch.full((x.shape[0],), level.time, device=x.device))
        return Denoised(x - t * v, x + (1 - t) * v)

