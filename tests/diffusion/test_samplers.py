"""The one sampling loop: DDIM/DDPM agree where theory says so and recover the data with an exact model."""

import pytest
import torch

from lit_gen.diffusion.samplers import sample_loop
from lit_gen.diffusion.schedule import NoiseSchedule

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


@pytest.mark.parametrize("clip_x0", [True, False])
def test_ddim_with_eta_1_over_all_steps_is_ancestral_ddpm(clip_x0):
    s = NoiseSchedule(T)
    shape = (4, 1, 3, 3)
    ddpm = sample_loop(toy_model, s, shape, sampler="ddpm", generator=g(0), clip_x0=clip_x0)
    ddim = sample_loop(toy_model, s, shape, sampler="ddim", eta=1.0, generator=g(0), clip_x0=clip_x0)
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


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_full_chain_with_the_exact_model_recovers_gaussian_data(sampler):
    # With the true E[eps | x_t], the full chain reproduces the data distribution (Ho et al.'s
    # betas, scaled to 400 steps to keep the test fast).
    mu, std = 0.4, 0.3
    s = NoiseSchedule(400, "linear", 2.5e-4, 0.05)
    out = sample_loop(gaussian_data_eps(s, mu, std), s, (5_000, 1, 1, 1), sampler=sampler, clip_x0=False, generator=g(0))
    assert out.mean().item() == pytest.approx(mu, abs=0.01)
    assert out.std().item() == pytest.approx(std, abs=0.012)


@pytest.mark.parametrize("sampler, steps", [("ddim", 20), ("ddpm", 50)])
def test_few_step_sampling_keeps_the_data_mean(sampler, steps):
    # Few steps shrink the spread somewhat (discretisation error) but must not bias the mean.
    s = NoiseSchedule(1000)
    out = sample_loop(gaussian_data_eps(s, 0.4, 0.3), s, (5_000, 1, 1, 1), sampler=sampler, steps=steps,
                      clip_x0=False, generator=g(0))
    assert out.mean().item() == pytest.approx(0.4, abs=0.01)
    assert 0.2 < out.std().item() < 0.31


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_other_predictions_give_the_same_samples_as_eps(prediction):
    s = NoiseSchedule(50)
    eps_fn = gaussian_data_eps(s, 0.2, 0.5)

    def converted(x, t):
        eps = eps_fn(x, t)
        x0 = s.predict_x0(x, t, eps, "eps")
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
        ({"sampler": "euler"}, "choose one of"),
        ({"steps": T + 1}, rf"steps must be in \[1, {T}\]"),
        ({"eta": -0.1}, "eta must be >= 0"),
        ({"prediction": "score"}, "unknown prediction"),
        ({"x_T": torch.zeros(1, 1, 2, 2)}, "x_T has shape"),
    ],
)
def test_bad_sampler_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_loop(toy_model, NoiseSchedule(T), (2, 1, 2, 2), generator=g(0), **kwargs)
