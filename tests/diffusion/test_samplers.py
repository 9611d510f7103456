"""The one sampling loop: DDIM/DDPM agree where theory says so and recover the data with an exact model."""

import math

import numpy as np
import pytest
import torch

from lit_gen.diffusion.objectives import TIME_SCALE, EDMObjective, FlowObjective, VPObjective
from tests.diffusion.sampling import sample_loop
from lit_gen.diffusion.schedule import SPACINGS, NoiseSchedule, spaced_timesteps

T = 20


def toy_model(x, t):
    """A fixed, t-dependent stand-in for a network (large enough to make clipping matter)."""
    return 1.5 * torch.tanh(x) * (1 + t.float().view(-1, 1, 1, 1) / T) - 0.3


def gaussian_data_eps(schedule: NoiseSchedule, mu: float, std: float):
    """The exact eps-prediction E[eps | x_t] for data x0 ~ N(mu, std^2)."""

    def model_fn(x, t):
        ab = schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * std**2 + 1 - ab)

    return model_fn


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def x0_from_eps(schedule: NoiseSchedule, x, t, eps):
    """x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab), written out here independently of the library."""
    ab = schedule.alphas_cumprod[t].view(-1, *([1] * (x.ndim - 1)))
    return (x - (1 - ab).sqrt() * eps) / ab.sqrt()


@pytest.mark.parametrize("clip_x0", [True, False])
def test_ddim_with_eta_1_over_all_steps_is_ancestral_ddpm(clip_x0):
    # The posterior mean uses the clipped x0 throughout, i.e. DDIM with eps rebuilt from it.
    s = NoiseSchedule(T)
    shape = (4, 1, 3, 3)
    ddpm = sample_loop(toy_model, s, shape, sampler="ddpm", generator=g(0), clip_x0=clip_x0)
    ddim = sample_loop(toy_model, s, shape, sampler="ddim", eta=1.0, generator=g(0), clip_x0=clip_x0, recompute_eps=True)
    torch.testing.assert_close(ddim, ddpm, rtol=1e-4, atol=1e-4)
    # The noise matters: another seed gives other samples.
    assert not torch.allclose(sample_loop(toy_model, s, shape, sampler="ddpm", generator=g(1), clip_x0=clip_x0), ddpm)


def test_ddim_eta_0_is_a_deterministic_map_of_the_start_noise():
    s = NoiseSchedule(T)
    x_T = torch.randn(3, 2, 4, 4, generator=g(5))
    a = sample_loop(toy_model, s, x_T.shape, sampler="ddim", steps=7, eta=0.0, x_T=x_T, generator=g(1))
    b = sample_loop(toy_model, s, x_T.shape, sampler="ddim", steps=7, eta=0.0, x_T=x_T, generator=g(2))
    assert torch.equal(a, b)
    c = sample_loop(toy_model, s, x_T.shape, sampler="ddpm", steps=7, x_T=x_T, generator=g(2))
    assert not torch.allclose(a, c)


def test_same_generator_gives_same_samples():
    s = NoiseSchedule(T)
    for sampler in ("ddpm", "ddim"):
        a = sample_loop(toy_model, s, (2, 1, 4, 4), sampler=sampler, steps=5, eta=0.5, generator=g(3))
        b = sample_loop(toy_model, s, (2, 1, 4, 4), sampler=sampler, steps=5, eta=0.5, generator=g(3))
        assert torch.equal(a, b)


def test_respaced_sampling_calls_the_model_at_training_timesteps():
    s = NoiseSchedule(T)
    seen = []

    def recording(x, t):
        seen.append(t[0].item())
        assert bool((t == t[0]).all())
        return toy_model(x, t)

    sample_loop(recording, s, (2, 1, 2, 2), sampler="ddim", steps=5, generator=g(0))
    assert seen == s.respace(5).timestep_map.flip(0).tolist()
    assert seen[0] == T - 1 and seen[-1] == 0


def exact_linear_map(alphas_cumprod: np.ndarray, sampler: str, mu: float, std: float) -> tuple[float, float, float]:
    """(A, B, V): the sampler over the steps of ``alphas_cumprod`` (ascending, float64) with the exact eps model
    of N(mu, std^2) data takes x_T to A x_T + B + N(0, V).

    E[x0 | x_t] is affine in x_t, so every step is affine plus (DDPM) independent Gaussian noise, and the
    chain is one affine map plus the noises pushed through the later steps. Written from Ho et al.'s and
    Song et al.'s update rules, independently of NoiseSchedule and sample_loop.
    """
    A, B, V = 1.0, 0.0, 0.0
    for i in range(len(alphas_cumprod) - 1, -1, -1):
        ab, ab_prev = alphas_cumprod[i], (alphas_cumprod[i - 1] if i > 0 else 1.0)
        a, s = math.sqrt(ab), math.sqrt(1 - ab)
        p = a * std**2 / (ab * std**2 + 1 - ab)  # E[x0 | x] = p x + q
        q = mu * (1 - a * p)
        if sampler == "ddpm":  # the posterior q(x_{t-1} | x_t, x0) at the predicted x0
            beta = 1 - ab / ab_prev
            coef1, coef2 = beta * math.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab)
            k, l, noise = coef1 * p + coef2, coef1 * q, beta * (1 - ab_prev) / (1 - ab)
        else:  # DDIM, eta = 0: sqrt(ab') x0 + sqrt(1 - ab') eps with eps = (x - a x0) / s
            k = math.sqrt(ab_prev) * p + math.sqrt(1 - ab_prev) * (1 - a * p) / s
            l, noise = (math.sqrt(ab_prev) - math.sqrt(1 - ab_prev) * a / s) * q, 0.0
        A, B, V = k * A, k * B + l, k * k * V + noise  # the last step (i = 0) adds no noise: its variance is 0
    return A, B, V


def check_exact_linear_map(out: torch.Tensor, x_T: torch.Tensor, sampler: str, A: float, B: float, V: float) -> None:
    """``out`` is A x_T + B (DDIM: to rounding), plus (DDPM) noise of mean 0 and variance V."""
    residual = (out.double() - (A * x_T.double() + B)).flatten()
    n = len(residual)
    if sampler == "ddim":
        # Deterministic: float32 rounding over the steps leaves ~1e-6 (measured); skipping DDIM-20's first step 4e-4.
        assert residual.abs().max().item() < 1e-4
    else:
        # The noise the steps add is all there is: its mean within 4 standard errors (sqrt(V / n)) of 0 and its
        # variance within 4 of theirs (V sqrt(2 / (n - 1)): 2% at n = 5000) of V. A sampler that drops its noise
        # leaves variance 0; a noise 20% short leaves 0.64 V.
        assert abs(residual.mean().item()) < 4 * math.sqrt(V / n)
        assert abs(residual.var().item() / V - 1) < 4 * math.sqrt(2 / (n - 1))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_full_chain_with_the_exact_model_recovers_gaussian_data(sampler):
    # With the true E[eps | x_t], the full chain reproduces the data distribution (Ho et al.'s
    # betas, scaled to 400 steps to keep the test fast). 20000 samples resolve the output variance to 1%
    # (its 4-standard-error band is 4%), enough to tell Ho et al.'s other variance, beta_t, 7.6% off here.
    mu, std = 0.4, 0.3
    s = NoiseSchedule(400, "linear", 2.5e-4, 0.05)
    x_T = torch.randn(20_000, 1, 1, 1, generator=g(0))
    out = sample_loop(gaussian_data_eps(s, mu, std), s, x_T.shape, sampler=sampler, clip_x0=False, x_T=x_T,
                      generator=g(1))
    # The chain's exact output distribution N(B, A^2 + V) is the data's up to its discretisation (400 steps:
    # std 0.291 for DDPM, 0.296 for DDIM) ...
    A, B, V = exact_linear_map(np.cumprod(1 - np.linspace(2.5e-4, 0.05, 400)), sampler, mu, std)
    exact_std = math.sqrt(A**2 + V)
    assert B == pytest.approx(mu, abs=1e-3) and exact_std == pytest.approx(std, abs=0.01)
    # ... and the samples' mean and std are its, within 4 standard errors (std / sqrt(n), std / sqrt(2 (n - 1))).
    n = len(out)
    assert out.mean().item() == pytest.approx(B, abs=4 * exact_std / math.sqrt(n))
    assert out.std().item() == pytest.approx(exact_std, abs=4 * exact_std / math.sqrt(2 * (n - 1)))
    # Sample by sample, it is the chain's exact map, which a chain of fewer steps misses.
    check_exact_linear_map(out, x_T, sampler, A, B, V)


@pytest.mark.parametrize("sampler, steps", [("ddim", 20), ("ddpm", 50)])
def test_few_step_sampling_keeps_the_data_mean_and_follows_its_exact_map(sampler, steps):
    # Few steps shrink the spread (DDIM-20: std 0.238, DDPM-50: 0.252 of the data's 0.3, computed exactly
    # below) but must not bias the mean.
    s = NoiseSchedule(1000)
    x_T = torch.randn(5_000, 1, 1, 1, generator=g(0))
    out = sample_loop(gaussian_data_eps(s, 0.4, 0.3), s, x_T.shape, sampler=sampler, steps=steps, clip_x0=False,
                      x_T=x_T, generator=g(1))
    # The steps "linspace" keeps, from Ho et al.'s betas.
    kept = np.linspace(0, 999, steps).round().astype(int)
    A, B, V = exact_linear_map(np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[kept], sampler, 0.4, 0.3)
    assert B == pytest.approx(0.4, abs=1e-3)  # no bias in the exact map
    std = math.sqrt(A**2 + V)
    # The sample mean within 4 standard errors (std / sqrt(n)) of the exact mean B.
    assert out.mean().item() == pytest.approx(B, abs=4 * std / math.sqrt(len(out)))
    check_exact_linear_map(out, x_T, sampler, A, B, V)


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_other_predictions_give_the_same_samples_as_eps(prediction):
    s = NoiseSchedule(50)
    eps_fn = gaussian_data_eps(s, 0.2, 0.5)

    def converted(x, t):
        eps = eps_fn(x, t)
        x0 = x0_from_eps(s, x, t, eps)
        return x0 if prediction == "x0" else s.velocity(x0, t, eps)

    kwargs = dict(sampler="ddim", steps=10, eta=0.3, clip_x0=False)
    ref = sample_loop(eps_fn, s, (64, 1, 1, 1), generator=g(0), **kwargs)
    out = sample_loop(converted, s, (64, 1, 1, 1), generator=g(0), prediction=prediction, **kwargs)
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


def test_clip_x0_keeps_pixels_in_range():
    s = NoiseSchedule(T)
    out = sample_loop(lambda x, t: -5 * torch.ones_like(x), s, (2, 1, 4, 4), steps=5, clip_x0=True, generator=g(0))
    assert out.min().item() >= -1.0 - 1e-5 and out.max().item() <= 1.0 + 1e-5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sampler": "plms"}, "choose one of"),
        ({"spacing": "quadratic"}, "unknown timestep spacing"),
        ({"steps": T + 1}, rf"steps must be in \[1, {T}\]"),
        ({"eta": -0.1}, "eta must be >= 0"),
        ({"x_T": torch.zeros(1, 1, 2, 2)}, "x_T has shape"),
    ],
)
def test_bad_sampler_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_loop(toy_model, NoiseSchedule(T), (2, 1, 2, 2), generator=g(0), **kwargs)


def test_an_unknown_prediction_is_an_assertion_below_the_config():
    # model.prediction is a Literal the config checks; sample_loop only asserts it (tests/test_rules.py).
    with pytest.raises(AssertionError, match="score"):
        sample_loop(toy_model, NoiseSchedule(T), (2, 1, 2, 2), generator=g(0), prediction="score")


# ---------------------------------------------------------------------------------- DDIM's eps, timestep spacing
def test_ddim_network_eps_option_and_both_variants_agree_without_clipping():
    s = NoiseSchedule(T)
    shape = (4, 1, 3, 3)
    kwargs = dict(sampler="ddim", steps=6, eta=0.5, clip_x0=False)
    torch.testing.assert_close(sample_loop(toy_model, s, shape, generator=g(0), recompute_eps=False, **kwargs),
                               sample_loop(toy_model, s, shape, generator=g(0), **kwargs))
    # With clipping, one step from x_T shows recompute_eps=False uses the network's eps, not the clipped x0's.
    x_T = 3 * torch.randn(shape, generator=g(1))  # large enough that the first x0 gets clipped
    one = sample_loop(toy_model, s.respace(2), shape, sampler="ddim", steps=None, x_T=x_T, clip_x0=True,
                      recompute_eps=False)
    t = torch.ones(4, dtype=torch.long)
    r = s.respace(2)
    eps = toy_model(x_T, r.timestep_map[t])
    x0 = x0_from_eps(r, x_T, t, eps).clamp(-1, 1)
    ab_prev = r.alphas_cumprod_prev[1]
    x1 = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps  # Song et al. eq. 12, eta = 0
    x0_last = x0_from_eps(r, x1, t * 0, toy_model(x1, r.timestep_map[t * 0])).clamp(-1, 1)
    torch.testing.assert_close(one, x0_last)
    # Over more steps the clipped x0's eps takes the samples elsewhere.
    kwargs = dict(sampler="ddim", steps=5, x_T=x_T / 3, clip_x0=True)
    assert not torch.allclose(sample_loop(toy_model, NoiseSchedule(1000), shape, recompute_eps=False, **kwargs),
                              sample_loop(toy_model, NoiseSchedule(1000), shape, **kwargs), atol=0.1)
    # The default rebuilds eps from the clipped x0.
    torch.testing.assert_close(sample_loop(toy_model, NoiseSchedule(1000), shape, **kwargs),
                               sample_loop(toy_model, NoiseSchedule(1000), shape, recompute_eps=True, **kwargs))


def test_spacings_give_the_documented_timesteps():
    assert spaced_timesteps(1000, 50, "leading").flip(0).tolist() == list(range(980, -1, -20))  # diffusers' DDIM
    assert spaced_timesteps(1000, 50, "trailing").flip(0).tolist() == list(range(999, 0, -20))
    linspace = spaced_timesteps(1000, 50, "linspace").flip(0).tolist()
    assert linspace[:3] == [999, 979, 958] and linspace[-2:] == [20, 0]
    for spacing in SPACINGS:
        for steps in (1, 7, 333, 999, 1000):
            kept = spaced_timesteps(1000, steps, spacing, NoiseSchedule(1000).alphas_cumprod.double())
            assert len(kept) == steps and bool((kept.diff() > 0).all()), (spacing, steps)
            assert 0 <= kept.min() and kept.max() <= 999
    karras = spaced_timesteps(1000, 10, "karras", NoiseSchedule(1000).alphas_cumprod.double())
    assert karras[0] == 0 and karras[-1] == 999 and karras[1] < 50  # dense at low noise


@pytest.mark.parametrize("spacing", ["leading", "trailing", "karras"])
def test_the_sampler_visits_the_spaced_timesteps(spacing):
    s = NoiseSchedule(100)
    seen = []

    def recording(x, t):
        seen.append(t[0].item())
        return toy_model(x, t)

    for sampler in ("ddim", "euler"):
        seen.clear()
        sample_loop(recording, s, (2, 1, 2, 2), sampler=sampler, steps=5, spacing=spacing, generator=g(0))
        assert seen == spaced_timesteps(100, 5, spacing, s.alphas_cumprod.double()).flip(0).tolist()


# ---------------------------------------------------------------------------------- the Gaussian case, in closed form
MU, STD = 0.4, 0.3


def posterior_means(x, alpha, noise):
    """E[x0 | x] and E[eps | x] for x = alpha x0 + noise eps with x0 ~ N(MU, STD^2), eps ~ N(0, 1)."""
    den = alpha**2 * STD**2 + noise**2
    return MU + alpha * STD**2 * (x - alpha * MU) / den, noise * (x - alpha * MU) / den


def exact_ode_map(z, level):
    """Where the probability-flow ODE takes the start x = noise_0 z: y = x / alpha follows
    dy/dsigma = sigma (y - MU) / (STD^2 + sigma^2), so y - MU grows as sqrt(STD^2 + sigma^2)."""
    if level.alpha == 0:  # t = 1 of a flow model: y / sigma -> z
        return MU + STD * z
    y = level.noise * z / level.alpha
    return MU + STD * (y - MU) / math.sqrt(STD**2 + level.sigma**2)


def exact_vp(schedule, prediction="eps"):
    def model_fn(x, t):
        ab = schedule.alphas_cumprod[t].double().view(-1, 1, 1, 1)
        a, s = ab.sqrt(), (1 - ab).sqrt()
        x0, eps = posterior_means(x.double(), a, s)
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0}[prediction].float()
    return model_fn


def exact_edm(objective):
    # Written from EDM's table 1 here, independently of EDMObjective: F = (D - c_skip y) / c_out.
    sd = objective.sigma_data

    def model_fn(x_in, time):
        sigma = (4 * time.double() / TIME_SCALE).exp().view(-1, 1, 1, 1)
        y = x_in.double() * (sigma**2 + sd**2).sqrt()
        d = posterior_means(y, 1.0, sigma)[0]
        c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / (sigma**2 + sd**2).sqrt()
        return ((d - c_skip * y) / c_out).float()
    return model_fn


def exact_flow(x, time):
    t = (time.double() / TIME_SCALE).view(-1, 1, 1, 1)
    x0, eps = posterior_means(x.double(), 1 - t, t)
    return (eps - x0).float()  # E[velocity | x_t]


def families():
    s = NoiseSchedule(1000)
    edm = EDMObjective()
    return {"ddpm": (VPObjective.from_schedule(s), exact_vp(s)), "edm": (edm, exact_edm(edm)), "flow": (FlowObjective(), exact_flow)}


def ode_error(family: str, sampler: str, steps: int) -> tuple[float, torch.Tensor]:
    """RMS distance of the samples from the exact ODE map of their start noise, and the samples."""
    objective, model_fn = families()[family]
    z = torch.randn(2000, 1, 1, 1, generator=g(0))
    out = sample_loop(model_fn, objective, z.shape, sampler=sampler, steps=steps, clip_x0=False, x_T=z)
    first = objective.levels(steps, "karras" if family == "ddpm" else None)[0]
    return (out.double() - exact_ode_map(z.double(), first)).pow(2).mean().sqrt().item(), out


@pytest.mark.parametrize("family", ["ddpm", "edm", "flow"])
def test_ode_samplers_with_the_exact_denoiser_reproduce_gaussian_data(family):
    # Heun needs more steps than DPM-Solver++ from the large sigma_max of these schedules (80 to 157).
    for sampler, steps, tolerance in [("heun", 20, 0.02), ("dpmpp_2m", 10, 0.05), ("euler", 50, 0.025)]:
        error, out = ode_error(family, sampler, steps)
        assert out.mean().item() == pytest.approx(MU, abs=0.01), (sampler, family)
        assert out.std().item() == pytest.approx(STD, abs=0.06), (sampler, family)
        assert error < tolerance, (sampler, family, error)


@pytest.mark.parametrize("family", ["ddpm", "edm", "flow"])
def test_second_order_samplers_beat_euler_at_equal_steps(family):
    euler, heun, dpm = (ode_error(family, sampler, 20)[0] for sampler in ("euler", "heun", "dpmpp_2m"))
    assert heun < 0.5 * euler and dpm < 0.5 * euler, (euler, heun, dpm)
    # Heun is second order: twice the steps, about a quarter of the error (Euler: about half).
    assert ode_error(family, "heun", 40)[0] < 0.3 * heun
    assert ode_error(family, "euler", 40)[0] > 0.4 * euler


def test_euler_on_a_ddpm_schedule_is_ddim_with_eta_0():
    s = NoiseSchedule(1000)
    z = torch.randn(500, 1, 1, 1, generator=g(0))
    for spacing in ("linspace", "trailing"):
        ddim = sample_loop(exact_vp(s), s, z.shape, sampler="ddim", steps=10, spacing=spacing, clip_x0=False, x_T=z)
        # The ODE samplers start from noise_0 * z; at T - 1 that is 0.99998 z.
        euler = sample_loop(exact_vp(s), s, z.shape, sampler="euler", steps=10, spacing=spacing, clip_x0=False, x_T=z)
        torch.testing.assert_close(euler, ddim, rtol=1e-3, atol=1e-3)


def test_with_clipping_the_ode_samplers_threshold_every_step_as_ddim_does():
    s = NoiseSchedule(T)

    def out_then_in(x, t):
        # An eps network whose x0 estimate is 2 (out of range) at high noise and 0.5 tanh(x) at low noise,
        # so where the path ends depends on whether the early estimates were clipped.
        ab = s.alphas_cumprod[t].view(-1, 1, 1, 1)
        x0 = torch.where(t.view(-1, 1, 1, 1) > T // 2, torch.full_like(x, 2.0), 0.5 * torch.tanh(x))
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()

    first = VPObjective.from_schedule(s).levels(10, "linspace")[0]
    z = torch.randn(64, 1, 2, 2, generator=g(0))
    # DDIM rebuilds eps from the clipped x0 at every step; Euler on the same levels is the same update.
    ddim = sample_loop(out_then_in, s, z.shape, sampler="ddim", steps=10, clip_x0=True, x_T=z)
    for sampler in ("euler", "heun", "dpmpp_2m"):
        kwargs = dict(sampler=sampler, steps=10, spacing="linspace", x_T=z / first.noise)  # the ODE starts at noise_0 * x_T
        clipped = sample_loop(out_then_in, s, z.shape, clip_x0=True, **kwargs)
        if sampler == "euler":
            torch.testing.assert_close(clipped, ddim, rtol=1e-3, atol=1e-3)
        # Clamping only the returned x0 would give free.clamp(-1, 1); thresholding each step changes the path.
        free = sample_loop(out_then_in, s, z.shape, clip_x0=False, **kwargs)
        assert clipped.abs().max() <= 1 + 1e-5
        assert (clipped - free.clamp(-1, 1)).abs().max() > 5e-3, sampler  # a no-op differs by ~1e-7


def test_ddim_eta_0_converges_to_the_exact_ode_map():
    s = NoiseSchedule(1000)
    z = torch.randn(2000, 1, 1, 1, generator=g(0))
    first = VPObjective.from_schedule(s).levels(1000)[0]
    errors = [(sample_loop(exact_vp(s), s, z.shape, sampler="ddim", steps=steps, clip_x0=False, x_T=z).double()
               - exact_ode_map(z.double() / first.noise, first)).pow(2).mean().sqrt().item() for steps in (50, 1000)]
    assert errors[1] < 0.005 and errors[1] < errors[0] / 10  # first order: 20x the steps, ~20x less error


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_ode_samplers_give_the_same_samples_for_every_prediction(prediction):
    s = NoiseSchedule(200)
    z = torch.randn(64, 1, 1, 1, generator=g(0))
    for sampler in ("heun", "dpmpp_2m"):
        ref = sample_loop(exact_vp(s), s, z.shape, sampler=sampler, steps=8, clip_x0=False, x_T=z)
        out = sample_loop(exact_vp(s, prediction), s, z.shape, sampler=sampler, steps=8, prediction=prediction,
                          clip_x0=False, x_T=z)
        torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


def test_ode_samplers_count_their_network_evaluations():
    calls = []

    def counting(x, time):
        calls.append(1)
        return exact_flow(x, time)

    for sampler, expected in [("euler", 6), ("dpmpp_2m", 6), ("heun", 2 * 6 - 1 - 1)]:  # heun: t = 1 is Euler
        calls.clear()
        sample_loop(counting, FlowObjective(), (3, 1, 1, 1), sampler=sampler, steps=6, generator=g(0))
        assert len(calls) == expected, sampler


def test_continuous_objectives_refuse_the_ancestral_sampler_and_spacing():
    for kwargs, message in [({"sampler": "ddpm"}, "ancestral"), ({"eta": 0.5}, "eta 0"),
                            ({"spacing": "leading"}, "leave spacing unset"), ({"steps": None}, "give the number of steps"),
                            ({"steps": 0}, "steps must be at least 1")]:
        with pytest.raises(ValueError, match=message):
            sample_loop(exact_flow, FlowObjective(), (2, 1, 1, 1), **{"steps": 4, **kwargs})


def test_karras_spacing_suits_the_multistep_solver():
    # On a DDPM schedule linspace's last steps are very uneven in log-SNR, which DPM-Solver++(2M)'s
    # extrapolation amplifies; Karras et al.'s sigmas, the ODE samplers' default, avoid it.
    s = NoiseSchedule(1000)
    z = torch.randn(2000, 1, 1, 1, generator=g(0))

    def error(spacing):
        out = sample_loop(exact_vp(s), s, z.shape, sampler="dpmpp_2m", steps=10, spacing=spacing, clip_x0=False, x_T=z)
        first = VPObjective.from_schedule(s).levels(10, spacing)[0]
        return (out.double() - exact_ode_map(z.double(), first)).pow(2).mean().sqrt().item()

    assert error("karras") < 0.5 * error("linspace")
    default = sample_loop(exact_vp(s), s, z.shape, sampler="dpmpp_2m", steps=10, clip_x0=False, x_T=z)
    assert torch.equal(default, sample_loop(exact_vp(s), s, z.shape, sampler="dpmpp_2m", steps=10, spacing="karras",
                                            clip_x0=False, x_T=z))
