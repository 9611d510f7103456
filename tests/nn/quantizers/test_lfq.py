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
