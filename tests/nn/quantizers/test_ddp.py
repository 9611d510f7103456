"""Quantizers under DDP (two gloo processes): every rank keeps the same usage statistics, and LFQ's batch
entropy is the one of the whole global batch, with the gradient that makes DDP's average exact."""

from __future__ import annotations

import torch

from lit_gen.nn.quantizers import FiniteScalarQuantizer, LookupFreeQuantizer

WORLD = 2


def _batch(rank: int, step: int) -> torch.Tensor:
    return torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(100 * rank + step)) * 0.05


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    lfq = LookupFreeQuantizer(num_codes=16, dead_code_steps=2).train()
    fsq = FiniteScalarQuantizer(levels=[3, 3, 2, 2], dead_code_steps=2).train()
    grads, entropies = [], []
    for step in range(3):
        z = _batch(rank, step).requires_grad_(True)
        q = lfq(z)
        fsq(z.detach())
        rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
        per_vector, batch = lfq.entropy_terms(rows)
        batch.backward()
        grads.append(z.grad)
        entropies.append(batch.detach())
        assert set(q.losses) == {"commitment", "entropy"}
    torch.save({"lfq": lfq.state_dict(), "fsq": fsq.state_dict(), "lfq_usage": lfq.usage_counts,
                "fsq_usage": fsq.usage_counts, "grads": grads, "entropies": entropies}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_every_rank_counts_the_same_codes_and_lfq_sees_the_global_batch(tmp_path):
    # fork: the workers start in milliseconds instead of re-importing torch.
    torch.multiprocessing.start_processes(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD,
                                          start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for key in ("lfq", "fsq"):
        for name, value in ranks[0][key].items():
            assert torch.equal(value, ranks[1][key][name]), f"{key}.{name} differs between ranks"
        assert torch.equal(ranks[0][f"{key}_usage"], ranks[1][f"{key}_usage"])

    # One process over both ranks' batches: the same usage and the same batch entropy.
    lfq = LookupFreeQuantizer(num_codes=16, dead_code_steps=2).train()
    for step in range(3):
        z = torch.cat([_batch(r, step) for r in range(WORLD)]).requires_grad_(True)
        lfq(z.detach())
        rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
        _, batch = lfq.entropy_terms(rows)
        batch.backward()
        for r in range(WORLD):
            assert torch.allclose(ranks[r]["entropies"][step], batch.detach(), atol=1e-6)
            # Each rank's gradient is WORLD times its share of the global one: DDP's mean over ranks gives
            # exactly the gradient of the global batch entropy.
            share = z.grad[2 * r:2 * r + 2]
            # (float32 sums in another order: a margin of 1e-6 of the largest component.)
            scale = float(share.abs().max())
            assert torch.allclose(ranks[r]["grads"][step], WORLD * share, rtol=1e-4, atol=1e-6 * WORLD * scale)
    assert torch.equal(lfq.usage_counts, ranks[0]["lfq_usage"]) and torch.equal(lfq.unused_steps, ranks[0]["lfq"]["unused_steps"])
