"""The objectives of the diffusion family against closed forms: for Gaussian data the best network
output is known, so each objective's targets and weights must be minimised by it, and its denoiser
must turn it into the exact posterior mean E[x0 | x]."""

import math

import pytest
import torch

from lit_gen.diffusion.objectives import EDMObjective, FlowObjective, Level, VPObjective, min_snr_weight
from lit_gen.diffusion.schedule import NoiseSchedule
from tests.diffusion.test_samplers import MU, STD, exact_edm, exact_flow, exact_vp, posterior_means


def gaussian_data(n: int = 100_000) -> torch.Tensor:
    return MU + STD * torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(1))


def families():
    s = NoiseSchedule(1000)
    edm = EDMObjective()
    return [("eps", VPObjective.from_schedule(s, "eps"), exact_vp(s, "eps")), ("x0", VPObjective.from_schedule(s, "x0"), exact_vp(s, "x0")),
            ("v", VPObjective.from_schedule(s, "v"), exact_vp(s, "v")),
            ("min-snr v", VPObjective.from_schedule(s, "v", min_snr_gamma=5.0), exact_vp(s, "v")),
            ("edm", edm, exact_edm(edm)), ("flow", FlowObjective(), exact_flow)]


@pytest.mark.parametrize("name, objective, exact", families(), ids=[f[0] for f in families()])
def test_the_exact_network_output_minimises_the_training_loss(name, objective, exact):
    x0 = gaussian_data()
    torch.manual_seed(0)
    example = objective.training_example(x0)
    best = exact(example.x_t, example.time)

    def loss(pred):
        return (example.weight * (pred - example.target).pow(2).flatten(1).mean(1)).mean().item()

    optimum = loss(best)
    # Every other output does worse: shifted, scaled, or the exact answer for slightly different data.
    for other in (best + 0.05, best - 0.05, best * 1.05, best * 0.95):
        assert loss(other) > optimum, name
    # First-order conditions: the weighted residual of the optimum is uncorrelated (within sampling error)
    # with any function of the network's input; checked along 1, the output itself and x_t.
    residual = (example.weight.view(-1, 1, 1, 1) * (best - example.target)).double()
    for direction in (torch.ones_like(best), best, example.x_t):
        product = (residual * direction.double()).flatten()
        assert abs(product.mean().item()) < 4 * product.std().item() / math.sqrt(len(product)), name


def test_edm_preconditioned_denoiser_of_the_exact_network_is_the_exact_denoiser():
    objective = EDMObjective()
    x = 3 * torch.randn(64, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    for sigma in (0.002, 0.1, 0.5, 2.0, 80.0):
        level = Level(1.0, sigma, float(objective.preconditioning(sigma)[3]))
        d = objective.denoise(exact_edm(objective), x, level)
        x0, eps = posterior_means(x.double(), 1.0, sigma)
        torch.testing.assert_close(d.x0.double(), x0, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(d.eps.double(), eps, rtol=1e-3, atol=1e-3 / min(sigma, 1.0))


def test_edm_loss_is_karras_weighted_denoiser_error():
    # lambda(sigma) ||D(x; sigma) - x0||^2 with lambda = (sigma^2 + sd^2) / (sigma sd)^2 (Karras et al. eq. 8)
    # equals the unweighted ||F - target||^2 the objective trains, for any network output F.
    objective = EDMObjective(sigma_data=0.5)
    x0 = gaussian_data(512)
    torch.manual_seed(3)
    example = objective.training_example(x0)
    sigma = (4 * example.time / 1000).exp().view(-1, 1, 1, 1)
    sd = 0.5
    y = example.x_t * (sigma**2 + sd**2).sqrt()  # undo c_in
    f = torch.randn_like(y)
    denoised = sd**2 / (sigma**2 + sd**2) * y + sigma * sd / (sigma**2 + sd**2).sqrt() * f
    karras = (sigma**2 + sd**2) / (sigma * sd) ** 2 * (denoised - x0) ** 2
    torch.testing.assert_close((f - example.target) ** 2, karras, rtol=1e-3, atol=1e-4)


def test_edm_draws_log_normal_sigmas_and_flow_logit_normal_times():
    x0 = torch.zeros(40_000, 1, 1, 1)
    torch.manual_seed(0)
    log_sigma = 4 * EDMObjective().training_example(x0).time / 1000
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.02)  # P_mean
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.02)  # P_std
    example = FlowObjective().training_example(x0)
    t = example.time / 1000
    assert torch.logit(t.double()).mean().item() == pytest.approx(0.0, abs=0.02)
    assert torch.logit(t.double()).std().item() == pytest.approx(1.0, abs=0.02)
    # x_t = (1 - t) x0 + t eps with x0 = 0, and the target eps - x0 = eps = x_t / t.
    torch.testing.assert_close(example.target, example.x_t / t.view(-1, 1, 1, 1), rtol=1e-4, atol=1e-4)
    # Quartiles hold a quarter of the examples each.
    assert torch.bincount(example.quartile, minlength=4).float().div(len(t)).sub(0.25).abs().max() < 0.01


def test_flow_uniform_time_sampling_draws_t_uniformly():
    x0 = torch.zeros(40_000, 1, 1, 1)
    torch.manual_seed(0)
    t = FlowObjective("uniform").training_example(x0).time / 1000
    t_logit_normal = FlowObjective("logit_normal").training_example(x0).time / 1000
    # U(0, 1): a tenth of the draws below 0.1; logit-normal puts only Phi(logit 0.1) = 1.4% there.
    assert (t < 0.1).float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert (t_logit_normal < 0.1).float().mean().item() == pytest.approx(0.014, abs=0.004)
    assert t.mean().item() == pytest.approx(0.5, abs=0.01) and t.var().item() == pytest.approx(1 / 12, abs=0.003)
    example = FlowObjective("uniform").training_example(torch.zeros(40_000, 1, 1, 1))
    assert torch.bincount(example.quartile, minlength=4).float().div(40_000).sub(0.25).abs().max() < 0.01


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_min_snr_weights_make_every_prediction_the_same_clipped_x0_loss(prediction):
    # Hang et al. 2023: each weight turns its prediction's error into min(SNR, gamma) ||x0 - x0_hat||^2.
    s = NoiseSchedule(1000)
    gamma = 5.0
    t = torch.tensor([0, 10, 100, 300, 600, 999])
    ab = s.alphas_cumprod[t].double()
    snr = ab / (1 - ab)
    expected = {"eps": torch.minimum(snr, torch.tensor(gamma)) / snr, "x0": snr.clamp(max=gamma),
                "v": snr.clamp(max=gamma) / (snr + 1)}[prediction]
    weight = min_snr_weight(snr, gamma, prediction)
    torch.testing.assert_close(weight, expected)
    assert weight[0] < 1 if prediction != "x0" else weight[0] == gamma  # high SNR is capped
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 1, 2, 2, generator=g, dtype=torch.float64), torch.randn(6, 1, 2, 2, generator=g, dtype=torch.float64)
    x_t = s.q_sample(x0.float(), t, eps.float()).double()
    pred = s.target(x0.float(), t, eps.float(), prediction).double() + 0.1 * torch.randn(6, 1, 2, 2, generator=g, dtype=torch.float64)
    level = Level(s.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1), s.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1), t)
    x0_hat = VPObjective.from_schedule(s, prediction).denoise(lambda x, time: pred.float(), x_t.float(), level).x0.double()
    target = s.target(x0.float(), t, eps.float(), prediction).double()
    lhs = weight * (pred - target).pow(2).flatten(1).sum(1)
    rhs = snr.clamp(max=gamma) * (x0_hat - x0).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(lhs, rhs, rtol=2e-3, atol=1e-5)


def test_min_snr_training_weights_follow_the_drawn_timesteps():
    s = NoiseSchedule(100)
    torch.manual_seed(0)
    example = VPObjective.from_schedule(s, "eps", min_snr_gamma=5.0).training_example(torch.zeros(256, 1, 2, 2))
    ab = s.alphas_cumprod[example.time].double()
    snr = ab / (1 - ab)
    torch.testing.assert_close(example.weight.double(), snr.clamp(max=5.0) / snr, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    plain = VPObjective.from_schedule(s, "eps").training_example(torch.zeros(256, 1, 2, 2))
    assert torch.equal(plain.time, example.time) and bool((plain.weight == 1).all())


def test_flow_levels_map_t_to_sigma():
    levels = FlowObjective().levels(4)
    assert [lv.noise for lv in levels] == [1.0, 0.75, 0.5, 0.25]
    assert levels[0].sigma == math.inf and levels[2].sigma == pytest.approx(1.0)  # t / (1 - t)
    edm = EDMObjective().levels(18)
    assert edm[0].sigma == pytest.approx(80.0) and edm[-1].sigma == pytest.approx(0.002)
