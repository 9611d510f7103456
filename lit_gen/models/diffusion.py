"""The diffusion family: a U-Net trained by one of the diffusion objectives, sampled by any sampler that fits it.

Ho et al. 2020's denoising diffusion and its descendants: the objective (``model.objective``, a
component of its own: ``lit_gen.diffusion.objectives``) says how a batch is noised and what the U-Net
regresses on (``vp``: Ho et al.'s discrete schedule with eps-, x0- or v-prediction, optionally min-SNR
weighted; ``edm``: Karras et al. 2022's preconditioning; ``flow``: rectified flow / flow matching), and
the samplers of ``lit_gen.diffusion.samplers`` walk its noise levels back to data with the EMA weights.
Class conditioning with classifier-free guidance (Ho & Salimans 2022) and latent diffusion over a
frozen autoencoder (Rombach et al. 2022) work with every objective. The math lives in
``lit_gen.diffusion``; the U-Net never sees it.

Registered as ``diffusion``; ``ddpm`` is an alias (configs and checkpoints written with it still load).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor

from lit_gen.diffusion.guidance import guided
from lit_gen.diffusion.likelihood import variational_bound
from lit_gen.diffusion.samplers import Sampler, check_sampler, sample, sampler_that_runs
from lit_gen.diffusion.schedule import SPACINGS, Spacing
from lit_gen.errors import ConfigError
from lit_gen.models.base import GenerativeModule, LossOutput, to_unit_range
from lit_gen.models.capabilities import NLL, Autoencoding
from lit_gen.models.first_stage import first_stage_spec, stage_from_spec
from lit_gen.nn import draws, layers
from lit_gen.nn.layers import Conditioning
from lit_gen.nn.unet import UNet
from lit_gen.rules import Component, Fraction, PositiveInt
from lit_gen.signatures import Added, Moved, build_component, forward

log = logging.getLogger(__name__)


class Diffusion(GenerativeModule):
    """A U-Net, its training objective, its EMA, optional class conditioning and an optional frozen first stage.

    The architecture defaults are Ho et al.'s CIFAR-10 model; ``configs/ddpm_cifar.yaml`` adds the
    rest of their training setup (warm-up, plain EMA, batch size, clipping, step budget).

    Args:
        channels (int, default 3): image channels (filled from the dataset by the config).
        image_size (int, default 32): image side length (filled from the dataset by the config).
        base_channels (int, default 128): U-Net width at full resolution.
        channel_mults (tuple[int, ...], default (1, 2, 2, 2)): U-Net width per level, as multiples of
            ``base_channels``; each level after the first halves the resolution, so the diffused side
            length must be divisible by ``2 ** (len(channel_mults) - 1)``.
        num_res_blocks (int, default 2): residual blocks per U-Net level.
        attention_resolutions (tuple[int, ...], default (16,)): side lengths with self-attention.
        dropout (float, default 0.1): dropout inside residual blocks.
        norm_groups (int, default 32): most GroupNorm groups per layer (fewer where a width needs it).
        attention_heads (int, default 1): heads of every U-Net self-attention layer; must divide the
            attended widths. The weights do not depend on it.
        conditioning ("scale_shift" | "add", default "scale_shift"): how each U-Net residual block takes
            the time (and class) embedding: a per-channel scale and shift after its GroupNorm (Dhariwal &
            Nichol 2021), or Ho et al.'s per-channel bias before it, which a GroupNorm whose groups hold
            one channel subtracts exactly (the block then never sees t). The config refuses "add" where a
            block would be blind; checkpoints written before this argument existed load as "add".
        objective (section, default "vp"): the training objective and its settings, a registered
            component: a name (``vp``, ``edm``, ``flow``; ``ddpm`` = ``vp``) or ``{name: ..., <its
            arguments>}``, e.g. ``{name: vp, prediction: v, min_snr_gamma: 5}`` or ``{name: flow,
            time_sampling: uniform}`` (``lit_gen.diffusion.objectives`` documents each one's arguments).
        num_classes (int | None, default None): classes to condition on; None is unconditional.
        label_dropout (float, default 0.1): probability of replacing a training label with the null
            class, so one network also learns the unconditional model classifier-free guidance needs.
        ema (section, default "exponential"): the average of the weights that samples, a registered
            component (``lit_gen.nn.ema``): ``{name: exponential, decay: 0.9999, warmup: true}`` (Ho et
            al.'s EMA; decay 0 keeps none; the warm-up ramps the decay as min(decay, (1 + n) / (10 + n)),
            which short runs need), ``{name: power, sigma_rels: [0.05, 0.10], snapshot_every: 1000}``
            (Karras et al. 2024's power EMAs, whose snapshots in the run's ``ema/`` folder let
            ``python -m lit_gen.ema`` build the average of any length after training), or ``post_hoc``
            (one such synthesised average, written by that command).
        default_sampler (dict | None, default None): ``sample()`` options used wherever a caller gives
            none (``lit_gen.sample``, ``lit_gen.evaluate``, grids, FID during training), e.g.
            ``{sampler: heun, steps: 5}``; keys are ``sample()``'s options (``SAMPLE_DEFAULTS``). None:
            DDIM with 50 steps (Euler along the ODE for edm and flow), EMA weights, no guidance.
        first_stage (str | None, default None): path of an autoencoder checkpoint (any family that offers
            ``lit_gen.models.capabilities.Autoencoding``, e.g. ``ae`` with ``architecture: conv``) for
            latent diffusion. It is frozen; the U-Net diffuses its latents, scaled to unit variance by a
            factor estimated on the first training batch, and samples are decoded by it. Its weights are
            saved in this model's checkpoints, so the file is needed only to start training; it is read
            by ``lit_gen.build.build_model``, never by the model.
        first_stage_spec (dict | None, default None): the first stage's family and arguments, filled
            in by ``lit_gen.build.build_model`` (so a checkpoint rebuilds it without the file); leave unset.
        lr (float, default 2e-4): peak learning rate (Ho et al.: 2e-4 for CIFAR-10).
        weight_decay (float, default 0.0), betas (tuple, default (0.9, 0.999)), warmup_steps (int,
            default 0; Ho et al. warm up over 5000), lr_schedule ("constant" | "cosine", default
            "constant"): optimizer settings, see ``GenerativeModule``.
    """

    #: This family's defaults for the optimizer arguments it forwards to ``GenerativeModule``.
    ARGUMENT_DEFAULTS: ClassVar[dict] = {"lr": 2e-4}
    #: Arguments added after checkpoints were written, with the value that rebuilds those checkpoints' networks.
    ADDED_ARGUMENTS: ClassVar[dict[str, Added]] = {
        "conditioning": Added("add", "U-Net blocks added the embedding before their GroupNorm"),
        "default_sampler": Added(None, "sample() defaulted to DDIM, 50 steps"),
    }
    #: Settings of one objective that were the family's own before the objective had a section.
    MOVED_ARGUMENTS: ClassVar[dict[str, Moved]] = {
        **{name: Moved("objective", name, "vp") for name in
           ("timesteps", "beta_schedule", "beta_start", "beta_end", "prediction", "min_snr_gamma")},
        "flow_time_sampling": Moved("objective", "time_sampling", "flow"),
        "sigma_data": Moved("objective", "sigma_data", "edm"),
        "ema_decay": Moved("ema", "decay", "exponential"),
        "ema_warmup": Moved("ema", "warmup", "exponential"),
    }
    #: What ``sample()`` does when neither the caller nor ``default_sampler`` says otherwise.
    SAMPLE_DEFAULTS: ClassVar[dict] = {"sampler": "ddim", "steps": 50, "eta": 0.0, "guidance": 1.0, "use_ema": True,
                                       "clip_x0": None, "spacing": None, "recompute_eps": True}

    def __init__(
        self,
        channels: PositiveInt = 3,
        image_size: PositiveInt = 32,
        base_channels: PositiveInt = 128,
        channel_mults: tuple[PositiveInt, ...] = (1, 2, 2, 2),
        num_res_blocks: PositiveInt = 2,
        attention_resolutions: tuple[PositiveInt, ...] = (16,),
        dropout: Fraction = 0.1,
        norm_groups: PositiveInt = 32,
        attention_heads: PositiveInt = 1,
        conditioning: Conditioning = "scale_shift",
        objective: Annotated[str | dict, Component("objective")] = "vp",
        num_classes: PositiveInt | None = None,
        label_dropout: Fraction = 0.1,
        ema: Annotated[str | dict, Component("ema")] = "exponential",
        default_sampler: dict | None = None,
        first_stage: str | None = None,
        first_stage_spec: dict | None = None,
        **optimizer,
    ) -> None:
        super().__init__(**forward(Diffusion, optimizer))
        self.save_hyperparameters()  # component sections complete, in the checkpoint too
        objective, ema = self.hparams["objective"], self.hparams["ema"]
        unknown = sorted(set(default_sampler or {}) - set(self.SAMPLE_DEFAULTS))
        if unknown:
            raise ConfigError(f"model.default_sampler: unknown sample() option(s) {', '.join(unknown)}; "
                              f"choose from {', '.join(self.SAMPLE_DEFAULTS)}")
        self.default_sampler = dict(default_sampler or {})
        self.num_classes = num_classes
        self.label_dropout = label_dropout
        self.conditional = num_classes is not None

        # Latent diffusion: the U-Net works on the first stage's latent shape instead of pixels.
        self.first_stage = None
        shape = (channels, image_size, image_size)
        if first_stage is not None:
            self.first_stage = stage_from_spec(first_stage, first_stage_spec, Autoencoding,
                                               "an autoencoder with encode/decode", "configs/ae_digits.yaml")
            shape = self._latent_shape(channels, image_size)
            # 0 = not estimated yet; a buffer so checkpoints keep the value training used.
            self.register_buffer("latent_scale", torch.zeros(()))
            # Whether latent_scale is set, kept on the host so a training step does not read the buffer.
            self._latent_scale_known: bool | None = None
            self.register_load_state_dict_post_hook(_forget_latent_scale_known)
        self.diffusion_shape: tuple[int, int, int] = shape

        try:
            self.unet = UNet(
                in_channels=shape[0], base_channels=base_channels, channel_mults=tuple(channel_mults),
                num_res_blocks=num_res_blocks, attention_resolutions=tuple(attention_resolutions),
                dropout=dropout, image_size=shape[1], num_classes=num_classes, groups=norm_groups,
                attention_heads=attention_heads, conditioning=conditioning,
            )
            self.objective = build_component("objective", objective)
        except ValueError as exc:
            where = f" (the U-Net runs on latents of shape {shape})" if first_stage is not None else ""
            raise ConfigError(f"model: {exc}{where}") from None
        keeps_none = ema["name"] == "exponential" and ema["decay"] == 0
        self.ema = None if keeps_none else build_component("ema", ema, self.unet)
        try:  # a default that sample() would refuse fails now, naming the setting, not at the first grid
            settings = self.sample_defaults()
            self._check_sample_args(1, None, settings["sampler"], settings["steps"], settings["eta"], settings["guidance"],
                                    settings["spacing"])
        except ValueError as exc:
            raise ConfigError(f"model.default_sampler={self.default_sampler}: {exc}") from None

    @staticmethod
    def check_config(args: dict) -> None:
        """Refuse settings no checkpoint needs but a config could ask for: U-Net blocks blind to t."""
        if args["conditioning"] != "add":
            return
        widths = sorted({args["base_channels"] * m for m in args["channel_mults"]})
        blind = [w for w in widths if w // layers.norm_groups(w, args["norm_groups"]) == 1]
        if blind:
            raise ConfigError(
                f"model.conditioning=add with model.norm_groups={args['norm_groups']}: the U-Net blocks of width "
                f"{', '.join(map(str, blind))} get one channel per GroupNorm group, which subtracts the added "
                "embedding exactly, so they never see the noise level. Use model.conditioning=scale_shift (the "
                f"default), or model.norm_groups={max(1, min(blind) // 4)} for at least 4 channels per group")

    # ------------------------------------------------------------------ first stage (latent diffusion)
    @staticmethod
    def first_stage_spec_for(name: str, hparams: dict) -> dict:
        """The ``first_stage_spec`` saved for a first stage of family ``name`` with ``hparams`` (``lit_gen.build``)."""
        return first_stage_spec(name, hparams)

    @torch.no_grad()
    def _latent_shape(self, channels: int, image_size: int) -> tuple[int, int, int]:
        z = self.first_stage.encode(torch.zeros(1, channels, image_size, image_size))
        if not isinstance(z, Tensor) or z.ndim != 4:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ConfigError(f"model.first_stage: latents must be spatial (B, c, h, w) for the U-Net, got {shape}; "
                              "use a convolutional autoencoder (architecture: conv)")
        return tuple(z.shape[1:])

    def train(self, mode: bool = True) -> "Diffusion":
        # Lightning calls train() on the whole model each epoch; the frozen first stage stays in eval.
        super().train(mode)
        if self.first_stage is not None:
            self.first_stage.eval()
        return self

    def _scale_for(self, z: Tensor) -> Tensor:
        """The latent scale factor: stored once known, else 1/std of ``z`` (stored when training)."""
        if self._latent_scale_known is None:
            self._latent_scale_known = bool(self.latent_scale > 0)
        if self._latent_scale_known:
            return self.latent_scale
        var = z.float().var()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(var)  # every rank must use the same factor
            var = var / dist.get_world_size()
        scale = var.clamp(min=1e-12).rsqrt()
        if self.training:
            self.latent_scale.copy_(scale)
            self._latent_scale_known = True
            log.info("latent diffusion: latent scale factor set to %.4f (1 / std of the first batch)", float(scale))
        return scale

    def to_diffusion_space(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] -> what the U-Net diffuses: the images, or scaled first-stage latents."""
        if self.first_stage is None:
            return images
        with torch.no_grad():
            z = self.first_stage.encode(images)
        return z * self._scale_for(z)

    # ------------------------------------------------------------------ training
    def loss(self, batch) -> LossOutput:
        """The objective's (weighted) MSE between the U-Net output and its target (Ho et al.'s simple
        loss, eq. 14, for "vp"), plus the loss per quartile of noise levels (``loss_q0`` = the
        least noisy quarter)."""
        images, labels = batch
        x0 = self.to_diffusion_space(images)
        # Global RNG on purpose: the training loop reseeds it every step, which makes resume exact.
        example = self.objective.training_example(x0)
        pred = self.unet(example.x_t, example.time, self._training_labels(labels) if self.conditional else None)
        per_example = example.weight * (pred.float() - example.target.float()).pow(2).flatten(1).mean(1)  # (B,)
        # Per-quartile means on the device (no host sync); a quartile without examples has weight 0.
        quartile = example.quartile
        detached = per_example.detach()
        counts = torch.bincount(quartile, minlength=4)
        sums = torch.zeros(4, dtype=detached.dtype, device=detached.device).index_add_(0, quartile, detached)
        means = sums / counts.clamp(min=1)
        names = [f"loss_q{q}" for q in range(4)]
        return LossOutput(per_example.mean(), dict(zip(names, means.unbind())), dict(zip(names, counts.unbind())))

    def _training_labels(self, labels: Tensor) -> Tensor:
        if bool(((labels < 0) | (labels >= self.num_classes)).any()):  # one host sync per step, not two
            raise ValueError(f"labels must be in [0, {self.num_classes}) for model.num_classes={self.num_classes}, "
                             f"got values from {int(labels.min())} to {int(labels.max())}")
        if not self.training or self.label_dropout == 0:
            return labels
        drop = torch.rand(labels.shape[0], device=labels.device) < self.label_dropout
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if not self.step_skipped:  # a skipped step leaves the EMA and its counter as they were
            self.update_ema()

    def update_ema(self) -> None:
        """Move the EMA weights towards the current U-Net (called after each optimizer step that was not skipped)."""
        if self.ema is not None:
            self.ema.update(self.unet)

    def ema_snapshot(self) -> dict | None:
        """The power EMA's snapshot due after the step just taken (None when none is due or kept)."""
        return self.ema.snapshot() if self.ema is not None and self.ema.snapshot_due() else None

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        generator: torch.Generator | None = None,
        sampler: Sampler | None = None,
        steps: int | None = None,
        eta: float | None = None,
        guidance: float | None = None,
        use_ema: bool | None = None,
        clip_x0: bool | None = None,
        spacing: Spacing | None = None,
        recompute_eps: bool | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Generate ``n`` images in [0, 1], shape (n, C, H, W), on this module's device.

        Every option left at None takes its value from ``sample_defaults()``: the model's
        ``default_sampler``, then ``SAMPLE_DEFAULTS`` (DDIM, 50 steps, EMA weights, no guidance).

        :param labels: (n,) int64 classes for a conditional model; None draws them uniformly from
            ``generator`` (before the noise). Unconditional models take no labels.
        :param generator: source of every random draw; the same seed gives the same images.
        :param sampler: a name of ``lit_gen.diffusion.samplers.SAMPLERS``: ``ddim``, ``ddpm`` (ancestral),
            or the ODE samplers ``euler``, ``heun`` (2 steps - 1 network evaluations) and ``dpmpp_2m``.
            Continuous objectives (edm, flow) take the ODE samplers only (``ddim`` runs as ``euler``).
        :param steps: denoising steps, 1 .. timesteps for objective vp (use ``timesteps`` with
            ``ddpm`` for Ho et al.'s sampler); any number >= 1 for edm and flow.
        :param eta: DDIM noise (0 deterministic, 1 = ancestral); only ``ddim`` on objective vp.
        :param spacing: which training timesteps ``steps`` keeps (objective vp): ``linspace``,
            ``leading``, ``trailing`` or ``karras`` (``lit_gen.diffusion.schedule.spaced_timesteps``).
            None: ``linspace`` for ddim/ddpm, ``karras`` for the ODE samplers.
        :param recompute_eps: DDIM: rebuild eps from the clipped x0 (default) or keep the network's own (False).
        :param guidance: classifier-free guidance weight w (conditional models only; 1 = none).
        :param use_ema: sample with the EMA weights (the raw weights when the EMA is disabled).
        :param clip_x0: clamp predicted x0 to [-1, 1]; None = yes for pixels, no for latents.
        :param progress: show a progress bar.
        """
        given = {"sampler": sampler, "steps": steps, "eta": eta, "guidance": guidance, "use_ema": use_ema,
                 "clip_x0": clip_x0, "spacing": spacing, "recompute_eps": recompute_eps}
        settings = {**self.sample_defaults(), **{k: v for k, v in given.items() if v is not None}}
        self._check_sample_args(n, labels, settings["sampler"], settings["steps"], settings["eta"], settings["guidance"],
                                settings["spacing"])
        if self.conditional and labels is None:
            labels = draws.randint(self.num_classes, (n,), generator=generator, device=self.device)
        net = self.ema.averaged if settings["use_ema"] and self.ema is not None else self.unet
        if self.conditional:
            model_fn = guided(net, labels.to(self.device, torch.long), self.num_classes, settings["guidance"])
        else:
            def model_fn(x: Tensor, t: Tensor) -> Tensor:
                return net(x, t)

        was_training = net.training
        net.eval()
        try:
            clip = settings["clip_x0"]
            x = sample(model_fn, self.objective, (n, *self.diffusion_shape), sampler=settings["sampler"],
                       steps=settings["steps"], spacing=settings["spacing"], eta=settings["eta"],
                       recompute_eps=settings["recompute_eps"], clip_x0=self.first_stage is None if clip is None else clip,
                       generator=generator, device=self.device, progress=progress)
        finally:
            net.train(was_training)
        if self.first_stage is not None:
            if not bool(self.latent_scale > 0):
                log.warning("latent diffusion: the latent scale factor was never estimated (untrained model); using 1")
            scale = self.latent_scale if bool(self.latent_scale > 0) else torch.ones_like(self.latent_scale)
            x = self.first_stage.decode(x / scale)
        return to_unit_range(x)

    def sample_defaults(self) -> dict:
        """The ``sample()`` options a caller who gives none gets: ``SAMPLE_DEFAULTS`` updated by ``default_sampler``
        (a discrete schedule shorter than the default 50 steps samples all of its timesteps)."""
        defaults = dict(self.SAMPLE_DEFAULTS)
        if self.objective.discrete:
            defaults["steps"] = min(defaults["steps"], len(self.objective.schedule))
        return {**defaults, **self.default_sampler}

    def sample_record(self, options: dict[str, Any]) -> dict[str, Any]:
        """What ``sample(**options)`` runs, as records name it: the sampler that ran, steps, eta, guidance, weights."""
        effective = {**self.sample_defaults(), **options}
        runs = sampler_that_runs(effective["sampler"], self.objective.discrete)
        return {"sampler": runs, "steps": effective["steps"], "eta": effective["eta"], "guidance": effective["guidance"],
                "weights": "ema" if effective["use_ema"] and self.ema is not None else "raw"}

    def _check_sample_args(self, n, labels, sampler, steps, eta, guidance, spacing) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        check_sampler(sampler, discrete=self.objective.discrete, eta=eta)
        if self.objective.discrete:
            T = len(self.objective.schedule)
            if not 1 <= steps <= T:
                raise ValueError(f"steps must be in [1, {T}] (the model's timesteps), got {steps}")
            if spacing is not None and spacing not in SPACINGS:
                raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
        else:
            if steps < 1:
                raise ValueError(f"steps must be at least 1, got {steps}")
            if spacing is not None:
                raise ValueError(f"spacing={spacing!r} picks discrete timesteps of objective vp; objective "
                                 f"{self.objective.name} has its own discretisation: leave spacing unset")
        if not self.conditional:
            if labels is not None:
                raise ValueError("this diffusion model is unconditional (num_classes=None): call sample() without labels")
            if guidance != 1.0:
                raise ValueError(f"guidance={guidance} needs a class-conditional model (num_classes set); "
                                 "leave guidance at 1 for an unconditional model")
            return
        if labels is not None:
            if labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"labels must be an int64 tensor of shape ({n},), got {labels.dtype} {tuple(labels.shape)}")
            if bool((labels < 0).any() or (labels >= self.num_classes).any()):
                raise ValueError(f"labels must be in [0, {self.num_classes}) (num_classes={self.num_classes}), "
                                 f"got values from {int(labels.min())} to {int(labels.max())}")

    # ------------------------------------------------------------------ likelihood
    def likelihood_unavailable(self) -> str | None:
        """Why this model has no comparable bits/dim (None: its variational bound over all T terms is one)."""
        if not self.objective.likelihood_bound:
            return (f"objective {self.objective.name}: its likelihood (probability flow) is not implemented "
                    "(not comparable)")
        if self.first_stage is not None:
            return "latent diffusion: its bound is over the first stage's latents, not pixels (not comparable)"
        return None

    @torch.no_grad()
    def negative_log_likelihood(self, x: Tensor, labels: Tensor, *, generator: torch.Generator, samples: int,
                                terms: int | None) -> NLL:
        """Ho et al.'s variational bound per image (``lit_gen.diffusion.likelihood``), EMA weights when kept,
        conditioned on the true labels for a conditional model; ``terms`` of the T - 1 L_t terms (None: all)."""
        net = self.ema.averaged if self.ema is not None else self.unet
        if self.conditional:
            def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
                return net(x_t, t, labels)
        else:
            def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
                return net(x_t, t)
        schedule = self.objective.schedule
        T = len(schedule)
        if terms is not None and not 1 <= terms <= T - 1:
            raise ValueError(f"terms={terms}: choose 1 .. {T - 1} (the model's T - 1 terms) or leave it unset for all")
        bound = variational_bound(model_fn, self.objective, x, clip_x0=True, terms=terms, generator=generator)
        what = f"VLB over all T={T} terms" if bound.terms == T - 1 else f"VLB, {bound.terms} of T-1={T - 1} terms sampled (unbiased)"
        if self.conditional:
            what += ", conditioned on the true labels"
        return NLL(bound.total, {"prior": bound.prior, "decoder": bound.decoder}, what,
                   {"timesteps": T, "terms": bound.terms, "weights": "ema" if self.ema is not None else "raw"})


def _forget_latent_scale_known(module: Diffusion, incompatible_keys) -> None:
    """After a checkpoint is loaded, whether the latent scale is set is read again from the buffer."""
    module._latent_scale_known = None
