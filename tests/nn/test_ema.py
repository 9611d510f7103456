"""EMA of weights: the update formula, its warm-up, buffers, and state that travels with state_dict."""

import pytest
import torch
from torch import nn

from lit_gen.nn.ema import EMA


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def shift(model: nn.Module, amount: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(amount)


def test_update_follows_the_formula():
    model = net()
    ema = EMA(model, decay=0.9, warmup=False)
    before = [p.clone() for p in ema.averaged.parameters()]
    shift(model, 1.0)
    ema.update(model)
    for avg, old, new in zip(ema.averaged.parameters(), before, model.parameters()):
        torch.testing.assert_close(avg, 0.9 * old + 0.1 * new)
    assert int(ema.num_updates) == 1


def test_warmup_ramps_the_decay():
    model = net()
    ema = EMA(model, decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(1 / 10)
    before = [p.clone() for p in ema.averaged.parameters()]
    shift(model, 1.0)
    ema.update(model)
    for avg, old, new in zip(ema.averaged.parameters(), before, model.parameters()):
        torch.testing.assert_close(avg, 0.1 * old + 0.9 * new)
    assert ema.current_decay() == pytest.approx(2 / 11)
    state = ema.state_dict()
    state["num_updates"].fill_(100_000)
    ema.load_state_dict(state)  # the decay follows a restored counter
    assert ema.current_decay() == 0.999


def test_buffers_are_copied_not_averaged():
    model = net()
    ema = EMA(model, decay=0.99, warmup=False)
    model.train()(torch.randn(8, 3) * 5 + 2)  # changes the BatchNorm running statistics
    ema.update(model)
    torch.testing.assert_close(ema.averaged[1].running_mean, model[1].running_mean)


def test_ema_state_lives_in_the_parents_state_dict():
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net()
            self.ema = EMA(self.net, decay=0.5)

    a = Holder()
    shift(a.net, 2.0)
    a.ema.update(a.net)
    state = a.state_dict()
    assert "ema.num_updates" in state and "ema.averaged.0.weight" in state
    b = Holder()
    b.load_state_dict(state)
    torch.testing.assert_close(b.ema.averaged[0].weight, a.ema.averaged[0].weight)
    assert int(b.ema.num_updates) == 1 and b.ema.current_decay() == a.ema.current_decay()


def test_averaged_copy_is_frozen():
    model = net()
    ema = EMA(model)
    assert not any(p.requires_grad for p in ema.averaged.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_applied_to_swaps_weights_in_and_back():
    model = net()
    ema = EMA(model, decay=0.5, warmup=False)
    shift(model, 1.0)
    ema.update(model)
    live = [p.clone() for p in model.parameters()]
    with ema.applied_to(model):
        for p, a in zip(model.parameters(), ema.averaged.parameters()):
            assert torch.equal(p, a)
    for p, saved in zip(model.parameters(), live):
        assert torch.equal(p, saved)


def test_bad_decay_is_an_assertion_below_the_config():
    # model.ema.decay's rule is checked where the config is read (tests/test_rules.py); a Python caller gets this.
    with pytest.raises(AssertionError):
        EMA(net(), decay=1.0)


def test_only_a_power_ema_asks_for_snapshots():
    from lit_gen.nn.ema import PowerEMA

    model = net()
    assert EMA(model, decay=0.9).snapshot_due() is False
    power = PowerEMA(model, sigma_rels=(0.05,), snapshot_every=3)
    due = []
    for _ in range(7):
        power.update(model)
        due.append(power.snapshot_due())
    assert due == [False, False, True, False, False, True, False]
    every_step = PowerEMA(model, sigma_rels=(0.05,), snapshot_every=1)
    assert every_step.snapshot_due() is False  # nothing averaged yet: no snapshot of the initial weights
    every_step.update(model)
    assert every_step.snapshot_due() is True


def test_a_post_hoc_average_is_fixed_and_records_where_it_came_from():
    from lit_gen.nn.ema import PostHocEMA

    model = net()
    average = PostHocEMA(model, sigma_rel=0.07, step=600, sources=12, relative_error=0.01)
    assert (average.kind, average.sigma_rel, average.step, average.sources, average.relative_error) == (
        "post_hoc", 0.07, 600, 12, 0.01)
    assert average.averaged is not model and not any(p.requires_grad for p in average.averaged.parameters())
    before = [p.clone() for p in average.averaged.parameters()]
    shift(model, 1.0)
    average.update(model)
    assert all(torch.equal(a, b) for a, b in zip(average.averaged.parameters(), before))
    assert average.snapshot_due() is False
