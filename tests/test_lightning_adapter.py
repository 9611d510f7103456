"""lit_gen.lightning_adapter against a real Trainer: fails when Lightning moves a private attribute."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy
from torch.utils.data import DataLoader, TensorDataset

from lit_gen import lightning_adapter as adapter


class Probe(L.LightningModule):
    """A linear model that records what the adapter answers at every training step."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 1)
        self.seen: list[tuple[int, bool, bool]] = []
        self.outside = adapter.attached_trainer(self)

    def training_step(self, batch, batch_idx):
        assert adapter.attached_trainer(self) is self.trainer
        return self.net(batch[0]).pow(2).mean()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.seen.append((batch_idx, adapter.should_update_logs(self.trainer), adapter.is_accumulating(self.trainer)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_each_function_answers_from_a_real_trainer(tmp_path):
    model = Probe()
    assert model.outside is None  # not attached yet: None, where module.trainer would raise
    data = DataLoader(TensorDataset(torch.randn(24, 2)), batch_size=4)
    logger = CSVLogger(tmp_path)
    assert adapter.started_experiment(logger) is None  # nothing started before training
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=logger, log_every_n_steps=2, accumulate_grad_batches=2,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, data)
    # 6 batches, 2 per optimizer step: batches 0, 2, 4 only accumulate.
    assert [accumulating for _, _, accumulating in model.seen] == [True, False] * 3
    # Logged every 2 optimizer steps: the second step (batches 2-3) is a logging step, the others not.
    assert [logs for _, logs, _ in model.seen] == [False, False, True, True, False, False]
    assert adapter.started_experiment(logger) is logger.experiment
    assert adapter.gradients_are_local(trainer.strategy)


def test_gradients_are_local_only_where_each_process_holds_whole_gradients():
    assert adapter.gradients_are_local(SingleDeviceStrategy(torch.device("cpu")))
    assert adapter.gradients_are_local(DDPStrategy())
    assert not adapter.gradients_are_local(DeepSpeedStrategy.__new__(DeepSpeedStrategy))  # a DDPStrategy subclass


def test_wandb_logger_keeps_its_unstarted_run_where_the_adapter_reads_it(tmp_path):
    pytest.importorskip("wandb")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    assert "_experiment" in vars(logger) and adapter.started_experiment(logger) is None
    assert adapter.is_wandb_logger(logger) and not adapter.is_wandb_logger(CSVLogger(tmp_path))
