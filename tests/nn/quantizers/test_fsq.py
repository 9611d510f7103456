"""FSQ: the bound and rounding by hand, the index <-> code bijection, the recommended levels, and agreement
with vector-quantize-pytorch's FSQ."""

import math

import pytest
import torch

from lit_gen.nn.quantizers import FiniteScalarQuantizer
from lit_gen.nn.quantizers.fsq import RECOMMENDED_LEVELS


def latent(rows) -> torch.Tensor:
    """Rows (N, D) -> a latent (1, D, 1, N)."""
    return torch.as_tensor(rows, dtype=torch.float32).t()[None, :, None, :].contiguous()


def test_bound_and_rounding_by_hand_for_odd_and_even_levels():
    fsq = FiniteScalarQuantizer(levels=[5, 4])
    # L = 5: h = 4 * 1.001 / 2 = 2.002, no offset; L = 4: h = 3 * 1.001 / 2 = 1.5015, offset 1/2, shift atanh(0.5/1.5015).
    z = torch.tensor([[0.0, 0.0], [0.3, 0.3], [10.0, 10.0], [-10.0, -10.0]])
    h5, h4 = 2.002, 1.5015
    s4 = math.atanh(0.5 / h4)
    bounded = fsq.bound(z)
    expected = torch.tensor([[0.0, math.tanh(0.0 + s4) * h4 - 0.5],
                             [math.tanh(0.3) * h5, math.tanh(0.3 + s4) * h4 - 0.5],
                             [h5, h4 - 0.5], [-h5, -h4 - 0.5]])
    assert torch.allclose(bounded, expected, atol=1e-5)
    assert bounded[0, 1].abs() < 1e-6  # z = 0 sits on a level for even L too
    codes = fsq.quantize_rows(z)
    # round(bounded) / floor(L/2): 5 levels -> {-2..2}/2, 4 levels -> {-2..1}/2.
    assert codes.tolist() == [[0.0, 0.0], [0.5, 0.0], [1.0, 0.5], [-1.0, -1.0]]


def test_every_level_is_reached_and_no_other():
    for levels in ([2], [3], [4], [5], [8]):
        fsq = FiniteScalarQuantizer(levels=levels)
        z = torch.linspace(-8, 8, 20001)[:, None]
        reached = torch.unique(fsq.quantize_rows(z) * (levels[0] // 2))
        low = -(levels[0] // 2)
        assert reached.tolist() == [float(v) for v in range(low, low + levels[0])], levels


def test_indices_and_codes_are_a_bijection_over_the_whole_codebook():
    fsq = FiniteScalarQuantizer(levels=[3, 4, 2])
    assert fsq.num_codes == 24 and fsq.code_dim == 3
    indices = torch.arange(24).view(2, 3, 4)
    z = fsq.codes_to_latent(indices)
    # Mixed radix, channel 0 least significant: index 7 = 1 + 2 * 3 -> digits (1, 2, 0).
    rows = z.permute(0, 2, 3, 1).reshape(-1, 3)
    assert rows[7].tolist() == [0.0, 0.0, -1.0]  # digits minus floor(L/2), over floor(L/2)
    assert len({tuple(r) for r in rows.tolist()}) == 24
    assert torch.equal(fsq.rows_to_indices(rows), indices.flatten())
    # Quantizing any latent lands on a code whose index maps back to that very code.
    z_e = torch.randn(3, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 2
    q = fsq(z_e)
    assert torch.equal(fsq.codes_to_latent(q.indices), q.z_q)
    assert torch.equal(fsq.indices_of(z_e), q.indices)
    with pytest.raises(ValueError, match=r"\[0, 24\)"):
        fsq.codes_to_latent(torch.full((1, 1, 1), 24))


def test_rounding_passes_the_gradient_of_the_bound_straight_through():
    fsq = FiniteScalarQuantizer(levels=[5])
    z = torch.tensor([[0.3], [-1.2]], requires_grad=True)
    fsq.quantize_rows(z).sum().backward()
    # d/dz [tanh(z) * h / floor(L/2)] = (1 - tanh(z)^2) * 2.002 / 2
    expected = (1 - torch.tanh(z.detach()) ** 2) * 2.002 / 2
    assert torch.allclose(z.grad, expected, atol=1e-6)


def test_no_loss_terms_and_usage_counts_every_code():
    fsq = FiniteScalarQuantizer(levels=[3, 3])
    all_codes = fsq.codes_to_latent(torch.arange(9).view(1, 3, 3))
    q = fsq.train()(all_codes)
    assert q.losses == {} and q.loss.item() == 0.0
    assert q.perplexity.item() == pytest.approx(9.0)
    usage = fsq.code_usage()
    assert usage.used_fraction == 1.0 and usage.dead_codes == 0


def test_recommended_levels_give_their_codebook_size():
    for bits, levels in RECOMMENDED_LEVELS.items():
        assert abs(math.log2(math.prod(levels)) - bits) < 0.1, levels  # the paper's sets are near 2^bits
        fsq = FiniteScalarQuantizer(num_codes=2 ** bits)
        assert fsq.levels == list(levels) and fsq.num_codes == math.prod(levels)
    with pytest.raises(ValueError, match=r"^no recommended FSQ levels for 1000 codes: give levels explicitly \(e\.g\. "
                       r"levels: \[8, 5, 5, 5\]\) or pick num_codes among 256, 1024, 4096, 16384, 65536$"):
        FiniteScalarQuantizer(num_codes=1000)
    with pytest.raises(ValueError, match=r"^FSQ needs its levels \(e\.g\. levels: \[8, 5, 5, 5\]\) or a num_codes to pick them$"):
        FiniteScalarQuantizer()
    with pytest.raises(ValueError, match="not num_codes"):
        FiniteScalarQuantizer(levels=[8, 5], num_codes=64)
    with pytest.raises(ValueError, match=">= 2"):
        FiniteScalarQuantizer(levels=[8, 1])


def test_eps_must_widen_the_bound_and_stay_below_one():
    # eps = 0 leaves two levels' shift atanh(1) infinite: every value would land on one level.
    for eps in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"^FSQ eps must lie in \(0, 1\), got "):
            FiniteScalarQuantizer(levels=[2, 3], eps=eps)
    assert torch.isfinite(FiniteScalarQuantizer(levels=[2, 3], eps=0.999).bound(torch.zeros(1, 2))).all()


def test_the_bounds_constants_are_their_float64_closed_forms():
    # atanh(o / h) near 1 (two levels) loses 1e-5 when computed in float32: the constants are float64 first.
    for levels in ([2, 3, 4], [8, 6, 5], [2, 2]):
        fsq = FiniteScalarQuantizer(levels=levels, eps=1e-3)
        half_l = [(level - 1) * (1 + 1e-3) / 2 for level in levels]
        shift = [math.atanh((0.5 if level % 2 == 0 else 0.0) / h) for level, h in zip(levels, half_l)]
        assert torch.equal(fsq._half_l, torch.tensor(half_l, dtype=torch.float64).float())
        assert torch.equal(fsq._shift, torch.tensor(shift, dtype=torch.float64).float())


def test_the_levels_constants_are_rebuilt_from_the_config_not_stored_in_checkpoints():
    fsq = FiniteScalarQuantizer(levels=[8, 5], dead_code_steps=7)
    assert list(fsq.state_dict()) == ["unused_steps"]  # usage tracking only
    assert fsq.dead_code_steps == 7 and FiniteScalarQuantizer(levels=[8, 5]).dead_code_steps == 100


def test_the_quantized_latent_keeps_the_encoders_dtype():
    fsq = FiniteScalarQuantizer(levels=[5, 4])
    z = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    assert fsq(z).z_q.dtype == torch.float64


def test_agrees_with_vector_quantize_pytorch():
    vqp = pytest.importorskip("vector_quantize_pytorch")
    levels = [8, 5, 5, 5]
    ours = FiniteScalarQuantizer(levels=levels)
    theirs = vqp.FSQ(levels=levels)
    z = torch.randn(4, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * 2
    q = ours(z)
    out, indices = theirs(z)
    assert torch.allclose(q.z_q, out, atol=1e-6)
    assert torch.equal(q.indices, indices.long())
    every = torch.arange(ours.num_codes)
    assert torch.allclose(ours.indices_to_rows(every), theirs.indices_to_codes(every), atol=1e-6)
