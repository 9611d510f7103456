"""lit_gen.training.running_means: weighting, epochs, checkpoints, ranks."""

import pytest
import torch

from lit_gen.training.running_means import RunningMeans


def test_means_weigh_each_value_by_its_weight_and_skip_empty_terms():
    means = RunningMeans()
    means.add(0, {"a": torch.tensor(1.0), "b": torch.tensor(5.0)}, {"a": 2, "b": torch.tensor(0)})
    means.add(0, {"a": torch.tensor(4.0), "b": torch.tensor(3.0)}, {"a": 1, "b": torch.tensor(3)})
    out = means.means()
    assert out["a"].item() == pytest.approx((1 * 2 + 4 * 1) / 3)
    assert out["b"].item() == pytest.approx(3.0)  # the weight-0 value does not count
    means.add(0, {"c": torch.tensor(7.0)}, {"c": torch.tensor(0)})
    assert "c" not in means.means()


def test_a_new_epoch_starts_from_zero_and_state_survives_a_round_trip():
    means = RunningMeans()
    means.add(3, {"a": torch.tensor(10.0)}, {"a": 1})
    restored = RunningMeans()
    restored.load_state_dict(means.state_dict())
    restored.add(3, {"a": torch.tensor(20.0)}, {"a": 1})
    assert restored.means()["a"].item() == pytest.approx(15.0)  # a resumed epoch keeps its first half
    restored.add(4, {"a": torch.tensor(1.0)}, {"a": 1})
    assert restored.means()["a"].item() == pytest.approx(1.0)


def test_reduce_sum_combines_ranks_before_dividing():
    means = RunningMeans()
    means.add(0, {"a": torch.tensor(2.0)}, {"a": 1})
    other_rank = iter([torch.tensor([24.0]), torch.tensor([3.0])])  # its sums, then its weights
    assert means.means(lambda t: t + next(other_rank))["a"].item() == pytest.approx((2.0 + 24.0) / (1 + 3))


def test_batch_sizes_weigh_by_default_and_count_on_the_host():
    means = RunningMeans()
    means.add(0, {"a": torch.tensor(2.0)}, default_weight=3)
    means.add(0, {"a": torch.tensor(6.0)}, {"other": torch.tensor(9)}, default_weight=1)
    assert means.means()["a"].item() == pytest.approx((2.0 * 3 + 6.0 * 1) / 4)
    assert means.weights["a"] == 4 and isinstance(means.weights["a"], int)  # no tensor op for a plain count


def test_the_checkpoint_format_is_float32_tensors_whatever_the_weights_were():
    means = RunningMeans()
    means.add(1, {"a": torch.tensor(2.0), "b": torch.tensor(4.0)}, {"b": torch.tensor(2)}, default_weight=3)
    state = means.state_dict()
    assert state["epoch"] == 1
    for name, weight in {"a": 3.0, "b": 2.0}.items():
        assert state["weights"][name].dtype == torch.float32 and state["weights"][name].item() == weight
    assert state["sums"]["a"].item() == 6.0 and state["sums"]["b"].item() == 8.0


def test_adding_after_a_state_dict_leaves_that_state_dict_alone():
    """A checkpoint written mid-epoch holds the sums of that moment, not later ones (no in-place sums)."""
    means = RunningMeans()
    means.add(0, {"a": torch.tensor(1.0)}, {"a": torch.tensor(1.0)})
    state = means.state_dict()
    restored = RunningMeans()
    restored.load_state_dict(state)
    restored.add(0, {"a": torch.tensor(5.0)}, {"a": torch.tensor(1.0)})
    means.add(0, {"a": torch.tensor(7.0)}, {"a": torch.tensor(1.0)})
    assert state["sums"]["a"].item() == 1.0 and state["weights"]["a"].item() == 1.0
    assert restored.means()["a"].item() == pytest.approx(3.0) and means.means()["a"].item() == pytest.approx(4.0)


def test_a_resumed_epoch_has_the_bitwise_means_of_an_uninterrupted_one():
    values = torch.randn(7, generator=torch.Generator().manual_seed(0))
    counts = [torch.tensor(c) for c in (3, 0, 1, 4, 2, 0, 5)]
    whole, first = RunningMeans(), RunningMeans()
    for i in range(7):
        whole.add(2, {"x": values[i], "part": values[i] * 2}, {"part": counts[i]}, default_weight=8)
        if i < 3:
            first.add(2, {"x": values[i], "part": values[i] * 2}, {"part": counts[i]}, default_weight=8)
    second = RunningMeans()
    second.load_state_dict(first.state_dict())
    for i in range(3, 7):
        second.add(2, {"x": values[i], "part": values[i] * 2}, {"part": counts[i]}, default_weight=8)
    a, b = whole.means(), second.means()
    assert a.keys() == b.keys() == {"x", "part"}
    assert all(torch.equal(a[k], b[k]) for k in a)
