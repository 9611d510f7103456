"""``GenerativeModule``: the contract every model family follows.

A family implements ``loss(batch) -> LossOutput`` and ``sample(n, ...)``; this class turns the loss
into logged training and validation steps and builds the optimizer from the constructor arguments.
Its constructor arguments are the ``model:`` section of a config, saved with the checkpoint so that
a checkpoint alone rebuilds its model.
"""

from __future__ import annotations

import inspect
import math
from typing import Literal, NamedTuple

import lightning as L
import torch
from torch import Tensor

import lit_gen
from lit_gen.errors import ConfigError
from lit_gen.lightning_adapter import attached_trainer, gradients_are_local, should_update_logs
from lit_gen.models.running_means import RunningMeans
from lit_gen.rules import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat
from lit_gen.signatures import complete_sections, component_arguments, parameters


class LossOutput(NamedTuple):
    """The scalar to minimise and its named parts (each logged as ``<stage>/<name>``).

    ``weights`` gives, for terms that average only part of the batch, how many examples they
    average (a tensor, 0 when none): epoch means weigh each step's value by it. Other terms, and
    the total, weigh by the batch size.
    """

    total: Tensor
    terms: dict[str, Tensor]
    weights: dict[str, Tensor] | None = None


def gradient_norm(parameters) -> Tensor | None:
    """The total 2-norm of the gradients present, as ``clip_grad_norm_`` computes it (None without any)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads, 2.0) if grads else None


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

    Non-finite steps: right before each optimizer step (``on_before_optimizer_step``, for automatic
    and manual optimization alike) the module computes the total gradient norm once. When it is not
    finite on any DDP rank (a NaN or inf in the loss reaches every gradient, so this catches both),
    every rank drops its gradients and the step changes no training state: the weights and the
    optimizer's moments and step counts stay as they were (the optimizer updates only parameters
    with a gradient), the learning-rate schedule does not advance, and families with an EMA leave it
    and its update counter alone. Lightning's ``global_step`` does advance: it counts batches, so the
    data position, the per-step reseed and ``trainer.max_steps`` go on as usual (families with manual
    optimization may differ: see ``VQGAN._step``). The same norm clips the gradients (no second pass)
    and is logged as ``train/grad_norm``; it never leaves the module. ``skipped_optimizer_steps()``
    tells callbacks (``NonFiniteGuard`` counts them and stops a run that keeps skipping).
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
        self._schedule_total: int | None = None
        #: Whether the optimizer step in progress was skipped (set by ``skip_step``; see the class docstring).
        self.step_skipped = False
        #: The detached loss and its terms of the latest training step (read in error messages).
        self.last_loss_terms: dict[str, Tensor] = {}
        # Per optimizer step of the current batch: skipped or not (``skipped_optimizer_steps``).
        self._batch_skips: list[bool] = []
        # The norm of the step in progress, kept for ``configure_gradient_clipping`` (automatic optimization).
        self._step_norm: tuple[torch.optim.Optimizer, Tensor] | None = None
        self._epoch_means = {"train": RunningMeans(), "val": RunningMeans()}
        self._epoch_logged: int | None = None

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
        self.last_loss_terms = {"loss": out.total.detach(), **{k: v.detach() for k, v in out.terms.items()}}
        self._log_terms("train", out, batch_size=batch[0].shape[0])
        return out.total

    def validation_step(self, batch, batch_idx):
        out = self.loss(batch)
        self._log_terms("val", out, batch_size=batch[0].shape[0])
        return out.total

    def _log_terms(self, stage: str, out: LossOutput, batch_size: int) -> None:
        self.log_values(stage, {"loss": out.total, **out.terms}, batch_size, out.weights)

    def log_values(self, stage: str, values: dict[str, Tensor], batch_size: int,
                   weights: dict[str, Tensor] | None = None) -> None:
        """Log scalars as ``<stage>/<name>``: their epoch means, and training values on logging steps.

        Training values appear as ``train/<name>_step`` every ``logger.log_every_n_steps`` steps and
        ``train/<name>_epoch`` at the end of the epoch; validation values as ``val/<name>``, the mean
        over every rank's examples. Accumulating on the device keeps a step free of host syncs.
        """
        weights = weights or {}
        values = {name: value.detach() for name, value in values.items()}
        self._epoch_means[stage].add(self.current_epoch, values, {n: weights.get(n, batch_size) for n in values})
        if stage != "train" or not self.is_logging_step():
            return
        present = {n: True for n in values}
        if weights:  # a term over no example of this batch has no value to show
            names = [n for n in values if n in weights]
            counts = torch.stack([torch.as_tensor(weights[n], device=self.device) for n in names]).tolist()
            present.update({n: c > 0 for n, c in zip(names, counts)})
        for name, value in values.items():
            if present[name]:
                self.log(f"train/{name}_step", value, prog_bar=name == "loss", on_step=True, on_epoch=False,
                         batch_size=batch_size)

    def is_logging_step(self) -> bool:
        """Whether Lightning writes this training step's values to the loggers (else logging them is wasted)."""
        trainer = attached_trainer(self)
        return True if trainer is None else should_update_logs(trainer)

    def _log_epoch_means(self, stage: str) -> None:
        means = self._epoch_means[stage].means(self._reduce_sum)
        self._epoch_means[stage].reset()
        for name, mean in means.items():
            if stage == "train":
                self.log(f"train/{name}_epoch", mean, prog_bar=name == "loss", on_step=False, on_epoch=True, batch_size=1)
                # The plain name, for callbacks that monitor it (as Lightning provides for on_step + on_epoch values).
                self.log(f"train/{name}", mean, logger=False, on_step=False, on_epoch=True, batch_size=1)
            else:
                self.log(f"val/{name}", mean, prog_bar=name == "loss", on_step=False, on_epoch=True, batch_size=1)

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
        if self._epoch_logged == self.current_epoch:
            return
        self._epoch_logged = self.current_epoch
        self._log_epoch_means("train")
        self.log_family_epoch_metrics()

    def log_family_epoch_metrics(self) -> None:
        """A family's own epoch-level metrics beside its loss terms (none by default)."""

    def on_train_epoch_start(self) -> None:
        self._epoch_logged = None

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._batch_skips = []

    def on_train_epoch_end(self) -> None:
        self.log_epoch_metrics()

    def on_validation_epoch_start(self) -> None:
        self._epoch_means["val"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_means("val")

    def configure_optimizers(self, total_steps: int | None = None):
        """AdamW over ``trainable_parameters()``, with the warm-up / cosine schedule when one is set.

        :param total_steps: the number of optimizer steps the cosine schedule decays over. Lightning
            calls this without it and the trainer's ``max_steps`` (or estimated steps) is used; a
            training loop of your own must give it (a cosine schedule without a length raises
            ``ConfigError`` rather than guessing one).
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

        The cosine's length is ``total_steps`` when given, else the attached trainer's; with
        neither, ``ConfigError``: a guessed length would leave the rate at 0 after it, silently.
        """
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1):
            raise ConfigError(f"total_steps must be a positive integer, got {total_steps!r}")
        self._schedule_total = total_steps
        if self.lr_schedule == "cosine" and total_steps is None and attached_trainer(self) is None:
            raise ConfigError(
                "model.lr_schedule='cosine' decays over the run's length, but there is no Trainer to read it from: "
                "call configure_optimizers(total_steps=N) with your loop's number of optimizer steps "
                "(or use lr_schedule='constant')"
            )
        if self.warmup_steps <= 0 and self.lr_schedule == "constant":
            return None
        return torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)

    # ------------------------------------------------------------------ non-finite steps and clipping
    def skip_step(self) -> None:
        """Mark the optimizer step in progress as skipped: the schedule and any EMA stay where they are."""
        self.step_skipped = True

    def skipped_optimizer_steps(self) -> tuple[bool, ...]:
        """For each optimizer step of the current training batch, in order, whether it was skipped."""
        return tuple(self._batch_skips)

    def drop_step_if_nonfinite(self, optimizer: torch.optim.Optimizer, value: Tensor | None,
                               final: bool = True) -> bool:
        """Skip ``optimizer``'s step when ``value`` (a gradient norm or a loss) is not finite on any rank.

        The one guard of every family. The decision is reduced over DDP ranks (any rank bad -> every
        rank skips) so replicas never diverge; skipping drops the optimizer's gradients and calls
        ``skip_step``. Every rank must call it at the same point (it is a collective).
        ``final=False`` marks an early check (a loss before its backward pass) that is recorded only
        when it skips: the step's one entry in ``skipped_optimizer_steps`` is then the check that ends it.
        """
        bad = value is not None and not bool(torch.isfinite(value))  # the step's one host sync
        bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            self.skip_step()
        if bad or final:
            self._batch_skips.append(bad)
        return bad

    def on_before_optimizer_step(self, optimizer) -> None:
        """Guard the step and clip its gradients, both with one gradient norm.

        Lightning calls this after the gradients are final (after unscaling under fp16, where the
        scaler then also skips the step) and before it clips (automatic optimization) or steps.
        """
        self._step_norm = None
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = gradient_norm(params)
        if self.drop_step_if_nonfinite(optimizer, norm) or norm is None:
            return
        if self.is_logging_step():
            self.log("train/grad_norm", norm, on_step=True, on_epoch=False)
        if self.automatic_optimization:  # Lightning clips next, through configure_gradient_clipping
            self._step_norm = (optimizer, norm)
            return
        clip = self.gradient_clip_for(optimizer)
        if clip is not None:
            self._clip_by_norm(optimizer, clip, norm)

    def gradient_clip_for(self, optimizer: torch.optim.Optimizer) -> float | None:
        """Under manual optimization: the max gradient norm of ``optimizer``'s steps (None: no clipping).

        Automatic optimization clips with ``trainer.gradient_clip_val`` instead.
        """
        return None

    def optimizer_step(self, *args, **kwargs) -> None:
        self.step_skipped = False  # the guard may set it while the closure runs inside the step
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
        known, self._step_norm = self._step_norm, None
        if known is None or known[0] is not optimizer or gradient_clip_algorithm not in (None, "norm"):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        if gradient_clip_val:
            self._clip_by_norm(optimizer, float(gradient_clip_val), known[1])

    def _clip_by_norm(self, optimizer: torch.optim.Optimizer, max_norm: float, norm: Tensor) -> None:
        if not gradients_are_local(self.trainer.strategy):  # a shard's norm is not the total: Lightning's own way
            self.clip_gradients(optimizer, max_norm, "norm")
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)

    def ema_snapshot(self) -> dict | None:
        """A snapshot of the weight averages due now (see ``CallbackContract``); families without one: None."""
        return None

    def trainable_parameters(self):
        """Parameters the optimizer updates (families with frozen parts override this)."""
        return [p for p in self.parameters() if p.requires_grad]

    def _lr_factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.lr_schedule == "cosine":
            total = self._total_steps()
            progress = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    def _total_steps(self) -> int:
        if self._schedule_total is not None:
            return self._schedule_total
        trainer = attached_trainer(self)
        # lr_scheduler_for refuses a cosine schedule with neither; a trainer detached since then is a bug.
        assert trainer is not None, "the cosine schedule needs total_steps or a Trainer"
        if trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps
        return max(1, int(trainer.estimated_stepping_batches))

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Plain strings only: checkpoints are loaded with weights_only=True.
        from lit_gen import registry

        checkpoint["lit_gen"] = {"model": registry.name_of(type(self)), "version": lit_gen.__version__}
        checkpoint["lit_gen_train_means"] = self._epoch_means["train"].state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "lit_gen_train_means" in checkpoint:
            self._epoch_means["train"].load_state_dict(checkpoint["lit_gen_train_means"], self.device)
