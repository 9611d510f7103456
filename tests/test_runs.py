"""lit_gen.runs: atomic checkpoint writes, fallback to the previous checkpoint, run folder rules."""

from __future__ import annotations

import pytest
import torch

from lit_gen.errors import ConfigError
from lit_gen.runs import AtomicCheckpointIO, RunDir, find_resumable, open_run


def test_atomic_save_keeps_the_previous_last_checkpoint(tmp_path):
    io = AtomicCheckpointIO()
    last = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(1)}}, last)
    io.save_checkpoint({"state_dict": {"w": torch.full((1,), 2.0)}}, last)
    assert torch.load(last, weights_only=True)["state_dict"]["w"].item() == 2.0
    assert torch.load(last.with_name("last.prev.ckpt"), weights_only=True)["state_dict"]["w"].item() == 1.0
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")], "no temporary files left"


def test_damaged_last_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
    run = RunDir(tmp_path / "run")
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(1)}}, run.last_checkpoint)
    io.save_checkpoint({"state_dict": {"w": torch.ones(1)}}, run.last_checkpoint)
    data = run.last_checkpoint.read_bytes()
    run.last_checkpoint.write_bytes(data[:100])  # a write cut short by a crash or a full disk
    assert find_resumable(run) == run.checkpoints / "last.prev.ckpt"
    assert "damaged" in caplog.text


def test_open_run_rules(tmp_path):
    fresh, resume = open_run(tmp_path, "exp", None, "never")
    assert resume is None and fresh.path.parent == tmp_path / "exp"
    other, _ = open_run(tmp_path, "exp", None, "never")
    assert other.path != fresh.path, "new runs get new folders"
    (tmp_path / "exp" / "mine").mkdir(parents=True)
    with pytest.raises(ConfigError, match="already exists"):
        open_run(tmp_path, "exp", "mine", "never")
    run, resume = open_run(tmp_path, "exp", "mine", "auto")
    assert run.path == tmp_path / "exp" / "mine" and resume is None


def test_last_checkpoint_exists_at_every_moment_of_a_save(tmp_path, monkeypatch):
    import os

    io = AtomicCheckpointIO()
    last = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(1)}}, last)
    seen = []
    real_replace = os.replace

    def watched(src, dst):
        seen.append(last.exists())
        real_replace(src, dst)
        seen.append(last.exists())

    monkeypatch.setattr(os, "replace", watched)
    io.save_checkpoint({"state_dict": {"w": torch.full((1,), 2.0)}}, last)
    assert seen and all(seen)  # a kill between two renames would otherwise leave no last.ckpt
    assert torch.load(last.with_name("last.prev.ckpt"), weights_only=True)["state_dict"]["w"].item() == 1.0
    assert torch.load(last, weights_only=True)["state_dict"]["w"].item() == 2.0
