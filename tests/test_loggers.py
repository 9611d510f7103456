"""lit_gen.loggers: W&B mode selection and one W&B run per lit_gen run, across resumes."""

from __future__ import annotations

import re

import pytest

from lit_gen.config import LoggerSettings
from lit_gen.loggers import wandb_mode
from tests.conftest import cli_env


def test_mode_follows_settings_environment_and_login(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert wandb_mode(LoggerSettings(mode="offline"), {}) == "offline"
    assert wandb_mode(LoggerSettings(mode="auto"), {}) == "offline"
    assert wandb_mode(LoggerSettings(mode="auto"), {"WANDB_API_KEY": "k"}) == "online"
    assert wandb_mode(LoggerSettings(mode="online"), {"WANDB_MODE": "offline"}) is None  # the environment decides
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_mode(LoggerSettings(mode="auto"), {}) == "online"


@pytest.mark.slow
def test_resumed_run_continues_the_same_wandb_run(tmp_path, launcher):
    # Two processes, forked without the torch and Lightning imports: W&B starts in each as it would in a new one.
    common = ["--config", "configs/vae_digits.yaml", "--run-id", "w", "--resume", "auto", "trainer.accelerator=cpu",
              "run.num_samples=4", f"run.output_dir={tmp_path}", "logger.wandb=true", "logger.group=g1"]
    first = launcher.run("lit_gen.fit", *common, "trainer.max_epochs=1", env=cli_env({"WANDB_MODE": "offline"}))
    assert first.returncode == 0, first.stderr[-3000:]
    second = launcher.run("lit_gen.fit", *common, "trainer.max_epochs=2", env=cli_env({"WANDB_MODE": "offline"}))
    assert second.returncode == 0, second.stderr[-3000:]
    run = tmp_path / "vae_digits" / "w"
    stored = (run / "wandb_id.txt").read_text().strip()
    folders = sorted((run / "wandb").glob("offline-run-*"))
    assert len(folders) == 2, "each process writes one offline run folder"
    ids = {re.sub(r"^offline-run-\d+_\d+-", "", f.name) for f in folders}
    assert ids == {stored}, "both processes logged into the same W&B run"
    assert all(list(f.glob("*.wandb")) for f in folders)
