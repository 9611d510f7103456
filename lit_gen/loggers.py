"""The loggers of a run: a CSV file always, W&B when the ``logger:`` section asks for it."""

from __future__ import annotations

import logging
import netrc
import secrets
import string
from pathlib import Path

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from lit_gen.config import LoggerSettings, RunConfig
from lit_gen.runs import RunDir

log = logging.getLogger(__name__)


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, minus deleting an existing ``metrics.csv``: a resumed run appends to it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                self.metrics_keys = sorted(next(csv.reader(handle), []))


class RunCSVLogger(CSVLogger):
    """A CSV log in the run folder that survives resumes (every start appends its rows)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


def wandb_mode(settings: LoggerSettings, environ: dict[str, str]) -> str | None:
    """The mode to pass to ``wandb.init``; None lets ``WANDB_MODE`` from the environment decide."""
    if environ.get("WANDB_MODE"):
        return None
    if settings.mode != "auto":
        return settings.mode
    return "online" if _has_api_key(environ) else "offline"


def _has_api_key(environ: dict[str, str]) -> bool:
    if environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def build_loggers(cfg: RunConfig, run: RunDir, run_id: str, environ: dict[str, str]) -> tuple[list[Logger], str | None]:
    """CSV logger into the run folder, plus W&B (resuming the stored W&B run id when there is one).

    Returns the loggers and the W&B run id to store in the run folder (None without W&B). Nothing
    is written here: W&B starts on first use, after the run folder exists.
    """
    loggers: list[Logger] = [RunCSVLogger(save_dir=str(run.path), name="", version="")]
    settings = cfg.logger
    if not settings.wandb or settings.mode == "disabled":
        return loggers, None
    from lightning.pytorch.loggers import WandbLogger

    # An agent started by `wandb agent` hands its run id in WANDB_RUN_ID; otherwise reuse ours.
    wandb_id = environ.get("WANDB_RUN_ID") or run.read_wandb_id() or _fresh_wandb_id()
    kwargs = dict(
        project=settings.project,
        entity=settings.entity,
        group=settings.group,
        tags=list(settings.tags) or None,
        name=settings.run_name or f"{cfg.name}-{run_id}",
        id=wandb_id,
        resume="allow",
        save_dir=str(run.path),
        config=cfg.to_dict(),
    )
    mode = wandb_mode(settings, environ)
    if mode is not None:
        kwargs["mode"] = mode
    loggers.append(WandbLogger(**kwargs))
    return loggers, wandb_id


def _fresh_wandb_id() -> str:
    # W&B's own form (8 characters of [a-z0-9]); its generator moved between releases
    # (wandb.util.generate_id is gone in 0.31), so it is made here.
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def wandb_run_files(run: RunDir) -> list[Path]:
    """The W&B run folders written into a run directory (offline runs are synced from these)."""
    root = run.path / "wandb"
    return sorted(p for p in root.glob("*run-*") if p.is_dir()) if root.is_dir() else []
