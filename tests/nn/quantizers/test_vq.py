"""VectorQuantizer: the paper's loss terms, straight-through gradients, EMA codes, restarts, statistics."""

import math

import pytest
import torch

from lit_gen.nn.quantizers import VectorQuantizer, perplexity_of


def quantizer_with(codes, **kwargs) -> VectorQuantizer:
    codes = torch.as_tensor(codes, dtype=torch.float32)
    vq = VectorQuantizer(codes.shape[0], codes.shape[1], **kwargs)
    with torch.no_grad():
        vq.embedding.copy_(codes)
        if vq.codebook_ema_decay is not None:
            vq.ema_embed_sum.copy_(codes)
    return vq


def as_latent(vectors) -> torch.Tensor:
    """Rows (N, D) -> a latent (1, D, 1, N), so position j holds vector j."""
    return torch.as_tensor(vectors, dtype=torch.float32).t()[None, :, None, :].contiguous()


def test_straight_through_passes_the_decoder_gradient_to_the_encoder_unchanged():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4)
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    upstream = torch.randn(2, 4, 3, 3)
    (vq(z_e).z_q * upstream).sum().backward()
    assert torch.equal(z_e.grad, upstream)


def test_loss_terms_follow_the_paper_with_beta_on_the_commitment_term():
    codes = [[0.0, 0.0], [1.0, 1.0]]
    z = [[0.2, -0.1], [0.9, 1.3]]  # nearest codes: 0 and 1
    vq = quantizer_with(codes, beta=0.5)
    z_e = as_latent(z).requires_grad_(True)
    q = vq(z_e)
    assert q.indices.flatten().tolist() == [0, 1]
    mse = (0.2 ** 2 + 0.1 ** 2 + 0.1 ** 2 + 0.3 ** 2) / 4  # mean over the 4 latent entries
    # Codebook term ||sg[z_e] - e||^2 has no beta; the commitment term beta * ||z_e - sg[e]||^2 does.
    assert q.losses["codebook"].item() == pytest.approx(mse)
    assert q.losses["commitment"].item() == pytest.approx(0.5 * mse)
    # The commitment term moves only the encoder, the codebook term only the codes.
    commit_grad, = torch.autograd.grad(q.losses["commitment"], z_e, retain_graph=True)
    expected = 0.5 * 2 * (as_latent(z) - as_latent(codes)) / 4
    assert torch.allclose(commit_grad, expected)
    assert vq.embedding.grad is None
    q.losses["codebook"].backward()
    assert z_e.grad is None
    expected_codes_grad = 2 * (torch.tensor(codes) - torch.tensor(z)) / 4
    assert torch.allclose(vq.embedding.grad, expected_codes_grad)


def test_ema_update_equals_the_formula_and_replaces_the_codebook_loss():
    codes = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    decay, eps = 0.9, 1e-5
    vq = quantizer_with(codes, codebook_ema_decay=decay, ema_eps=eps)
    z = torch.tensor([[0.2, -0.1], [-0.2, 0.3], [0.9, 1.3]])  # codes 0, 0, 1; code 2 unused
    q = vq(as_latent(z))
    assert q.losses["codebook"].item() == 0.0 and not vq.embedding.requires_grad

    counts = torch.tensor([2.0, 1.0, 0.0])
    sums = torch.stack([z[0] + z[1], z[2], torch.zeros(2)])
    size = decay * torch.ones(3) + (1 - decay) * counts
    embed_sum = decay * codes + (1 - decay) * sums
    n = size.sum()
    smoothed = (size + eps) / (n + 3 * eps) * n
    assert torch.allclose(vq.ema_cluster_size, size)
    assert torch.allclose(vq.ema_embed_sum, embed_sum)
    assert torch.allclose(vq.embedding, embed_sum / smoothed[:, None])

    vq.eval()  # evaluation never moves the codes
    before = vq.embedding.clone()
    vq(as_latent(z))
    assert torch.equal(vq.embedding, before)


def test_ema_skips_a_non_finite_batch():
    vq = quantizer_with([[0.0, 0.0], [1.0, 1.0]], codebook_ema_decay=0.9)
    before = vq.embedding.clone()
    vq(as_latent([[float("nan"), 0.0], [1.0, 1.0]]))
    assert torch.equal(vq.embedding, before)


def test_dead_codes_are_restarted_from_recent_encoder_outputs():
    codes = [[0.0, 0.0], [1.0, 1.0], [100.0, 100.0], [-100.0, 100.0]]
    z = torch.tensor([[0.1, 0.2], [0.9, 0.8], [0.3, -0.1], [1.2, 0.7]])
    vq = quantizer_with(codes, dead_code_steps=2, restart_dead_codes=True)
    vq(as_latent(z))
    assert vq.code_usage().dead_codes == 0  # unused once: not dead yet
    assert vq.unused_steps.tolist() == [0, 0, 1, 1]
    vq(as_latent(z), generator=torch.Generator().manual_seed(0))
    revived = vq.embedding.detach()[2:]
    for row in revived:  # each restarted code is one of the batch's encoder outputs
        assert (z == row).all(dim=1).any()
    assert vq.unused_steps.tolist() == [0, 0, 0, 0]
    # The revived codes now attract encoder outputs.
    vq.eval()
    assert set(vq(as_latent(z)).indices.flatten().tolist()) & {2, 3}


def test_restart_draws_from_the_generator():
    def restarted(seed):
        vq = quantizer_with([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0]], dead_code_steps=1,
                            restart_dead_codes=True, codebook_ema_decay=0.99)
        vq(as_latent(torch.arange(16.0).view(8, 2) / 16), generator=torch.Generator().manual_seed(seed))
        return vq.embedding.detach().clone()

    assert torch.equal(restarted(3), restarted(3))
    assert not torch.equal(restarted(3), restarted(4))


def test_perplexity_is_k_for_uniform_use_and_one_for_a_single_code():
    codes = torch.eye(4)
    vq = quantizer_with(codes)
    assert vq(as_latent(codes.repeat(3, 1))).perplexity.item() == pytest.approx(4.0)
    assert vq(as_latent(codes[[2, 2, 2]])).perplexity.item() == pytest.approx(1.0)
    assert perplexity_of(torch.tensor([1.0, 1.0, 0.0, 0.0])).item() == pytest.approx(2.0)
    usage = vq.code_usage()  # accumulated over both training batches: counts 3, 3, 6, 3
    assert usage.used_fraction == 1.0
    probs = [0.2, 0.2, 0.4, 0.2]
    assert usage.perplexity == pytest.approx(math.exp(-sum(p * math.log(p) for p in probs)))
    vq.reset_usage()
    assert vq.code_usage().used_fraction == 0.0


def test_codes_to_latent_round_trips_indices():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 3)
    indices = torch.randint(0, 16, (2, 4, 5))
    latent = vq.codes_to_latent(indices)
    assert latent.shape == (2, 3, 4, 5)
    q = vq.eval()(latent)
    assert torch.equal(q.indices, indices)
    assert torch.equal(q.z_q, latent)
    z_e = torch.randn(2, 3, 4, 5)
    q = vq(z_e)
    assert torch.allclose(vq.codes_to_latent(q.indices), q.z_q, atol=1e-6)  # z_e + (e - z_e) rounds
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        vq.codes_to_latent(torch.full((1, 2, 2), 16))


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same initial codebooks on both ranks
    ema = VectorQuantizer(8, 2, codebook_ema_decay=0.9)
    restart = VectorQuantizer(8, 2, codebook_ema_decay=0.9, restart_dead_codes=True, dead_code_steps=1)
    data = torch.Generator().manual_seed(100 + rank)  # each rank sees its own batch
    torch.manual_seed(10 + rank)  # and its own global RNG: restarts must still agree
    for _ in range(3):
        z_e = torch.randn(2, 2, 3, 3, generator=data)
        ema(z_e)
        restart(z_e)
    torch.save({"ema": ema.state_dict(), "restart": restart.state_dict()}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_under_ddp_ema_statistics_are_all_reduced_and_restarts_agree(tmp_path):
    # fork: the workers start in milliseconds instead of re-importing torch.
    torch.multiprocessing.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                                          start_method="fork")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name in ("ema", "restart"):
        for key, value in rank0[name].items():
            assert torch.equal(value, rank1[name][key]), f"{name}.{key} differs between ranks"
    assert rank0["restart"]["unused_steps"].sum() == 0  # restarts happened (every unused code is revived)
    # All-reduced EMA equals single-process EMA over the union of both ranks' batches.
    torch.manual_seed(0)
    single = VectorQuantizer(8, 2, codebook_ema_decay=0.9)
    data = [torch.Generator().manual_seed(100 + r) for r in (0, 1)]
    for _ in range(3):
        single(torch.cat([torch.randn(2, 2, 3, 3, generator=g) for g in data]))
    for key, value in single.state_dict().items():
        assert torch.allclose(value.float(), rank0["ema"][key].float(), atol=1e-6), key


def test_the_documented_defaults_are_the_constructors():
    vq = VectorQuantizer()
    assert (vq.num_codes, vq.code_dim, vq.beta, vq.codebook_ema_decay, vq.ema_eps, vq.dead_code_steps,
            vq.restart_dead_codes, vq.rotation_trick) == (512, 64, 0.25, None, 1e-5, 100, False, False)


def test_bad_settings_are_refused_with_their_reason():
    for beta, decay in ((-0.1, None), (0.25, 0.0), (0.25, 1.0), (0.25, 1.5)):
        with pytest.raises(ValueError, match=rf"^beta must be >= 0 and codebook_ema_decay None or in \(0, 1\), "
                                             rf"got {beta}, {decay}$"):
            VectorQuantizer(num_codes=4, code_dim=2, beta=beta, codebook_ema_decay=decay)
    assert VectorQuantizer(num_codes=4, code_dim=2, beta=0.0).beta == 0.0  # no commitment term is allowed


def test_the_codebook_starts_uniform_on_plus_minus_one_over_k():
    torch.manual_seed(0)
    k = 64
    weight = VectorQuantizer(num_codes=k, code_dim=32).embedding.detach()
    assert weight.min() >= -1.0 / k and weight.max() <= 1.0 / k
    assert weight.min() < -0.95 / k and weight.max() > 0.95 / k  # the whole range, 2,048 draws
    assert abs(float(weight.mean())) < 0.05 / k


def test_the_quantized_latent_keeps_the_encoders_dtype():
    vq = VectorQuantizer(num_codes=4, code_dim=2)
    assert vq(torch.randn(1, 2, 2, 2, dtype=torch.float64)).z_q.dtype == torch.float64


def test_only_an_ema_codebook_is_learned_without_gradients():
    assert VectorQuantizer(num_codes=4, code_dim=2).parameters_learned_without_gradients() == ()
    ema = VectorQuantizer(num_codes=4, code_dim=2, codebook_ema_decay=0.99)
    assert ema.parameters_learned_without_gradients() == (ema.embedding,) and not ema.embedding.requires_grad
