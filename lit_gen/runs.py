"""Run directories and safe checkpoint files, shared by every command-line module.

A run lives in ``<output_dir>/<name>/<id>/``::

    config.yaml          the resolved config (every default filled in)
    checkpoints/         last.ckpt (+ last.prev.ckpt, the previous good one) and best.ckpt
    samples/             sample grids, epoch_0003.png ... and final.png
    metrics.jsonl        one line of metrics per epoch
    metrics.csv          every logged value (CSV logger)
    wandb_id.txt         the W&B run id, reused when the run resumes
    summary.json         written last: its presence marks a finished run

A new run never reuses an existing folder; ``--resume auto`` continues one that has ``last.ckpt``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_gen.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

LAST = "last.ckpt"
PREVIOUS = "last.prev.ckpt"


def new_run_id() -> str:
    """A sortable, unique id: date, time and a random suffix."""
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


@dataclass
class RunDir:
    """Paths of one run's files."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def wandb_id_file(self) -> Path:
        return self.path / "wandb_id.txt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST

    def read_wandb_id(self) -> str | None:
        if self.wandb_id_file.is_file():
            return self.wandb_id_file.read_text().strip() or None
        return None

    def write_wandb_id(self, run_id: str) -> None:
        atomic_write_text(self.wandb_id_file, run_id + "\n")


def open_run(output_dir: str | Path, name: str, run_id: str | None, resume: str) -> tuple[RunDir, Path | None]:
    """The run folder to use and the checkpoint to resume from (None for a fresh start).

    ``resume`` is "auto" (continue the run ``run_id`` when it has a checkpoint, else start it),
    "never" (always a fresh run; an existing folder of that id is an error) or a checkpoint path.
    The folder is not created here: ``create()`` does that once the config has been validated.
    """
    base = Path(output_dir) / name
    if resume not in ("auto", "never"):
        checkpoint = Path(resume)
        if not checkpoint.is_file():
            raise CheckpointError(f"--resume {resume}: no such checkpoint file")
        if not checkpoint_is_readable(checkpoint):  # before the run folder is written beside it
            raise CheckpointError(f"--resume {resume}: not a readable checkpoint (truncated, corrupt or another format)")
        # Resuming from an explicit file continues in that run's folder.
        folder = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
        return RunDir(folder), checkpoint
    if run_id is None:
        # Nothing to resume without an id: a fresh run. (On SLURM the id is the job id.)
        return RunDir(base / new_run_id()), None
    run = RunDir(base / run_id)
    if run.path.exists():
        if resume == "never":
            raise ConfigError(f"run folder {run.path} already exists; choose another --run-id or pass --resume auto to continue it")
        return run, find_resumable(run)
    return run, None


def find_resumable(run: RunDir) -> Path | None:
    """The newest checkpoint of a run that loads, falling back to the previous one when last.ckpt is damaged."""
    for candidate in (run.checkpoints / LAST, run.checkpoints / PREVIOUS):
        if not candidate.is_file():
            continue
        if checkpoint_is_readable(candidate):
            if candidate.name == PREVIOUS:
                log.warning("%s is damaged; resuming from the previous checkpoint %s", run.checkpoints / LAST, candidate)
            return candidate
        log.warning("checkpoint %s cannot be read (truncated or corrupt); trying an older one", candidate)
    return None


def checkpoint_is_readable(path: Path) -> bool:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(state, dict) and "state_dict" in state


# What Lightning's restore reads besides the weights: the loop position and the optimizer states.
RESUME_KEYS = ("pytorch-lightning_version", "global_step", "loops", "optimizer_states")


def check_resume_fits(path: Path, model: torch.nn.Module) -> None:
    """CheckpointError unless the weights in ``path`` have exactly the names and shapes of ``model``'s.

    Lightning would otherwise fail deep inside its restore with a traceback, after the run folder
    was written (resuming with another config than the one that wrote the checkpoint, say).
    """
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    saved = state.get("state_dict") if isinstance(state, dict) else None
    if not isinstance(saved, dict):
        raise CheckpointError(f"--resume {path}: not a Lightning checkpoint (no state_dict mapping)")
    training_state = [k for k in RESUME_KEYS if k not in state]
    if training_state:
        raise CheckpointError(
            f"--resume {path}: it holds weights but no training state ({', '.join(training_state)} missing), so there is "
            "nothing to resume; start a new run (lit_gen.checkpoints.load_model reads the weights alone)"
        )
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    reshaped = [k for k, v in own.items() if k in saved and getattr(saved[k], "shape", None) != v.shape]
    if missing or unexpected or reshaped:
        info = state.get("lit_gen")
        family = info.get("model") if isinstance(info, dict) else None
        held = f"a {family!r} model" if family else "weights of another model"
        example = (missing + unexpected + reshaped)[0]
        raise CheckpointError(
            f"--resume {path}: it holds {held} that does not fit the {type(model).__name__} this config builds "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} reshaped weights, e.g. {example}); "
            "resume with the config (and overrides) that wrote it"
        )


def create(run: RunDir, config_yaml: str) -> None:
    """Create the run folder (never reusing a finished run) and write the resolved config."""
    run.path.mkdir(parents=True, exist_ok=True)
    run.checkpoints.mkdir(exist_ok=True)
    run.samples.mkdir(exist_ok=True)
    atomic_write_text(run.config, config_yaml)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so readers see either the old or the new content, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint writes that cannot leave a half-written file behind.

    The new file is written to a temporary name, flushed to disk and renamed over the old one; the
    old ``last.ckpt`` is kept as ``last.prev.ckpt``, so a job killed mid-write resumes from a good
    checkpoint, and ``last.ckpt`` exists at every moment of a save.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        fs = get_filesystem(str(path))
        fs.makedirs(str(path.parent), exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if path.name == LAST and path.exists():
            _keep_as_previous(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def _keep_as_previous(last: Path) -> None:
    """Make ``last.prev.ckpt`` a copy of ``last.ckpt`` while ``last.ckpt`` stays in place.

    A hard link (a copy where links are not supported) under a temporary name, renamed over the
    previous one: at every moment both files exist, so a job killed mid-save never lacks last.ckpt.
    """
    staged = last.with_name(f".{PREVIOUS}.tmp-{os.getpid()}")
    staged.unlink(missing_ok=True)
    try:
        os.link(last, staged)
    except OSError:
        shutil.copyfile(last, staged)
    os.replace(staged, last.with_name(PREVIOUS))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
