"""Every use of Lightning's private API, in one place.

Lightning offers no public way to ask a few things lit_gen needs (whether this step's values reach
the loggers, whether the loop is mid-accumulation, whether a logger has started its run). The
answers live in ``_``-prefixed attributes that may change in any Lightning release, so they are read
here and nowhere else, and ``tests/test_lightning_adapter.py`` runs each function against a real
``Trainer``: an upgrade that moves one of them fails that test instead of a training run.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy, Strategy


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The Trainer ``module`` is attached to, or None (``module.trainer`` raises instead)."""
    return module._trainer


def should_update_logs(trainer: L.Trainer) -> bool:
    """Whether Lightning writes this training step's values to the loggers (every ``log_every_n_steps``)."""
    return bool(trainer._logger_connector.should_update_logs)


def is_accumulating(trainer: L.Trainer) -> bool:
    """Whether the batch that just ended only accumulated gradients (no optimizer step at its end)."""
    return bool(trainer.fit_loop.epoch_loop._should_accumulate())


def gradients_are_local(strategy: Strategy) -> bool:
    """Whether each process holds the whole gradient of every parameter, so a local norm is the global one.

    True for one device and plain DDP (gradients are all-reduced before the optimizer step); not for
    strategies that shard gradients or optimizer states, including DDP's subclasses (DeepSpeed), hence
    the exact type rather than ``isinstance``.
    """
    return type(strategy) in (SingleDeviceStrategy, DDPStrategy)


def started_experiment(logger):
    """The run a logger has already started (its ``experiment``), or None; never starts one.

    Reading ``logger.experiment`` would start a W&B run just to finish it again. Lightning's loggers
    keep it in ``_experiment``; a logger without that attribute has nothing started to report.
    """
    return getattr(logger, "_experiment", None)


def is_wandb_logger(logger) -> bool:
    """Whether ``logger`` is Lightning's W&B logger (or a subclass)."""
    return isinstance(logger, WandbLogger)
