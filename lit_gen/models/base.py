"""``GenerativeModule``: the contract every model family follows.

A family implements ``loss(batch) -> LossOutput`` and ``sample(n, ...)``; this class turns the loss
into logged training and validation steps and builds the optimizer from the constructor arguments.
Its constructor arguments are the ``model:`` section of a config, saved with the checkpoint so that
a checkpoint alone rebuilds its model.
"""

from __future__ import annotations

import inspect
from typing import Literal, NamedTuple

import lightning as L
import torch
from torch import Tensor

import lit_gen
from lit_gen.lightning_adapter import attached_trainer, gradients_are_local, should_update_logs
from lit_gen.rules import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat
from lit_gen.signatures import complete_sections, component_arguments, parameters
from lit_gen.training.lr_schedule import LearningRateSchedule
from lit_gen.training.step_guard import Gradients, StepGuard, clip_to_norm
from lit_gen.training.step_guard import gradient_norm as gradient_norm  # kept importable from here (bench.overhead)
from lit_gen.training.term_log import TermLog


class LossOutput(NamedTuple):
    """The scalar to minimise and its named parts (each logged as ``<stage>/<name>``).

    ``weights`` gives, for terms that average only part of the batch, how many examples they
    average (a tensor, 0 when none): epoch means weigh each step's value by it. Other terms, and
    the total, weigh by the batch size.
    """

    total: Tensor
    terms: dict[str, Tensor]
    weights: dict[str, Tensor] | None = None


def detached_terms(out: LossOutput) -> dict[str, Tensor]:
    """``{"loss": total, **terms}``, detached: what a training step logs and keeps as ``last_loss_terms``."""
    return {"loss": out.total.detach(), **{name: value.detach() for name, value in out.terms.items()}}


def to_unit_range(x: Tensor) -> Tensor:
    """Map model-space images in [-1, 1] to [0, 1], clamped."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def to_model_range(x: Tensor) -> Tensor:
    """Map [0, 1] images to the [-1, 1] range that datamodules produce."""
    return x * 2.0 - 1.0


class GenerativeModule(L.LightningModule):
    """Base of every lit_gen model.

    Its arguments are the optimizer's, the one place they are declared: a family's constructor takes
    ``**optimizer`` and passes it on with ``lit_gen.signatures.forward``, stating its own defaults in
    ``ARGUMENT_DEFAULTS`` (the config schema includes them: ``model.lr`` etc.).

    Args:
        lr (float, > 0): peak learning rate of AdamW (each family gives a default).
        weight_decay (float, default 0.0): AdamW weight decay.
        betas (tuple[float, float], default (0.9, 0.999)): AdamW betas.
        warmup_steps (int, default 0): linear learning-rate warm-up from 0 over this many steps.
        lr_schedule ("constant" | "cosine", default "constant"): after warm-up, keep the rate or
            decay it to zero with a cosine over the trainer's ``max_steps`` (or its estimated steps).
            Outside a Trainer, ``configure_optimizers(total_steps=N)`` gives the length instead.

    Training is composed of three pieces from ``lit_gen.training``, each with its own tests:
    ``learning_rate_schedule`` (``LearningRateSchedule``), ``step_guard`` (``StepGuard``: right before
    each optimizer step, for automatic and manual optimization alike, one gradient norm decides whether
    the step is skipped as non-finite on every DDP rank and clips the gradients) and ``term_log``
    (``TermLog``: step values on logging steps, exact epoch means). A skipped step changes no training
    state: the weights, the optimizer's state, the schedule and any EMA stay as they were. Lightning's
    ``global_step`` does advance: it counts batches, so the data position, the per-step reseed and
    ``trainer.max_steps`` go on as usual (families with manual optimization may differ: see
    ``VQGAN._step``). The norm is logged as ``train/grad_norm``; ``skipped_optimizer_steps()`` tells
    callbacks (``NonFiniteGuard`` counts the skips and stops a run that keeps skipping).
    """

    #: Whether ``sample(labels=...)`` is meaningful; conditional families set it on the instance.
    conditional: bool = False
    #: Classes a conditional family takes (set on the instance with ``conditional``).
    num_classes: int | None = None

    def __init__(
        self,
        *,
        lr: PositiveFloat,
        weight_decay: NonNegativeFloat = 0.0,
        betas: tuple[Fraction, Fraction] = (0.9, 0.999),
        warmup_steps: NonNegativeInt = 0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
    ) -> None:
        super().__init__()
        # Checked by the config (the rules above); here only what a Python caller could get wrong silently.
        assert lr > 0 and weight_decay >= 0 and warmup_steps >= 0 and len(betas) == 2, (lr, weight_decay, betas)
        self.lr = lr
        self.weight_decay = weight_decay
        self.betas = tuple(betas)
        self.warmup_steps = warmup_steps
        self.lr_schedule = lr_schedule
        self.learning_rate_schedule = LearningRateSchedule(warmup_steps, lr_schedule)
        self.step_guard = StepGuard()
        self.term_log = TermLog()
        #: The detached loss and its terms of the latest training step (read in error messages).
        self.last_loss_terms: dict[str, Tensor] = {}

    def save_hyperparameters(self, *args, ignore=None, frame=None, logger: bool = True) -> None:
        """Lightning's, plus the defaults of arguments forwarded through ``**kwargs``.

        Lightning stores a forwarded argument only when the caller gave it; the checkpoint then keeps
        every argument anyway, so it rebuilds the same model if a family's defaults change later. For the
        same reason component sections (``model.quantizer``, ``model.objective``...) are stored complete.
        """
        super().save_hyperparameters(*args, ignore=ignore, frame=frame or inspect.currentframe().f_back, logger=logger)
        if args:
            return
        skipped = set([ignore] if isinstance(ignore, str) else ignore or [])
        stored = {}
        for name, param in parameters(type(self)).items():
            if name not in self._hparams and name not in skipped and param.default is not inspect.Parameter.empty:
                stored[name] = param.default
        sections = complete_sections(type(self), {**stored, **{k: self._hparams[k] for k in component_arguments(type(self))
                                                               if k in self._hparams}})
        for name, value in {**stored, **sections}.items():
            self._hparams[name] = value
            if hasattr(self, "_hparams_initial"):
                self._hparams_initial[name] = value

    # ------------------------------------------------------------------ to implement per family
    def loss(self, batch) -> LossOutput:
        """The training objective on one batch ``(images in [-1, 1], int64 labels)``."""
        raise NotImplementedError

    def sample(self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None, **options) -> Tensor:
        """``n`` new images in [0, 1], shape (n, C, H, W), on this module's device."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared training logic
    def augmented(self, batch):
        """The training batch with the datamodule's random augmentation applied (a no-op without one).

        Families that override ``training_step`` call this first, so flips are drawn after the
        per-step reseed and a resumed run sees the same augmented images.
        """
        trainer = attached_trainer(self)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "augment_batch"):
            return batch
        images, *rest = batch
        return (datamodule.augment_batch(images), *rest)

    def training_step(self, batch, batch_idx):
        batch = self.augmented(batch)
        out = self.loss(batch)
        self.last_loss_terms = detached_terms(out)
        self.log_values("train", self.last_loss_terms, batch[0].shape[0], out.weights)
        return out.total

    def validation_step(self, batch, batch_idx):
        out = self.loss(batch)
        self.log_values("val", {"loss": out.total, **out.terms}, batch[0].shape[0], out.weights)
        return out.total

    # ------------------------------------------------------------------ logging (lit_gen.training.term_log)
    def log_values(self, stage: str, values: dict[str, Tensor], batch_size: int,
                   weights: dict[str, Tensor] | None = None) -> None:
        """Log scalars as ``<stage>/<name>``: their epoch means, and training values on logging steps.

        Training values appear as ``train/<name>_step`` every ``logger.log_every_n_steps`` steps and
        ``train/<name>_epoch`` at the end of the epoch; validation values as ``val/<name>``, the mean
        over every rank's examples (``TermLog``). A step adds to device sums and syncs nothing.
        """
        self.term_log.add(stage, self.current_epoch, values, batch_size, weights)
        if stage == "train" and self.is_logging_step():
            self.term_log.log_step(self.log, values, batch_size, weights)

    def is_logging_step(self) -> bool:
        """Whether Lightning writes this training step's values to the loggers (else logging them is wasted)."""
        trainer = attached_trainer(self)
        return True if trainer is None else should_update_logs(trainer)

    def _reduce_sum(self, tensor: Tensor) -> Tensor:
        trainer = attached_trainer(self)
        if trainer is None or trainer.world_size == 1:
            return tensor
        return trainer.strategy.reduce(tensor, reduce_op="sum")

    def log_epoch_metrics(self) -> None:
        """Log this training epoch's metrics (once per epoch; every DDP rank must call it).

        Lightning calls callbacks' ``on_train_epoch_end`` before the module's, so a callback that
        reads the epoch's metrics (``MetricsFile``) calls this first.
        """
        if self.term_log.log_train_epoch(self.log, self.current_epoch, self._reduce_sum):
            self.log_family_epoch_metrics()

    def log_family_epoch_metrics(self) -> None:
        """A family's own epoch-level metrics beside its loss terms (none by default)."""

    def on_train_epoch_start(self) -> None:
        self.term_log.start_train_epoch()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self.step_guard.start_batch()

    def on_train_epoch_end(self) -> None:
        self.log_epoch_metrics()

    def on_validation_epoch_start(self) -> None:
        self.term_log.start_validation()

    def on_validation_epoch_end(self) -> None:
        self.term_log.log_epoch(self.log, "val", self._reduce_sum)

    # ------------------------------------------------------------------ optimizer and schedule (lit_gen.training.lr_schedule)
    def configure_optimizers(self, total_steps: int | None = None):
        """AdamW over ``trainable_parameters()``, with the warm-up / cosine schedule when one is set.

        :param total_steps: the number of optimizer steps the cosine schedule decays over. Lightning
            calls this without it and ``schedule_length()`` is used; a training loop of your own must
            give it (a cosine schedule without a length raises ``ConfigError`` rather than guessing one).
        """
        optimizer = torch.optim.AdamW(self.trainable_parameters(), lr=self.lr, betas=self.betas,
                                      weight_decay=self.weight_decay)
        scheduler = self.lr_scheduler_for(optimizer, total_steps)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_scheduler_for(self, optimizer: torch.optim.Optimizer,
                         total_steps: int | None = None) -> torch.optim.lr_scheduler.LambdaLR | None:
        """The per-step warm-up / cosine schedule of ``optimizer`` (None for a constant rate).

        The cosine's length is ``total_steps`` when given, else the attached trainer's
        (``schedule_length()``); with neither, ``ConfigError``.
        """
        run_length = None if attached_trainer(self) is None else self.schedule_length
        return self.learning_rate_schedule.scheduler(optimizer, total_steps, run_length)

    def schedule_length(self) -> int:
        """The number of schedule steps in the attached trainer's run: ``max_steps``, else its estimated steps.

        A family whose optimizer steps are not its schedule's steps overrides it (VQ-GAN).
        """
        trainer = attached_trainer(self)
        # lr_scheduler_for asks only with a trainer attached; one detached since then is a bug.
        assert trainer is not None, "the cosine schedule needs total_steps or a Trainer"
        if trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps
        return max(1, int(trainer.estimated_stepping_batches))

    def trainable_parameters(self):
        """Parameters the optimizer updates (families with frozen parts override this)."""
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ non-finite steps and clipping (lit_gen.training.step_guard)
    @property
    def step_skipped(self) -> bool:
        """Whether the optimizer step in progress was skipped (the schedule and any EMA then wait)."""
        return self.step_guard.skipped

    def skipped_optimizer_steps(self) -> tuple[bool, ...]:
        """For each optimizer step of the current training batch, in order, whether it was skipped."""
        return self.step_guard.decisions()

    def drop_step_if_nonfinite(self, optimizer: torch.optim.Optimizer, value: Tensor | None,
                               final: bool = True) -> bool:
        """Skip ``optimizer``'s step when ``value`` (a gradient norm or a loss) is not finite on any rank.

        The one guard of every family (``StepGuard.check``): every rank must call it at the same point.
        ``final=False`` marks an early check (a loss before its backward pass).
        """
        return self.step_guard.check(optimizer, value, self.trainer.strategy, final)

    def on_before_optimizer_step(self, optimizer) -> None:
        """Guard the step and clip its gradients, both with one gradient norm.

        Lightning calls this after the gradients are final (after unscaling under fp16, where the
        scaler then also skips the step) and before it clips (automatic optimization) or steps.
        """
        gradients = self.step_guard.check_gradients(optimizer, self.trainer.strategy)
        if gradients is None:
            return
        if self.is_logging_step():
            self.log("train/grad_norm", gradients.norm, on_step=True, on_epoch=False)
        if self.automatic_optimization:  # Lightning clips next, through configure_gradient_clipping
            return
        clip = self.gradient_clip_for(optimizer)
        if clip is not None:
            self.clip_gradients_by_norm(optimizer, clip, gradients)

    def gradient_clip_for(self, optimizer: torch.optim.Optimizer) -> float | None:
        """Under manual optimization: the max gradient norm of ``optimizer``'s steps (None: no clipping).

        Automatic optimization clips with ``trainer.gradient_clip_val`` instead.
        """
        return None

    def optimizer_step(self, *args, **kwargs) -> None:
        self.step_guard.start_step()  # the guard may skip it while the closure runs inside the step
        super().optimizer_step(*args, **kwargs)

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if self.step_skipped:  # a skipped step trained nothing, so the schedule waits too
            return
        super().lr_scheduler_step(scheduler, metric)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip by norm with the norm the guard just computed (one pass over the gradients, not two).

        Equal to Lightning's clipping (``clip_grad_norm_`` is that norm followed by the same scaling);
        other algorithms clip as Lightning does.
        """
        gradients = self.step_guard.take_held(optimizer)
        if gradients is None or gradient_clip_algorithm not in (None, "norm"):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        if gradient_clip_val:
            self.clip_gradients_by_norm(optimizer, float(gradient_clip_val), gradients)

    def clip_gradients_by_norm(self, optimizer: torch.optim.Optimizer, max_norm: float, gradients: Gradients) -> None:
        """Clip ``optimizer``'s gradients to ``max_norm`` with the norm the guard computed."""
        if not gradients_are_local(self.trainer.strategy):  # a shard's norm is not the total: Lightning's own way
            self.clip_gradients(optimizer, max_norm, "norm")
            return
        clip_to_norm(gradients, max_norm)

    def ema_snapshot(self) -> dict | None:
        """A snapshot of the weight averages due now (see ``CallbackContract``); families without one: None."""
        return None

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Plain strings only: checkpoints are loaded with weights_only=True.
        from lit_gen import registry

        checkpoint["lit_gen"] = {"model": registry.name_of(type(self)), "version": lit_gen.__version__}
        checkpoint["lit_gen_train_means"] = self.term_log.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "lit_gen_train_means" in checkpoint:
            self.term_log.load_state_dict(checkpoint["lit_gen_train_means"], self.device)
