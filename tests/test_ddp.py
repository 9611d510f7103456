"""DDP without SLURM: 2 CPU processes (gloo) train like 1 process at the same global batch."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_gen.config import load_config
from lit_gen.data.digits import DigitsDataModule
from lit_gen.fit import build
from tests.conftest import cli_env

# Lightning's hint about srun concerns SLURM machines (like this one) only.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The `srun` command is available")]

BATCH = 32  # per process; 1,374 training digits give 21 steps an epoch at a global batch of 64


class OneReplicaOrder(DigitsDataModule):
    """Digits whose single-process shuffle is the one a DistributedSampler gives 2 ranks together.

    Rank r of 2 takes positions r, r+2, ... of the permutation DistributedSampler draws from its
    seed and the epoch, so step k of the 2 ranks covers exactly the k-th batch of 2 x BATCH that
    one replica draws from the same seed.
    """

    def train_dataloader(self):
        dataset = self.dataset("train")
        sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
        return StatefulDataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True)


class LossCurve(L.Callback):
    """The training loss of every step, averaged over the ranks (the loss of the global batch)."""

    def __init__(self, path) -> None:
        self.path = path
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean")))

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(self.losses))


def train(devices: int, batch_size: int, tmp_path):
    """Train the digits autoencoder for 2 epochs; returns (model, step losses, val loss)."""
    L.seed_everything(0, verbose=False)
    cfg = load_config("configs/ae_digits.yaml", [f"data.batch_size={batch_size}"])
    _, model = build(cfg)
    datamodule = (DigitsDataModule if devices > 1 else OneReplicaOrder)(**cfg.data_kwargs())
    curve = tmp_path / f"losses_{devices}.json"
    # Forked ranks inherit the imported modules (spawned ones import torch and Lightning again, seconds each).
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_fork" if devices > 1 else "auto",
                        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, deterministic=True, callbacks=[LossCurve(curve)])
    trainer.fit(model, datamodule=datamodule)  # ddp_fork copies rank 0's weights and metrics back here
    return model, json.loads(curve.read_text()), float(trainer.callback_metrics["val/loss"])


def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path):
    one, one_curve, one_val = train(1, 2 * BATCH, tmp_path)
    two, two_curve, two_val = train(2, BATCH, tmp_path)

    assert len(one_curve) == len(two_curve) == 42  # the same number of optimizer steps: 2 x 21
    # DDP averages the ranks' gradients: the same global batch gives the same update.
    assert torch.allclose(torch.tensor(one_curve), torch.tensor(two_curve), rtol=1e-4, atol=1e-6)
    # (Parameters only: buffers such as the autoencoder's running code statistics come from rank 0's share.)
    for (name, a), b in zip(one.named_parameters(), two.parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), name
    # Validation is synced over the ranks (the 153 images split 77 + 77, one repeated to even them).
    assert two_val == pytest.approx(one_val, rel=1e-2)


def test_fit_cli_with_two_processes_writes_one_run(tmp_path, launcher):
    # Rank 0 forked with torch and Lightning imported; Lightning starts rank 1 as a new interpreter.
    proc = launcher.run("lit_gen.fit", "--config", "configs/vae_digits.yaml", "--run-id", "ddp", "trainer.devices=2",
                        "trainer.strategy=ddp", "trainer.accelerator=cpu", "trainer.max_epochs=2", "logger.wandb=false",
                        "run.num_samples=4", f"run.output_dir={tmp_path}", env=cli_env({"OMP_NUM_THREADS": "1"}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr
    # The worker Lightning starts found its parent's run folder: one folder, one summary.
    assert [p.name for p in (tmp_path / "vae_digits").iterdir()] == ["ddp"]
    rows = [json.loads(line) for line in (tmp_path / "vae_digits" / "ddp" / "metrics.jsonl").read_text().splitlines()]
    # data.batch_size is per process: 64 x 2 processes = 128 images a step, 10 steps an epoch.
    assert [(r["epoch"], r["step"]) for r in rows] == [(0, 10), (1, 20)]


class EMADigest(L.Callback):
    """Each rank writes a digest of its power EMA's snapshot when training ends."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        import hashlib

        digest = hashlib.sha256()
        for profile in pl_module.ema.snapshot()["profiles"]:
            for key, value in sorted(profile["state_dict"].items()):
                digest.update(key.encode() + value.numpy().tobytes())
        (self.folder / f"digest_{trainer.global_rank}.txt").write_text(digest.hexdigest())


def test_every_rank_keeps_the_same_power_ema_and_rank_0_writes_its_snapshots(tmp_path):
    from lit_gen.callbacks.ema_snapshots import EMASnapshots, read_snapshots

    L.seed_everything(0, verbose=False)
    cfg = load_config("configs/quickstart.yaml", ["model.base_channels=8", "model.attention_resolutions=[]",
                                                  "model.ema={name: power, sigma_rels: [0.05, 0.1], snapshot_every: 3}",
                                                  f"data.batch_size={BATCH}"])
    datamodule, model = build(cfg)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_fork", max_steps=9, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[EMASnapshots(tmp_path / "ema"), EMADigest(tmp_path)])
    trainer.fit(model, datamodule=datamodule)
    assert (tmp_path / "digest_0.txt").read_text() == (tmp_path / "digest_1.txt").read_text()
    assert [s["step"] for s in read_snapshots(tmp_path / "ema")] == [3, 6, 9]
