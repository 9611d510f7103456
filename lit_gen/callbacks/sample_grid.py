"""Write a grid of samples every N epochs and at the end of training (logger-agnostic)."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch

from lit_gen.images import save_grid
from lit_gen.lightning_adapter import is_wandb_logger
from lit_gen.models.contracts import CallbackContract

log = logging.getLogger(__name__)


class SampleGrid(L.Callback):
    """Sample ``num_samples`` images with a fixed generator and save them as a PNG grid.

    The samples come from their own seeded generator, so writing grids never changes the training
    trajectory. Conditional models get ``num_samples // num_classes`` rows per class. Grids go to
    ``folder/epoch_XXXX.png`` and ``folder/final.png``, and to W&B when a W&B logger is attached.
    """

    def __init__(self, folder: str | Path, every_n_epochs: int = 1, num_samples: int = 64, seed: int = 0,
                 sample_options: dict | None = None, scale: int = 0) -> None:
        self.folder = Path(folder)
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.seed = seed
        self.sample_options = dict(sample_options or {})
        self.scale = scale
        self.last_path: Path | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: CallbackContract) -> None:
        epoch = trainer.current_epoch
        if self.every_n_epochs > 0 and (epoch + 1) % self.every_n_epochs == 0:
            self.write(trainer, pl_module, f"epoch_{epoch:04d}.png")

    def on_fit_end(self, trainer: L.Trainer, pl_module: CallbackContract) -> None:
        self.write(trainer, pl_module, "final.png")

    def write(self, trainer: L.Trainer, pl_module: CallbackContract, filename: str) -> Path | None:
        if not trainer.is_global_zero or self.num_samples <= 0:
            return None
        images, nrow = self.draw(pl_module)
        path = save_grid(images, self.folder / filename, nrow=nrow, scale=self.scale)
        self.last_path = path
        for logger in trainer.loggers:
            if is_wandb_logger(logger):
                logger.log_image(key="samples", images=[str(path)], step=trainer.global_step)
        log.info("wrote samples to %s", path)
        return path

    @torch.no_grad()
    def draw(self, pl_module: CallbackContract):
        generator = torch.Generator().manual_seed(self.seed)
        labels, nrow = None, None
        classes = pl_module.num_classes
        if pl_module.conditional and classes:
            per_class = max(1, self.num_samples // classes)
            labels = torch.arange(classes, device=pl_module.device).repeat_interleave(per_class)
            nrow = per_class
        was_training = pl_module.training
        pl_module.eval()
        try:
            n = labels.shape[0] if labels is not None else self.num_samples
            images = pl_module.sample(n, labels=labels, generator=generator, **self.sample_options)
        finally:
            pl_module.train(was_training)
        return images, nrow
