"""Shared test set-up: offline W&B, quiet logs, small thread counts, helpers to run the CLIs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
# Tiny test models run fastest on one thread, and several test processes may share the cores.
torch.set_num_threads(1)


def run_cli(module: str, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args...`` as a user would, returning the finished process."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(autouse=True)
def every_unet_sees_its_conditioning(request, monkeypatch):
    """Every U-Net a test builds is checked, when the test ends, for residual blocks blind to t and the label.

    A network that ignores t still returns the right shapes, so a test of formats passes on it; this
    makes every test that builds a diffusion model check it (``tests/conditioning.py``). A test that
    builds a blind network on purpose (a checkpoint from before scale-shift) is marked ``blind_conditioning``.
    """
    import functools

    from lit_gen.nn.unet import UNet
    from tests.conditioning import blind_blocks

    built = []
    original = UNet.__init__

    @functools.wraps(original)
    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(UNet, "__init__", recording)
    yield
    if request.node.get_closest_marker("blind_conditioning") is None:
        for net in built:
            assert not blind_blocks(net), f"{request.node.nodeid} built a U-Net with blind blocks: {blind_blocks(net)}"


@pytest.fixture
def digits_batch():
    """A batch of 32 real 8x8 digits in [-1, 1] with their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images[:32], dtype=torch.float32).unsqueeze(1) / 16.0 * 2 - 1
    labels = torch.tensor(digits.target[:32], dtype=torch.int64)
    return images, labels
