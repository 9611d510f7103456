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

# What every test starts from and leaves behind (``isolated_global_state``).
_ENVIRON = dict(os.environ)
_TORCH_RNG = torch.random.get_rng_state()
_TORCH_SETTINGS = (torch.get_num_threads(), torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled(),
                   torch.is_deterministic_algorithms_warn_only_enabled())


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, which it keeps within each group
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow first: pytest-xdist hands them out round robin at the start, instead of one
    worker drawing a 30-second test near the end while the others sit idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _set_by_the_runner(key: str) -> bool:
    """Variables the test runner sets while tests run: pytest's own, and the mutant a mutmut run activates
    (``MUTANT_UNDER_TEST``, set after this file is imported; removing it would test the unmutated code)."""
    return key.startswith(("PYTEST_", "MUTANT_"))


def _reset_global_state(seed_python: bool) -> None:
    for key in set(os.environ) - set(_ENVIRON):
        if not _set_by_the_runner(key):
            del os.environ[key]
    for key, value in _ENVIRON.items():
        if os.environ.get(key) != value and not _set_by_the_runner(key):
            os.environ[key] = value
    threads, dtype, deterministic, warn_only = _TORCH_SETTINGS
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.random.set_rng_state(_TORCH_RNG)
    if seed_python:
        import random

        import numpy as np

        random.seed(0)
        np.random.seed(0)


@pytest.fixture(autouse=True)
def isolated_global_state(request):
    """Every test starts with the process's environment, torch settings and global generators as a fresh worker
    has them, and leaves them so for the next test (or module fixture), whatever ran before it.

    Fits and Trainers in this process change them without a trace in the test: Lightning's seed_everything
    exports PL_GLOBAL_SEED (later DistributedSamplers take their seed from it) and reseeds every generator;
    ``deterministic=True`` switches on torch's deterministic algorithms for the whole process. torch's
    generator is reset to its state at start-up (torch's default seed). Python's and NumPy's are reseeded by
    pytest-randomly for each test; without that plugin, here.
    """
    seed_python = not request.config.pluginmanager.hasplugin("randomly")
    _reset_global_state(seed_python)
    yield
    _reset_global_state(seed_python)


def cli_env(env: dict | None = None) -> dict:
    """The environment of a command a test runs: this one, lit_gen importable, ``env`` on top."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", **(env or {})}


def run_cli(module: str, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args...`` as a user would, returning the finished process."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or REPO, env=cli_env(env),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def launcher():
    """Fresh ``python -m`` processes without their torch and Lightning imports (``tests/processes.py``)."""
    from tests.processes import Launcher

    started = Launcher()
    yield started
    started.close()


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
