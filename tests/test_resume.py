"""Exact resume: a run killed with SIGKILL at an arbitrary step and resumed ends bitwise equal to an uninterrupted run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.processes import Launcher

STEPS = 30  # crosses the first epoch boundary of digits (21 steps of 64)
# The kill lands at or a few steps after these (fast steps run on while the test reacts), early
# enough that the run cannot finish first; the AE's lands around the epoch-end checkpoint (step 21).
KILL_AT = {"ae": 20, "vae": 9, "vqgan": 14, "ddpm": 17, "vqvae_lfq": 12}

FAMILIES = {
    "ae": ["--config", "configs/ae_digits.yaml"],
    "vae": ["--config", "configs/vae_digits.yaml"],
    # Two optimizers (manual optimization); the discriminator starts early so both phases are resumed.
    "vqgan": ["--config", "configs/vqgan_digits.yaml", "model.disc_start=10", "model.hidden_channels=16"],
    # Lookup-free quantization: its entropy term and usage counters (the learned codebook's EMA and restarts
    # are resumed by the vqgan run).
    "vqvae_lfq": ["--config", "configs/vqvae_digits.yaml", "model.quantizer={name: lfq, num_codes: 16}",
                  "model.quantizer.dead_code_steps=3"],
    # Power EMAs (their snapshots too) and a warm-up + cosine learning-rate schedule are part of the resumed state.
    "ddpm": ["--config", "configs/ddpm_digits.yaml", "model.base_channels=16", "model.num_res_blocks=1",
             "run.sample_options={steps: 2}", "model.ema={name: power, sigma_rels: [0.05, 0.1], snapshot_every: 4}"],
}


def fit_args(family: str, out: Path, run_id: str) -> list[str]:
    """The arguments of ``python -m lit_gen.fit`` (no report: it is drawn after the state this test compares)."""
    return [
        *FAMILIES[family], "--run-id", run_id, "--resume", "auto",
        f"trainer.max_steps={STEPS}", "trainer.max_epochs=100", "trainer.deterministic=true",
        "trainer.accelerator=cpu", "run.checkpoint_every_n_steps=1", "run.num_samples=4",
        "logger.wandb=false", "eval.report=false", f"run.output_dir={out}",
    ]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def launchers():
    """Where the uninterrupted run, the killed run and its resumption start: three separate interpreters (three
    hash seeds, as three commands would have), each forking a fresh process per family instead of importing again."""
    started = [Launcher() for _ in range(3)]
    yield started
    for launcher in started:
        launcher.close()


def checkpoint_step(path: Path) -> int:
    try:  # mmap: the step without reading the tensors, polled while the run trains
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
    except Exception:
        return -1


def final_state(run: Path) -> dict:
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == STEPS
    return state


def assert_same_tensors(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_kill_and_resume_matches_uninterrupted_run(family, tmp_path, launchers):
    uninterrupted, interrupted, resumption = launchers
    full = uninterrupted.run("lit_gen.fit", *fit_args(family, tmp_path, "full"), env=env())
    assert full.returncode == 0, full.stderr[-3000:]

    kill_at = KILL_AT[family]
    name = FAMILIES[family][1].split("/")[-1].removesuffix(".yaml")
    last = tmp_path / name / "cut" / "checkpoints" / "last.ckpt"
    proc = interrupted.start("lit_gen.fit", *fit_args(family, tmp_path, "cut"), env=env())
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and checkpoint_step(last) >= kill_at:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.kill()  # SIGKILL
    proc.wait()
    killed_at = checkpoint_step(last)
    assert 0 < killed_at < STEPS, f"killed at step {killed_at}"

    resumed = resumption.run("lit_gen.fit", *fit_args(family, tmp_path, "cut"), env=env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr

    a = final_state(tmp_path / name / "full")
    b = final_state(tmp_path / name / "cut")
    assert_same_tensors(a["state_dict"], b["state_dict"], "state_dict")
    assert_same_tensors(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    assert a.get("lr_schedulers") == b.get("lr_schedulers")
    snapshots = sorted(p.name for p in (tmp_path / name / "full" / "ema").glob("snapshot_*.pt"))
    assert (family == "ddpm") == bool(snapshots)
    assert snapshots == sorted(p.name for p in (tmp_path / name / "cut" / "ema").glob("snapshot_*.pt"))
    for snapshot in snapshots:  # the killed run rewrote the ones after its last checkpoint: the same bits
        assert_same_tensors(torch.load(tmp_path / name / "full" / "ema" / snapshot, weights_only=True)["profiles"][1],
                            torch.load(tmp_path / name / "cut" / "ema" / snapshot, weights_only=True)["profiles"][1],
                            snapshot)
