"""Power-function EMAs and post-hoc synthesis (lit_gen.nn.post_hoc_ema, lit_gen.nn.ema.PowerEMA) against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lit_gen.nn.ema import PowerEMA
from lit_gen.nn.post_hoc_ema import beta_at, combine, gamma_of, profile_inner, sigma_rel_of, synthesis


class Vector(nn.Module):
    """A network that is one parameter vector, so its average can be read off directly."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n, dtype=torch.float64))


def test_gamma_and_sigma_rel_are_inverse_and_match_edm2():
    # EDM2 (Karras et al. 2024, section 3.1) pairs sigma_rel 0.05 with gamma 16.97 and 0.10 with 6.94.
    assert gamma_of(0.05) == pytest.approx(16.97, abs=0.01) and gamma_of(0.10) == pytest.approx(6.94, abs=0.01)
    for sigma_rel in (0.01, 0.07, 0.2, 0.28):
        assert sigma_rel_of(gamma_of(sigma_rel)) == pytest.approx(sigma_rel, rel=1e-12)
    # Both ends are excluded: gamma would be infinite at 0 and 0 at a plain running mean's sqrt(1/12).
    for outside in (0.3, 0.0, math.sqrt(1 / 12)):
        with pytest.raises(ValueError, match=r"sigma_rel must lie in \(0, 0.2887\)"):
            gamma_of(outside)


def test_a_power_ema_weighs_step_tau_by_its_closed_form_profile():
    # One-hot weights: at update tau the vector is e_tau, so after T updates the average is the profile itself.
    # With beta_t = (1 - 1/t)^(g + 1): c_tau = (1 - beta_tau) prod_{s > tau} beta_s = (tau^(g+1) - (tau-1)^(g+1)) / T^(g+1).
    T, gamma = 40, gamma_of(0.1)
    net = Vector(T)
    ema = PowerEMA(net, sigma_rels=(0.1,), snapshot_every=10)
    for tau in range(1, T + 1):
        with torch.no_grad():
            net.w.zero_()
            net.w[tau - 1] = 1.0
        ema.update(net)
    taus = torch.arange(1, T + 1, dtype=torch.float64)
    expected = (taus ** (gamma + 1) - (taus - 1) ** (gamma + 1)) / T ** (gamma + 1)
    torch.testing.assert_close(ema.averaged.w.detach(), expected, rtol=1e-12, atol=1e-15)
    assert beta_at(1, gamma) == 0.0 and int(ema.num_updates) == T


def test_profile_inner_products_are_the_integrals_they_claim():
    # <p_a, p_b> by the midpoint rule on a fine grid, against the closed form.
    for (ta, ga), (tb, gb) in [((100.0, 7.0), (60.0, 17.0)), ((50.0, 2.5), (50.0, 2.5)), ((30.0, 0.0), (90.0, 5.0))]:
        n = 200_000
        tau = (torch.arange(n, dtype=torch.float64) + 0.5) * (min(ta, tb) / n)
        pa = (ga + 1) * tau**ga / ta ** (ga + 1)
        pb = (gb + 1) * tau**gb / tb ** (gb + 1)
        numeric = float((pa * pb).sum() * (min(ta, tb) / n))
        assert profile_inner(ta, ga, tb, gb) == pytest.approx(numeric, rel=1e-6)


def tracked(trajectory, steps: int, every: int, sigma_rels=(0.05, 0.10)):
    """Run a PowerEMA over ``trajectory(t)`` (the vector at update t) and keep its snapshots."""
    net = Vector(len(trajectory(1)))
    ema = PowerEMA(net, sigma_rels=sigma_rels, snapshot_every=every)
    snapshots = []
    for t in range(1, steps + 1):
        with torch.no_grad():
            net.w.copy_(trajectory(t))
        ema.update(net)
        if ema.snapshot_due():
            snapshots.append(ema.snapshot())
    return ema, snapshots


def synthesised(snapshots, sigma_rel: float):
    sources = [(s["step"], p["gamma"]) for s in snapshots for p in s["profiles"]]
    plan = synthesis(sources, snapshots[-1]["step"], gamma_of(sigma_rel))
    return combine([p["state_dict"] for s in snapshots for p in s["profiles"]], plan.weights)["w"], plan


def test_synthesising_a_tracked_length_returns_that_profile():
    generator = torch.Generator().manual_seed(0)
    path = torch.randn(401, 5, generator=generator, dtype=torch.float64).cumsum(0)
    ema, snapshots = tracked(lambda t: path[t], 400, 50)
    for index, sigma_rel in enumerate((0.05, 0.10)):
        weights, plan = synthesised(snapshots, sigma_rel)
        assert plan.relative_error < 1e-6
        torch.testing.assert_close(weights, ema.profiles[index].w.detach(), rtol=0, atol=1e-8)


def test_an_intermediate_length_of_a_linear_trajectory_is_its_analytic_average():
    # w(t) = a + b t averaged with p(tau) ~ tau^g over [0, T]: a + b T (g + 1) / (g + 2).
    a, b, T = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.01, 0.003], dtype=torch.float64), 2000
    _, snapshots = tracked(lambda t: a + b * t, T, 100)
    for sigma_rel in (0.06, 0.07, 0.085):
        weights, plan = synthesised(snapshots, sigma_rel)
        gamma = gamma_of(sigma_rel)
        expected = a + b * T * (gamma + 1) / (gamma + 2)
        assert plan.relative_error < 0.02
        # The discrete updates and the least-squares fit stay within 0.1% of the continuous average's slope term.
        torch.testing.assert_close(weights, expected, rtol=0, atol=float(1e-3 * b.abs().max() * T))


def test_a_length_far_from_the_tracked_ones_is_reported_as_out_of_reach():
    _, snapshots = tracked(lambda t: torch.full((2,), float(t), dtype=torch.float64), 400, 50)
    assert synthesised(snapshots, 0.07)[1].relative_error < 0.05
    assert synthesised(snapshots, 0.25)[1].relative_error > 0.05


def test_the_reported_error_is_the_l2_distance_of_the_combined_profile_from_the_wanted_one():
    # ||sum_i x_i p_i - p|| / ||p|| by the midpoint rule on a fine grid, against synthesis's closed form.
    sources = [(t, gamma_of(s)) for t in (300.0, 600.0, 1000.0) for s in (0.05, 0.10)]
    for sigma_rel in (0.08, 0.15, 0.25):
        gamma, t = gamma_of(sigma_rel), 1000.0
        plan = synthesis(sources, t, gamma)
        n = 400_000
        tau = (torch.arange(n, dtype=torch.float64) + 0.5) * (t / n)

        def profile(t_i: float, g: float) -> torch.Tensor:
            return torch.where(tau <= t_i, (g + 1) * tau**g / t_i ** (g + 1), torch.zeros_like(tau))

        combined = sum(x * profile(ti, gi) for x, (ti, gi) in zip(plan.weights, sources))
        wanted = profile(t, gamma)
        numeric = math.sqrt(float(((combined - wanted) ** 2).sum() / (wanted**2).sum()))
        assert plan.relative_error == pytest.approx(numeric, rel=1e-3, abs=1e-6)
    assert synthesis(sources, 1000.0, gamma_of(0.25)).relative_error > 0.05  # the grid spans distinct errors


def test_synthesis_without_snapshots_says_so():
    with pytest.raises(ValueError, match="^no snapshots to synthesise from$"):
        synthesis([], 100.0, gamma_of(0.1))


def test_combine_weighs_floating_tensors_keeps_their_dtype_and_takes_counters_from_the_last():
    states = [{"w": torch.full((3,), float(i + 1)), "count": torch.tensor(10 * (i + 1))} for i in range(3)]
    out = combine(states, [0.5, -1.0, 2.0])
    torch.testing.assert_close(out["w"], torch.full((3,), 0.5 * 1 - 1.0 * 2 + 2.0 * 3))
    assert out["w"].dtype == torch.float32  # summed in float64, returned in the tensor's own dtype
    assert out["count"].item() == 30 and out["count"] is not states[-1]["count"]
    with pytest.raises(ValueError, match="2 state dicts but 3 weights"):
        combine(states[:2], [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="0 state dicts but 0 weights"):
        combine([], [])


def test_it_agrees_with_ema_pytorchs_post_hoc_ema_on_the_same_weights(tmp_path):
    ema_pytorch = pytest.importorskip("ema_pytorch")
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    reference = ema_pytorch.PostHocEMA(net, sigma_rels=(0.05, 0.10), update_every=1, checkpoint_every_num_steps=50,
                                       checkpoint_folder=str(tmp_path), checkpoint_dtype=torch.float32)
    ours = PowerEMA(net, sigma_rels=(0.05, 0.10), snapshot_every=50)
    snapshots = []
    generator = torch.Generator().manual_seed(1)
    for _ in range(600):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 0.1 + 0.01)
        reference.update()
        ours.update(net)
        if ours.snapshot_due():
            snapshots.append(ours.snapshot())
    sources = [(s["step"], p["gamma"]) for s in snapshots for p in s["profiles"]]
    for sigma_rel in (0.05, 0.07, 0.10):
        plan = synthesis(sources, 600, gamma_of(sigma_rel))
        mine = combine([p["state_dict"] for s in snapshots for p in s["profiles"]], plan.weights)
        theirs = dict(reference.synthesize_ema_model(sigma_rel=sigma_rel, step=600).ema_model.named_parameters())
        for name, value in mine.items():
            # Weights of size ~5; the two implementations count steps and snapshots slightly differently.
            assert float((value - theirs[name]).abs().max()) < 5e-3 * float(value.abs().mean()), (sigma_rel, name)
