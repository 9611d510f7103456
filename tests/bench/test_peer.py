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
    assert abs(lit["parameters"] / other["parameters"] - 1) < 1e-3  # the same layout, scale-shift conditioning in both
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
    overrides = peer.lit_gen_overrides(16, 3, ["model.objective=flow"])
    assert overrides[:2] == ["data.train_split=train", "data.seed=0"]  # the yardstick's training digits only
    assert overrides[-2:] == ["seed=3", "model.objective=flow"]


def run(lr: float, ema: float, fid: float, quiet: bool = True) -> dict:
    return {"settings": {"lr": lr, "ema_max_decay": ema}, "fid": fid, "quiet": quiet}


def walk(grid: list[dict], scores) -> list[tuple[float, float]]:
    """The points ``extended_points`` asks for, each scored by ``scores(lr, ema)`` as the bench would run it."""
    from bench.common import Recorder

    asked = []
    for point in peer.extended_points("diffusers", grid, 100, Recorder("t", "t")):
        asked.append(point)
        grid.append(run(*point, scores(*point)))
    return asked


def test_a_grid_whose_best_is_interior_is_not_extended():
    grid = [run(lr, ema, 10 + abs(lr - 1e-3) * 1e3 + abs(ema - 0.999) * 1e3) for lr in (3e-4, 1e-3, 3e-3) for ema in (0.99, 0.999, 0.9999)]
    assert walk(grid, lambda lr, ema: 99) == []


def test_a_best_on_an_edge_is_extended_until_it_is_interior_or_twice():
    grid = [run(lr, ema, 100 - lr * 1e4) for lr in (3e-4, 1e-3, 3e-3) for ema in (0.999, 0.9999)]
    # Better with every larger rate: extended up twice by the grid's top ratio (3x), then that edge stays; the
    # best's decay, the grid's smallest, is then extended down once (no better, so it stays interior).
    asked = walk(grid, lambda lr, ema: 100 - lr * 1e4)
    assert asked == [(0.009, 0.999), (0.027, 0.999), (0.027, 0.99)]
    # A best at the top rate that is interior there, but at the largest EMA: the decay axis is extended.
    grid = [run(lr, ema, {3e-3: 5}.get(lr, 50) - (ema > 0.9995)) for lr in (3e-4, 1e-3, 3e-3, 9e-3) for ema in (0.999, 0.9999)]
    grid[-1]["fid"] = grid[-2]["fid"] = 80  # the extra rate is worse: the rate axis is interior
    asked = walk(grid, lambda lr, ema: 60)
    assert asked == [(0.003, 0.99999)]


def test_a_loaded_run_does_not_choose_the_grid():
    grid = [run(1e-3, 0.999, 30), run(3e-3, 0.999, 5, quiet=False), run(3e-4, 0.999, 40),
            run(1e-3, 0.9999, 35), run(1e-3, 0.99, 36)]
    assert walk(grid, lambda lr, ema: 99) == []  # the quiet best, 1e-3 / 0.999, is interior on both axes


def test_the_load_rule_reruns_a_run_that_shared_the_machine():
    from bench.common import quiet_enough

    assert quiet_enough([2.3, 1.0, 0.5], [2.5, 2.0, 1.0], threads=2)
    assert not quiet_enough([1.0, 1.0, 1.0], [2.6, 2.0, 1.0], threads=2)
    assert not quiet_enough([1.6, 1.0, 1.0], [1.0, 1.0, 1.0], threads=1)


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
