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


def test_micro_batches_of_one_accumulated_step_draw_different_noise(tmp_path):
    """With gradient accumulation the global step stays put inside a window; the noise must not."""
    import lightning as L
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from lit_gen.callbacks.step_seed import StepSeed

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(1, 1)
            self.draws: list[tuple[int, torch.Tensor]] = []

        def training_step(self, batch, batch_idx):
            self.draws.append((self.global_step, torch.randn(4)))
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    def run(accumulate: int) -> list[tuple[int, torch.Tensor]]:
        model = Recorder()
        trainer = L.Trainer(max_epochs=1, accumulate_grad_batches=accumulate, callbacks=[StepSeed(5)], logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp_path)
        trainer.fit(model, DataLoader(TensorDataset(torch.ones(8, 1)), batch_size=2))
        return model.draws

    accumulated = run(2)
    assert [step for step, _ in accumulated] == [0, 0, 1, 1]
    assert not torch.equal(accumulated[0][1], accumulated[1][1])
    assert not torch.equal(accumulated[2][1], accumulated[3][1])
    # Without accumulation the seeds are those of (seed, step, rank), as before.
    plain = run(1)
    seed_torch(step_seed(5, 0, 0))
    assert torch.equal(plain[0][1], torch.randn(4))
    assert torch.equal(plain[0][1], accumulated[0][1])
