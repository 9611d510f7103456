"""LFQ: signs and binary indices, the entropy term on distributions worked by hand, its gradient, and
agreement with vector-quantize-pytorch's LFQ."""

import math

import pytest
import torch

from lit_gen.nn.quantizers import LookupFreeQuantizer
from lit_gen.nn.quantizers.lfq import binary_entropy


def latent(rows) -> torch.Tensor:
    return torch.as_tensor(rows, dtype=torch.float32).t()[None, :, None, :].contiguous()


def test_codes_are_signs_and_indices_their_binary_number():
    lfq = LookupFreeQuantizer(num_codes=8)
    assert lfq.code_dim == 3
    q = lfq(latent([[0.3, -2.0, 0.1], [-0.1, -0.2, -0.3], [1.0, 1.0, 1.0]]))
    assert q.indices.flatten().tolist() == [1 + 4, 0, 7]  # channel i is bit i
    assert q.z_q[0, :, 0, 0].tolist() == [1.0, -1.0, 1.0]
    every = torch.arange(8).view(1, 2, 4)
    assert torch.equal(lfq.indices_of(lfq.codes_to_latent(every)), every)
    with pytest.raises(ValueError, match="power of two"):
        LookupFreeQuantizer(num_codes=1000)


def test_entropy_term_on_known_distributions():
    lfq = LookupFreeQuantizer(num_codes=4, entropy_weight=1.0, diversity_gamma=1.0, commitment_weight=0.0)
    # z = 0: every bit a fair coin, so each vector is maximally unsure and the batch uses all codes evenly.
    per_vector, batch = lfq.entropy_terms(torch.zeros(5, 2))
    assert per_vector.item() == pytest.approx(2 * math.log(2), abs=1e-6)
    assert batch.item() == pytest.approx(math.log(4), abs=1e-6)
    # Confident vectors spread evenly over the 4 codes: no per-vector entropy, the batch entropy is log 4.
    spread = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    per_vector, batch = lfq.entropy_terms(spread)
    assert per_vector.item() == pytest.approx(0.0, abs=1e-6) and batch.item() == pytest.approx(math.log(4), abs=1e-6)
    # All on one code: the batch entropy is 0 too, so the loss term is highest there (0 against -log 4).
    per_vector, batch = lfq.entropy_terms(spread[:1].repeat(4, 1))
    assert batch.item() == pytest.approx(0.0, abs=1e-6)
    # A worked mixed case with tau = 1: p(+1 | z) = sigmoid(4 z).
    soft = LookupFreeQuantizer(num_codes=2, temperature=1.0)
    z = torch.tensor([[0.25], [-0.5]])
    p = torch.sigmoid(4 * z).flatten()
    h = lambda x: -(x * math.log(x) + (1 - x) * math.log(1 - x))  # noqa: E731
    per_vector, batch = soft.entropy_terms(z)
    assert per_vector.item() == pytest.approx((h(p[0].item()) + h(p[1].item())) / 2, abs=1e-6)
    assert batch.item() == pytest.approx(h(p.mean().item()), abs=1e-6)


def test_chunked_batch_distribution_equals_the_direct_one_with_its_gradient(monkeypatch):
    from lit_gen.nn.quantizers import lfq as module

    torch.manual_seed(0)
    z = torch.randn(37, 4) * 0.05
    quantizer = LookupFreeQuantizer(num_codes=16)
    z1 = z.clone().requires_grad_(True)
    direct = quantizer.entropy_terms(z1)[1]
    direct.backward()
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 16 * 5)  # 5 rows per chunk
    z2 = z.clone().requires_grad_(True)
    chunked = quantizer.entropy_terms(z2)[1]
    chunked.backward()
    assert torch.allclose(direct, chunked, atol=1e-6)
    assert torch.allclose(z1.grad, z2.grad, rtol=1e-4, atol=1e-5)  # float32 sums in another order


def test_binary_entropy_is_stable_and_exact():
    logits = torch.tensor([-200.0, -2.0, 0.0, 3.0, 200.0])
    p = torch.sigmoid(logits[1:4].double())
    expected = -(p * p.log() + (1 - p) * (1 - p).log())
    got = binary_entropy(logits)
    assert torch.allclose(got[1:4].double(), expected, atol=1e-6)
    assert got[0].item() == pytest.approx(0.0, abs=1e-6) and got[4].item() == pytest.approx(0.0, abs=1e-6)


def test_loss_terms_and_straight_through_gradient():
    lfq = LookupFreeQuantizer(num_codes=4, entropy_weight=0.5, diversity_gamma=2.0, commitment_weight=0.25)
    z = latent([[0.5, -0.2], [-0.1, 0.4]]).requires_grad_(True)
    q = lfq(z)
    rows = z.detach().permute(0, 2, 3, 1).reshape(-1, 2)
    assert q.losses["commitment"].item() == pytest.approx(0.25 * ((rows - rows.sign()) ** 2).mean().item())
    per_vector, batch = lfq.entropy_terms(rows)
    assert q.losses["entropy"].item() == pytest.approx(0.5 * (per_vector - 2.0 * batch).item())
    upstream = torch.randn_like(z)
    (grad,) = torch.autograd.grad((q.z_q * upstream).sum(), z)
    assert torch.equal(grad, upstream)


def test_agrees_with_vector_quantize_pytorch():
    vqp = pytest.importorskip("vector_quantize_pytorch")
    torch.manual_seed(0)
    z = torch.randn(2, 4, 3, 3) * 0.02  # small, so the soft assignments are far from one-hot
    ours = LookupFreeQuantizer(num_codes=16, entropy_weight=0.1, diversity_gamma=1.0, commitment_weight=0.25)
    theirs = vqp.LFQ(codebook_size=16, dim=4, entropy_loss_weight=0.1, diversity_gamma=1.0,
                     commitment_loss_weight=0.25)
    q = ours.train()(z)
    out, indices, aux = theirs.train()(z)
    assert torch.allclose(q.z_q, out, atol=1e-6)
    # Their bit order is the reverse of ours (channel 0 the most significant bit).
    reversed_bits = sum(((q.indices >> i) & 1) << (3 - i) for i in range(4))
    assert torch.equal(reversed_bits, indices.long())
    assert q.loss.item() == pytest.approx(aux.item(), rel=1e-4, abs=1e-6)


def test_the_documented_defaults_are_the_constructors():
    lfq = LookupFreeQuantizer()
    assert (lfq.num_codes, lfq.code_dim, lfq.entropy_weight, lfq.diversity_gamma, lfq.commitment_weight,
            lfq.temperature, lfq.dead_code_steps) == (1024, 10, 0.1, 1.0, 0.25, 0.01, 100)
    assert LookupFreeQuantizer(num_codes=4, dead_code_steps=7).dead_code_steps == 7


def test_bad_settings_are_refused_with_their_reason():
    for num_codes, nearest in ((1000, 1024), (1, 1), (3, 4)):
        with pytest.raises(ValueError, match=rf"^LFQ needs num_codes a power of two \(its code dimension is log2 K\), "
                                             rf"got {num_codes}; nearest: {nearest}$"):
            LookupFreeQuantizer(num_codes=num_codes)
    for setting in ({"entropy_weight": -0.1}, {"diversity_gamma": -1.0}, {"commitment_weight": -0.5},
                    {"temperature": 0.0}, {"temperature": -0.01}):
        with pytest.raises(ValueError, match=r"^LFQ weights must be >= 0 and its temperature > 0, got "):
            LookupFreeQuantizer(num_codes=4, **setting)


def test_a_zero_channel_is_negative_in_the_code_its_index_and_its_latent():
    lfq = LookupFreeQuantizer(num_codes=4, entropy_weight=0.0)
    z = torch.tensor([[0.0, 0.0], [0.0, 0.5], [-0.2, 0.0]], dtype=torch.float64).t()[None, :, None, :].contiguous()
    out = lfq(z)
    assert out.z_q.dtype == torch.float64  # the encoder's dtype, half precision included
    assert lfq(z.to(torch.bfloat16)).z_q.dtype == torch.bfloat16
    assert out.z_q[0, :, 0, :].t().tolist() == [[-1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]
    assert out.indices.flatten().tolist() == [0, 2, 0]
    torch.testing.assert_close(lfq.codes_to_latent(out.indices), out.z_q.float())
    assert "entropy" not in out.losses  # a zero weight skips the term rather than adding zeros


def test_codes_to_latent_is_the_sign_pattern_of_every_index():
    lfq = LookupFreeQuantizer(num_codes=8)
    latent = lfq.codes_to_latent(torch.arange(8).view(1, 2, 4))
    rows = latent.permute(0, 2, 3, 1).reshape(-1, 3)
    expected = torch.tensor([[1.0 if (k >> i) & 1 else -1.0 for i in range(3)] for k in range(8)])
    torch.testing.assert_close(rows, expected)


def test_perplexity_counts_the_codes_of_the_batch():
    lfq = LookupFreeQuantizer(num_codes=4)
    same = torch.ones(1, 2, 2, 2)
    distinct = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]).t().reshape(1, 2, 2, 2)
    assert float(lfq(same).perplexity) == pytest.approx(1.0)
    assert float(lfq(distinct).perplexity) == pytest.approx(4.0)


def test_the_level_constants_are_rebuilt_from_the_config_not_stored_in_checkpoints():
    assert list(LookupFreeQuantizer(num_codes=16).state_dict()) == ["unused_steps"]
