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


def test_each_peer_has_a_recipe_and_a_grid_around_it():
    ddp = peer.recipe_settings("ddpm_pytorch", 300)
    assert (ddp["lr"], ddp["ema_decay"], ddp["objective"]) == (8e-5, 0.995, "pred_v")  # its README's settings
    assert peer.grid_settings("ddpm_pytorch", 1e-3, 0.999, 300) == {**ddp, "lr": 1e-3, "ema_decay": 0.999}
    assert peer.recipe_settings("diffusers", 312)["warmup_steps"] == 15
    for name, ((lrs, emas), (quick_lrs, quick_emas)) in peer.GRIDS.items():
        assert len(lrs) * len(emas) >= 4 and len(quick_lrs) * len(quick_emas) >= 2, name


@pytest.mark.slow
@pytest.mark.parametrize("resolution", sorted(peer.DDP_LAYOUTS))
def test_denoising_diffusion_pytorch_network_is_within_ten_percent_of_lit_gens(resolution):
    pytest.importorskip("denoising_diffusion_pytorch")
    networks = peer.measure_networks(resolution)
    assert abs(networks["ddpm_pytorch"]["parameters"] / networks["lit_gen"]["parameters"] - 1) < 0.1


def test_a_lit_gen_variant_is_an_arm_with_its_overrides_and_bad_ones_are_refused():
    assert peer.parse_variant("flow=model.objective=flow;model.lr=1e-3") == (
        "lit_gen_flow", ["model.objective=flow", "model.lr=1e-3"])
    for bad in ("flow", "flow=", "2x=model.lr=1", "flow=model.objective"):
        with pytest.raises(SystemExit, match="expected NAME=KEY=VALUE"):
            peer.parse_variant(bad)
    assert peer.lit_gen_overrides(16, 3, ["model.objective=flow"])[-2:] == ["seed=3", "model.objective=flow"]


def test_a_continuous_objective_arm_records_the_euler_sampler_it_ran():
    protocol = {"sampler": "ddim", "steps": 50, "eta": 0.0}
    assert peer.protocol_for(protocol, ["model.objective=flow"]) == {"sampler": "euler", "steps": 50, "eta": None}
    assert peer.protocol_for(protocol, ["model.lr=1e-3"]) == protocol
    assert peer.protocol_for(protocol, None) == protocol
    assert peer.protocol_for(protocol, ["model.objective='edm'"])["sampler"] == "euler"  # read as the config reads it


def test_an_ablation_arm_is_a_name_and_its_overrides():
    from bench import ablations
    from bench.common import parse_named_overrides

    assert parse_named_overrides("wd=model.weight_decay=0.01", "--arm") == ("wd", ["model.weight_decay=0.01"])
    with pytest.raises(SystemExit, match="--arm 'wd': expected NAME=KEY=VALUE"):
        parse_named_overrides("wd", "--arm")
    # Every built-in arm changes one thing and names only keys the recipe's config accepts.
    from lit_gen.config import load_config

    for name, overrides in ablations.ARMS.items():
        assert len(overrides) == (0 if name == "recipe" else 1), name
        load_config(ablations.REPO / ablations.CONFIG, overrides)
