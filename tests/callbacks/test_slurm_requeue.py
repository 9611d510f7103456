"""SlurmRequeue: SIGUSR1 stops training at the next step boundary with the state saved there."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.callbacks.slurm_requeue import RequeueExit, SlurmRequeue, cluster_plugins, slurm_job_id

pytestmark = pytest.mark.filterwarnings("ignore:The `srun` command is available")

STEP_ENV = {"SLURM_JOB_ID": "41", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NAME": "lit_gen-fit"}


def test_only_srun_tasks_of_batch_jobs_get_the_callback(tmp_path):
    assert SlurmRequeue.from_environment(STEP_ENV, tmp_path / "last.ckpt").job_id == "41"
    array = {**STEP_ENV, "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3"}
    assert slurm_job_id(array) == "40_3"  # scontrol requeue takes the array task's name
    batch_step = {k: v for k, v in STEP_ENV.items() if k != "SLURM_STEP_ID"}  # e.g. a sweep trial
    assert SlurmRequeue.from_environment(batch_step, tmp_path / "last.ckpt") is None
    assert SlurmRequeue.from_environment({**STEP_ENV, "SLURM_JOB_NAME": "interactive"}, tmp_path / "x") is None
    assert SlurmRequeue.from_environment({}, tmp_path / "last.ckpt") is None


def test_lightning_slurm_handler_is_replaced_only_on_slurm():
    (plugin,) = cluster_plugins(STEP_ENV)
    assert plugin.auto_requeue is False  # Lightning must not save from inside its signal handler
    assert cluster_plugins({"SLURM_JOB_ID": "41"}) == []  # no tasks: Lightning would not detect SLURM


class Regression(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.global_step == 3 and batch_idx == 3:
            os.kill(os.getpid(), signal.SIGUSR1)  # lands mid-step, as SLURM's warning does
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_signal_saves_the_step_it_lands_in_and_exits(tmp_path, caplog):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g))
    path = tmp_path / "last.ckpt"
    # A job id scontrol does not know (or no scontrol at all): the state is saved, the exit code says 1.
    callback = SlurmRequeue(path, job_id="999999999")
    trainer = L.Trainer(accelerator="cpu", max_steps=20, logger=False, default_root_dir=tmp_path,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    model = Regression()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(RequeueExit) as stopped:
            trainer.fit(model, DataLoader(data, batch_size=8))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 1 and "scontrol requeue 999999999 failed" in caplog.text
    state = torch.load(path, weights_only=True)
    assert state["global_step"] == 4  # the step the signal arrived in was completed, then saved
    assert torch.equal(state["state_dict"]["layer.weight"], model.layer.weight)
    # While the process exits, a second warning must not kill it (SIGUSR1's default action).
    assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)


def test_sigterm_saves_the_step_and_stops_without_requeue(tmp_path, caplog):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    caplog.set_level("INFO", logger="lit_gen")
    class Preempted(Regression):
        def training_step(self, batch, batch_idx):
            if self.global_step == 2 and batch_idx == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # scancel or a preemption; Lightning's handler notes it
            return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g))
    path = tmp_path / "last.ckpt"
    trainer = L.Trainer(accelerator="cpu", max_steps=20, logger=False, default_root_dir=tmp_path,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[SlurmRequeue(path, job_id="999999999")])
    with pytest.raises(SIGTERMException):
        trainer.fit(Preempted(), DataLoader(data, batch_size=8))
    assert torch.load(path, weights_only=True)["global_step"] == 3
    assert "saved step 3" in caplog.text and "scontrol" not in caplog.text
