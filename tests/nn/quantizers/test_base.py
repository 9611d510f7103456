"""lit_gen.nn.quantizers.base: the shared checks, the latent <-> rows layout and the usage statistics' format."""

import re

import pytest
import torch

from lit_gen.nn.quantizers.base import Quantizer, as_latent, as_rows, perplexity_of


def test_a_quantizer_refuses_each_bad_size_with_all_three_in_the_message():
    for sizes in ((1, 4, 10), (8, 0, 10), (8, 4, 0)):
        with pytest.raises(ValueError, match=r"^a quantizer needs num_codes >= 2, code_dim >= 1 and dead_code_steps >= 1, "
                                             rf"got {sizes[0]}, {sizes[1]}, {sizes[2]}$"):
            Quantizer(*sizes)


def test_usage_counters_are_int64_in_checkpoints_and_counts_are_not_stored():
    quantizer = Quantizer(8, 4, 10)
    assert list(quantizer.state_dict()) == ["unused_steps"] and quantizer.unused_steps.dtype == torch.int64
    assert quantizer.usage_counts.shape == (8,)


def test_code_indices_must_be_int64_and_in_range():
    quantizer = Quantizer(8, 4, 10)
    with pytest.raises(TypeError, match=r"^code indices must be int64, got torch.int32$"):
        quantizer.check_indices(torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"^code indices must lie in \[0, 8\)"):
        quantizer.check_indices(torch.tensor([0, 8]))


def test_rows_and_latents_round_trip_and_a_wrong_shape_is_named():
    z = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    rows = as_rows(z, 3)
    assert rows.shape == (8, 3) and rows[1].tolist() == z[0, :, 0, 1].tolist()  # one row per position
    torch.testing.assert_close(as_latent(rows, (2, 2, 2)), z)
    for wrong in (torch.zeros(2, 3, 4), torch.zeros(2, 4, 2, 2)):
        with pytest.raises(ValueError, match="^" + re.escape(f"expected a latent of shape (B, 3, H, W), got {tuple(wrong.shape)}") + "$"):
            as_rows(wrong, 3)


def test_perplexity_of_histograms_by_hand():
    assert float(perplexity_of(torch.tensor([5.0, 5.0, 5.0, 5.0]))) == pytest.approx(4.0)
    assert float(perplexity_of(torch.tensor([7.0, 0.0, 0.0]))) == pytest.approx(1.0)
    assert float(perplexity_of(torch.zeros(3))) == pytest.approx(1.0)  # an empty histogram
