"""The per-step reseed: seeds that differ by step and rank, and the same draws as torch.manual_seed."""

import torch

from lit_gen.callbacks.step_seed import seed_torch, step_seed


def test_seed_torch_gives_the_draws_of_torch_manual_seed():
    torch.manual_seed(123)
    expected = torch.randn(5), torch.randint(0, 1000, (5,))
    torch.manual_seed(7)  # some other state in between
    torch.randn(3)
    seed_torch(123)
    got = torch.randn(5), torch.randint(0, 1000, (5,))
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_step_seeds_differ_by_step_and_rank_and_repeat_for_equal_inputs():
    seeds = {step_seed(0, step, rank) for step in range(100) for rank in range(4)}
    assert len(seeds) == 400
    assert step_seed(3, 10, 1) == step_seed(3, 10, 1)
    assert all(0 <= s < 2**63 for s in seeds)
