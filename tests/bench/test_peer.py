"""bench.diffusers_peer: the recipe scaled to the budget, and networks of equal size at both resolutions."""

import pytest

from bench import diffusers_peer as peer


def test_recipe_warmup_is_capped_at_five_percent_of_the_budgeted_steps():
    # diffusers' example warms up over 500 steps; a budget of 312 steps must not spend them all warming up.
    assert peer.peer_settings(1e-4, 0.9999, 312)["warmup_steps"] == 15
    assert peer.peer_settings(1e-4, 0.9999, 100_000)["warmup_steps"] == 500
    grid = peer.peer_settings(3e-3, 0.999, 400)
    assert (grid["lr"], grid["ema_max_decay"], grid["ema_power"]) == (3e-3, 0.999, 0.75)  # the example's EMA warm-up kept


@pytest.mark.slow
@pytest.mark.parametrize("resolution", sorted(peer.LAYOUTS))
def test_both_networks_have_the_same_size_and_nearly_the_same_flops(resolution):
    pytest.importorskip("diffusers")
    networks = peer.measure_networks(resolution)
    lit, other = networks["lit_gen"], networks["diffusers"]
    assert lit["parameters"] == other["parameters"]
    assert lit["parameter_counts"]["ema"] == lit["parameters"]  # the EMA copy is listed apart, not counted
    assert abs(lit["training_flops_per_image"] / other["training_flops_per_image"] - 1) < 0.05
