"""The variational bound of DDPM over all T terms (Ho et al. 2020, eq. 5), in nats per image.

    -log p(x_0) <= L_T + sum_{t>1} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))                          (the prior term, no network)
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),   x_t ~ q(x_t | x_0)
    L_0     = -log p(x_0 | x_1), a discretized Gaussian decoder (256 bins of [-1, 1])

p(x_{t-1} | x_t) is the reverse step our ancestral sampler takes: mean = the posterior mean at the
predicted x_0, variance = the posterior variance (Ho et al.'s "fixed small" choice; its clipped log
at the first step, as in their code). Each L_{t-1} uses one fresh x_t per image, as in Ho et al.'s
bits/dim loop, so the sum is an unbiased estimate of the bound; ``terms`` < T - 1 evaluates that many of
the L_{t-1} (stratified: each image draws one timestep per equal slice of [1, T), weighted by the
slice's width), still unbiased, for when T network calls per image are too many. L_0 and L_T are
always computed exactly once.

Index ``i`` of the schedule is the paper's step t = i + 1 (``i = 0`` holds L_0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from lit_gen.diffusion.objectives import Level, VPObjective
from lit_gen.diffusion.schedule import NoiseSchedule, extract
from lit_gen.nn.densities import discretized_gaussian_log_likelihood, normal_kl
from lit_gen.nn import draws

ModelFn = Callable[[Tensor, Tensor], Tensor]


class VariationalBound(NamedTuple):
    """The bound per image, in nats: ``total = prior + decoder + diffusion``.

    ``diffusion`` is the sum of the L_{t-1} terms (estimated from ``terms`` of them when fewer than T - 1).
    """

    total: Tensor
    prior: Tensor
    decoder: Tensor
    diffusion: Tensor
    terms: int


def prior_term(schedule: NoiseSchedule, x0: Tensor) -> Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) per image (nats)."""
    t = torch.full((x0.shape[0],), len(schedule) - 1, dtype=torch.long, device=x0.device)
    mean = extract(schedule.sqrt_alphas_cumprod, t, x0.shape) * x0
    logvar = torch.log(extract(1.0 - schedule.alphas_cumprod, t, x0.shape)).expand_as(x0)
    return normal_kl(mean, logvar, torch.zeros_like(x0), torch.zeros_like(x0)).flatten(1).sum(1)


def timestep_term(model_fn: ModelFn, objective: VPObjective, x0: Tensor, t: Tensor, *, clip_x0: bool,
                  decoder: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """Per image (nats), with x_t drawn from ``generator``: L_{t-1} (``t`` > 0 everywhere), or with
    ``decoder=True`` L_0 (``t`` = 0 everywhere). The network is read through the objective's denoiser,
    as the samplers read it, at each image's own level."""
    schedule = objective.schedule
    eps = draws.randn(x0.shape, generator=generator, device=x0.device)
    x_t = schedule.q_sample(x0, t, eps)
    level = Level(extract(schedule.sqrt_alphas_cumprod, t, x0.shape), extract(schedule.sqrt_one_minus_alphas_cumprod,
                                                                             t, x0.shape), schedule.timestep_map[t])
    x0_hat = objective.denoise(model_fn, x_t, level).x0
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
    model = schedule.posterior(x0_hat, x_t, t)
    if decoder:
        return -discretized_gaussian_log_likelihood(x0, model.mean, 0.5 * model.log_variance).flatten(1).sum(1)
    true = schedule.posterior(x0, x_t, t)
    return normal_kl(true.mean, true.log_variance, model.mean, model.log_variance).flatten(1).sum(1)


@torch.no_grad()
def variational_bound(model_fn: ModelFn, objective: VPObjective, x0: Tensor, *, clip_x0: bool = True,
                      terms: int | None = None, generator: torch.Generator | None = None) -> VariationalBound:
    """The bound on -log p(x0) per image (nats) of the model ``model_fn`` under ``schedule``.

    Args:
        model_fn: ``(x_t, t) -> prediction`` (t = training timesteps), as the samplers take it.
        objective: the discrete objective the network was trained with (its full, not respaced, schedule
            and what the network predicts).
        x0: (B, C, H, W) data in [-1, 1].
        clip_x0: clamp predicted x_0 to [-1, 1], as the pixel sampler does.
        terms: L_{t-1} terms to evaluate (1 .. T - 1); None evaluates all of them once each.
        generator: source of the x_t draws (and of the stratified timesteps).
    """
    schedule = objective.schedule
    T = len(schedule)
    all_terms = T - 1
    terms = all_terms if terms is None else terms
    if T > 1 and not 1 <= terms <= all_terms:
        raise ValueError(f"terms must be in [1, {all_terms}] (the model's timesteps after the first), got {terms}")
    b = x0.shape[0]
    device = x0.device
    def term(t: Tensor, decoder: bool = False) -> Tensor:
        return timestep_term(model_fn, objective, x0, t, clip_x0=clip_x0, decoder=decoder, generator=generator)

    # L_0 is always evaluated: it is one call, and often the largest single term.
    decoder = term(torch.zeros(b, dtype=torch.long, device=device), decoder=True)
    diffusion = torch.zeros(b, device=device)
    if terms == all_terms:
        for step in range(1, T):
            diffusion += term(torch.full((b,), step, dtype=torch.long, device=device))
    else:
        # Each image draws its own timestep in each of ``terms`` equal slices of [1, T), so every
        # region of the chain is represented and images' estimates are independent.
        edges = 1 + torch.linspace(0, all_terms, terms + 1, dtype=torch.float64)
        for k in range(terms):
            offsets = draws.rand((b,), generator=generator, dtype=torch.float64)
            t = (edges[k] + offsets * (edges[k + 1] - edges[k])).floor().long().clamp(max=T - 1)
            # A slice of width w stands for w terms: scale each draw by it (unbiased).
            diffusion += term(t.to(device)) * float(edges[k + 1] - edges[k])
    prior = prior_term(schedule, x0)
    return VariationalBound(prior + decoder + diffusion, prior, decoder, diffusion, terms)
