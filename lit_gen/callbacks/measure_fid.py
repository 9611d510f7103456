"""FID during training: every N epochs, sample, stream features, log the distance with its protocol.

Under DDP each rank draws its share of the samples with its own generator, seeded from the run
seed and the rank (rank 0 uses the seed itself, so a one-process value is exactly what
``python -m lit_gen.evaluate --seed S --batch-size B --num-samples N`` gives for that epoch's
weights). torchmetrics sums the ranks' feature statistics and every rank gets the same value,
logged once per evaluation. The real split's statistics are computed on rank 0 first (or read from
the on-disk cache) and then read from the cache by the other ranks.

Sampling uses only the callback's own generators, inside a forked global RNG, so a run trains
exactly the same weights with or without this callback.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch

from lit_gen.config import EvalSettings
from lit_gen.errors import EvaluationError
from lit_gen.lightning_adapter import is_wandb_logger
from lit_gen.metrics.protocol import FIDRecord, metric_label

log = logging.getLogger(__name__)


class FIDCallback(L.Callback):
    """Log FID every ``every_n_epochs`` epochs (at the end of the training epoch).

    The value is logged as ``val/fid`` for Inception features and ``val/fid_<dataset>_classifier``
    for a domain classifier (the two are never mixed under one key). Each measurement's protocol
    record is appended to ``record_path`` (``fid.jsonl`` in the run folder) by rank 0.

    Args:
        settings (``lit_gen.config.EvalSettings``): the config's ``eval:`` section, whole (the
            checked values and their names: ``fid_every_n_epochs``, ``num_samples``, ``batch_size``,
            ``feature``, ``fid_weights_path``, ``antialias``, ``real_split``, ``real_count``,
            ``sample_options``, ``cache_dir``).
        seed (int, default 0): seed of the sampling generators (combined with the rank).
        record_path (str | None): JSON-lines file for the protocol records.
    """

    def __init__(self, settings: EvalSettings, seed: int = 0, record_path: str | Path | None = None) -> None:
        self.settings = settings
        self.seed = seed
        self.record_path = Path(record_path) if record_path else None
        self._extractor = None
        self._reference = None
        self.last_record: FIDRecord | None = None

    @property
    def every_n_epochs(self) -> int:
        return self.settings.fid_every_n_epochs

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.every_n_epochs <= 0 or stage != "fit":
            return
        from lit_gen.metrics.features import build_extractor
        from lit_gen.metrics.sampling import check_sample_options

        # Fail at the start of training, not after the first epoch: missing weights, wrong options.
        check_sample_options(pl_module, self.settings.sample_options)
        with torch.random.fork_rng(devices=[]):  # building networks draws initial weights
            self._extractor = build_extractor(self.settings.feature, fid_weights_path=self.settings.fid_weights_path,
                                              antialias=self.settings.antialias)

    @property
    def metric_key(self) -> str:
        suffix = self._extractor.suffix if self._extractor is not None else ""
        return "val/fid" + suffix.replace("-", "_")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs <= 0 or (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        record = self.measure(trainer, pl_module)
        # Every rank holds the same synced value: averaging it over ranks changes nothing, and tells
        # Lightning this epoch-level value is consistent across ranks.
        pl_module.log(self.metric_key, record.value, on_step=False, on_epoch=True, sync_dist=True)
        if trainer.is_global_zero:
            log.info("%s", record.summary_line())
            if self.record_path is not None:
                self.record_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.record_path, "a") as handle:
                    handle.write(json.dumps(record.to_dict()) + "\n")
            for logger in trainer.loggers:
                if is_wandb_logger(logger):
                    # The protocol travels with the number: latest record in the run summary.
                    logger.experiment.summary[f"{self.metric_key}_protocol"] = record.to_dict()

    # ------------------------------------------------------------------ measurement
    def _reference_stats(self, trainer: L.Trainer, device: torch.device):
        from lit_gen.metrics.reference import data_name_of, reference_statistics

        datamodule = trainer.datamodule
        if datamodule is None:
            raise EvaluationError("FIDCallback needs trainer.fit(model, datamodule=...) to find the real images")

        def compute():
            # The features too, so lit_gen.evaluate (whose yardstick compares feature vectors) reuses this file.
            return reference_statistics(datamodule, data_name_of(datamodule), self.settings.real_split, self._extractor,
                                        count=self.settings.real_count, batch_size=self.settings.batch_size,
                                        cache_dir=self.settings.cache_dir, keep_features=True, device=device)

        # Rank 0 computes (or reads) and writes the cache; the others then read it.
        if trainer.is_global_zero:
            result = compute()
        trainer.strategy.barrier("fid_reference")
        if not trainer.is_global_zero:
            result = compute()
        return result

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> FIDRecord:
        """Sample this rank's share, sync the statistics across ranks and return the record.

        Everything runs inside a forked global RNG: whatever sample(), the metrics or the real-image
        pass might draw from it stays out of the training stream.
        """
        device = pl_module.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            return self._measure(trainer, pl_module)

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> FIDRecord:
        import time

        from lit_gen.metrics.fid import FrechetDistance
        from lit_gen.metrics.provenance import feature_provenance, train_images_of
        from lit_gen.metrics.sampling import generate_batches, rank_seed, sample_settings, share_of

        started = time.perf_counter()
        device = pl_module.device
        extractor = self._extractor.to(device)
        if self._reference is None:
            self._reference = self._reference_stats(trainer, device)
        metric = FrechetDistance(extractor, self._reference.stats).to(device)
        rank, world = trainer.global_rank, trainer.world_size
        share = share_of(self.settings.num_samples, rank, world)
        generator = torch.Generator().manual_seed(rank_seed(self.seed, rank))
        if share > 0:
            for images in generate_batches(pl_module, share, self.settings.batch_size, generator, self.settings.sample_options):
                metric.update_features(extractor.extract(images).features, real=False)
        value = float(metric.compute())  # torchmetrics sums every rank's statistics first
        settings = sample_settings(pl_module, self.settings.sample_options)
        reference = self._reference
        return FIDRecord(
            metric=metric_label("FID", extractor.suffix), value=value, feature_extractor=extractor.name,
            feature_spec=self.settings.feature, feature_weights_path=extractor.weights_path,
            feature_weights_sha256=extractor.weights_sha256, feature_dim=extractor.num_features,
            feature_preprocessing=extractor.preprocessing, real_dataset=reference.key["dataset"],
            real_split=self.settings.real_split, real_count=reference.stats.count, real_image_size=reference.key["image_size"],
            real_stats_cache=str(reference.path) if reference.path else None, real_stats_reused=reference.reused,
            generated_count=metric.computed_fake_count, sampler=settings["sampler"],
            steps=settings["steps"], eta=settings["eta"], guidance=settings["guidance"], weights=settings["weights"],
            sample_options={k: v for k, v in self.settings.sample_options.items()}, seed=self.seed, batch_size=self.settings.batch_size,
            checkpoint=None, global_step=trainer.global_step, epoch=trainer.current_epoch, device=str(device),
            **feature_provenance(extractor), train_images=train_images_of(trainer.datamodule, reference.key["dataset"]),
            seconds=round(time.perf_counter() - started, 2),
        )
