"""NoiseSchedule: constants equal their formulas, q_sample matches q(x_t | x_0), respacing keeps alpha-bar."""

import math

import pytest
import torch

from lit_gen.diffusion.schedule import NoiseSchedule


def test_linear_schedule_matches_ho_et_al():
    s = NoiseSchedule(1000, "linear", 1e-4, 0.02)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    assert s.betas.dtype == torch.float32
    torch.testing.assert_close(s.betas.double(), betas, rtol=1e-6, atol=0)
    torch.testing.assert_close(s.alphas_cumprod.double(), alphas_cumprod, rtol=1e-5, atol=0)
    # alpha-bar_T of Ho et al.'s schedule: x_T is almost pure noise.
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.0e-5, rel=0.02)
    torch.testing.assert_close(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1])
    assert s.alphas_cumprod_prev[0].item() == 1.0
    torch.testing.assert_close(s.sqrt_one_minus_alphas_cumprod.double(), (1 - alphas_cumprod).sqrt(), rtol=1e-5, atol=0)
    posterior_variance = betas * (1 - torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])) / (1 - alphas_cumprod)
    torch.testing.assert_close(s.posterior_variance.double(), posterior_variance, rtol=1e-5, atol=1e-12)


def test_cosine_schedule_matches_nichol_dhariwal():
    T, s_ = 1000, 0.008
    s = NoiseSchedule(T, "cosine")

    def f(t):
        return math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2

    expected = torch.tensor([f(t + 1) / f(0) for t in range(T)], dtype=torch.float64)
    # Equal until the beta clip at 0.999 bites in the very last steps.
    torch.testing.assert_close(s.alphas_cumprod[:990].double(), expected[:990], rtol=1e-4, atol=1e-7)
    assert s.betas.max().item() <= 0.999 + 1e-6


def test_posterior_mean_equals_eps_parameterisation():
    # Ho et al. eq. 11: mean of q(x_{t-1} | x_t, x_0) = (x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(alpha_t).
    s = NoiseSchedule(100)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 2, 3, 3, generator=g), torch.randn(6, 2, 3, 3, generator=g)
    t = torch.tensor([1, 5, 20, 50, 80, 99])
    x_t = s.q_sample(x0, t, eps)
    b = s.betas[t].view(-1, 1, 1, 1)
    ab = s.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = (x_t - b / (1 - ab).sqrt() * eps) / (1 - b).sqrt()
    torch.testing.assert_close(s.posterior(x0, x_t, t).mean, expected, rtol=1e-4, atol=1e-4)


def test_q_sample_has_closed_form_mean_and_variance():
    s = NoiseSchedule(1000)
    g = torch.Generator().manual_seed(0)
    n = 100_000
    for step in (0, 250, 999):
        t = torch.full((n,), step)
        x0 = torch.full((n, 1), 0.7)
        x_t = s.q_sample(x0, t, torch.randn(n, 1, generator=g))
        ab = s.alphas_cumprod[step].item()
        # 5 standard errors of the mean and of the variance.
        assert x_t.mean().item() == pytest.approx(math.sqrt(ab) * 0.7, abs=5 * math.sqrt((1 - ab) / n) + 1e-6)
        assert x_t.var().item() == pytest.approx(1 - ab, abs=5 * (1 - ab) * math.sqrt(2 / n) + 1e-7)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_the_denoiser_turns_each_training_target_back_into_x0_and_noise(prediction):
    # The one conversion from a network output to (x0, eps), which every sampler and the bound use: fed the
    # exact target, it must return the x0 and eps that made x_t (float64: exact up to roundoff).
    from lit_gen.diffusion.objectives import Level, VPObjective

    s = NoiseSchedule(200, "cosine").double()
    g = torch.Generator().manual_seed(1)
    x0, eps = (torch.randn(5, 1, 4, 4, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([0, 10, 100, 150, 199])
    x_t = s.q_sample(x0, t, eps)
    target = s.target(x0, t, eps, prediction)
    level = Level(s.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1), s.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1), t)
    out = VPObjective.from_schedule(s, prediction).denoise(lambda x, time: target, x_t, level)
    # v inverts through alpha^2 + noise^2 = 1, which the float32-stored constants hold to ~1e-7 only.
    tolerance = 1e-9 if prediction == "eps" else 1e-6
    torch.testing.assert_close(out.x0, x0, rtol=0, atol=tolerance)
    torch.testing.assert_close(out.eps, eps, rtol=0, atol=tolerance if prediction != "x0" else 1e-5)


def test_respacing_keeps_alpha_bar_of_the_kept_timesteps():
    s = NoiseSchedule(1000)
    r = s.respace(10)
    assert len(r) == 10
    assert r.timestep_map[0].item() == 0 and r.timestep_map[-1].item() == 999
    assert bool((r.timestep_map[1:] > r.timestep_map[:-1]).all())
    torch.testing.assert_close(r.alphas_cumprod, s.alphas_cumprod[r.timestep_map], rtol=1e-5, atol=0)
    # New betas follow from the kept alpha-bars: 1 - ab_k / ab_{k-1}.
    ab = r.alphas_cumprod.double()
    torch.testing.assert_close(r.betas.double()[1:], 1 - ab[1:] / ab[:-1], rtol=1e-4, atol=0)
    # Noising at respaced step i is noising at training timestep timestep_map[i].
    x0, eps, i = torch.randn(10, 3), torch.randn(10, 3), torch.arange(10)
    torch.testing.assert_close(r.q_sample(x0, i, eps), s.q_sample(x0, r.timestep_map, eps))


def test_respacing_to_all_steps_is_the_same_schedule():
    s = NoiseSchedule(50, "cosine")
    r = s.respace(50)
    torch.testing.assert_close(r.betas, s.betas, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(r.posterior_variance, s.posterior_variance, rtol=1e-4, atol=1e-9)
    assert torch.equal(r.timestep_map, torch.arange(50))
    # Respacing twice composes the timestep maps.
    assert set(s.respace(10).respace(5).timestep_map.tolist()) <= set(s.respace(10).timestep_map.tolist())


def test_schedule_is_not_saved_in_state_dict():
    # Rebuilt from the hyperparameters, so checkpoints stay small and cannot disagree with them.
    assert NoiseSchedule(10).state_dict() == {}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"timesteps": 0}, "timesteps must be at least 1"),
        ({"beta_start": 0.02, "beta_end": 1e-4}, "0 < beta_start < beta_end < 1"),
        ({"beta_start": 0.0}, "0 < beta_start < beta_end < 1"),
        ({"kind": "quadratic"}, "choose 'linear' or 'cosine'"),
    ],
)
def test_bad_schedule_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NoiseSchedule(**kwargs)


def test_respace_rejects_more_steps_than_timesteps():
    with pytest.raises(ValueError, match=r"steps must be in \[1, 20\]"):
        NoiseSchedule(20).respace(21)
