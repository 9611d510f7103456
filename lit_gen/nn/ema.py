"""Averages of a network's weights over training: the kinds a config's ``model.ema`` section names.

- ``exponential`` (``EMA``): ``avg <- d avg + (1 - d) param`` with a fixed decay (Ho et al. sample from an
  EMA with decay 0.9999), optionally warmed up.
- ``power`` (``PowerEMA``): Karras et al. 2024's power-function averages, one per relative length
  ``sigma_rel``, whose snapshots let ``python -m lit_gen.ema`` build the average of any length after
  training (``lit_gen.nn.post_hoc_ema``).
- ``post_hoc`` (``PostHocEMA``): one such synthesised average, fixed: the weights of a checkpoint that
  ``lit_gen.ema`` wrote, sampled like any other EMA.

Each is an ``nn.Module`` that owns frozen copies of the network. Registered as a submodule of a model,
the averaged weights and the update counter live in the model's ``state_dict``, so checkpoints save
and restore them with no extra code, and they follow ``.to(device)``. The network is the first,
positional-only argument of each constructor: a config gives the rest (``lit_gen.registry.EMAS``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Annotated

import torch
from torch import Tensor, nn

from lit_gen.nn.post_hoc_ema import beta_at, gamma_of
from lit_gen.rules import Fraction, PositiveInt, Range

#: The format of a power EMA's snapshot file (``PowerEMA.snapshot``).
SNAPSHOT_FORMAT = "lit_gen.ema_snapshot/1"
#: A relative length sigma_rel: a profile narrower than the whole run (sqrt(1/12) is a plain mean).
SigmaRel = Annotated[float, Range(gt=0, lt=0.2886)]


class EMA(nn.Module):
    """A running average ``avg <- d * avg + (1 - d) * param`` of a module's parameters.

    Buffers (e.g. normalisation statistics) are copied, not averaged.

    Args:
        model: the network to average; it is deep-copied once, then only read.
        decay (float, default 0.9999): the decay ``d`` in [0, 1); larger averages over more steps. A
            model built with decay 0 keeps no average at all.
        warmup (bool, default True): use ``d_n = min(decay, (1 + n) / (10 + n))`` at update ``n``, so
            early averages are not dominated by the random initial weights (matters when training is short).
    """

    kind = "exponential"

    def __init__(self, model: nn.Module, /, decay: Fraction = 0.9999, warmup: bool = True) -> None:
        super().__init__()
        assert 0.0 <= decay < 1.0, decay  # model.ema.decay, checked by the config
        self.decay = decay
        self.warmup = warmup
        # It follows the parent's train/eval mode like any submodule (Lightning warns about modules
        # left in eval mode); code that samples with it switches it to eval, as for any network.
        self.averaged = copy.deepcopy(model)
        self.averaged.requires_grad_(False)  # never trained: the optimizer and DDP skip it
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        # A host copy of num_updates: reading the buffer each step would stall a GPU's launch queue.
        self._host_updates: int | None = 0
        self.register_load_state_dict_post_hook(_forget_host_updates)

    def current_decay(self) -> float:
        """The decay the next ``update`` will use."""
        if not self.warmup:
            return self.decay
        if self._host_updates is None:
            self._host_updates = int(self.num_updates)
        n = self._host_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (call once after each optimizer step)."""
        decay = self.current_decay()
        avg_params = list(self.averaged.parameters())
        params = [p.detach() for p in model.parameters()]
        if len(avg_params) != len(params):
            raise ValueError("EMA.update got a model with a different structure than the one it averages")
        # lerp(avg, p, 1 - d) == d * avg + (1 - d) * p, done for all tensors at once.
        torch._foreach_lerp_(avg_params, [p.to(a.dtype) for a, p in zip(avg_params, params)], 1.0 - decay)
        for avg_buf, buf in zip(self.averaged.buffers(), model.buffers()):
            avg_buf.copy_(buf)
        self.num_updates += 1
        if self._host_updates is not None:
            self._host_updates += 1

    def snapshot_due(self) -> bool:
        """An exponential EMA keeps no snapshots (only a power EMA's can be combined after training)."""
        return False

    @contextlib.contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the averaged weights into ``model`` (restored on exit).

        Useful for code that only knows the live network; sampling code can instead call
        ``self.averaged`` directly, which needs no swap.
        """
        backup: list[Tensor] = [p.detach().clone() for p in model.parameters()]
        with torch.no_grad():
            for p, a in zip(model.parameters(), self.averaged.parameters()):
                p.copy_(a)
        try:
            yield model
        finally:
            with torch.no_grad():
                for p, b in zip(model.parameters(), backup):
                    p.copy_(b)


class PowerEMA(nn.Module):
    """Karras et al. 2024's power-function EMAs (EDM2, section 3): one average per ``sigma_rels`` entry.

    The average of exponent gamma (``lit_gen.nn.post_hoc_ema.gamma_of(sigma_rel)``) is updated at its
    t-th update with decay (1 - 1/t)^(gamma + 1), so at every step it weighs the past with the profile
    tau^gamma: the same relative length whatever the run's length. Their weights, saved every
    ``snapshot_every`` updates (``lit_gen.callbacks.ema_snapshots``), let ``python -m lit_gen.ema`` build
    the average of any length after training. Samples during training use the first profile.

    Args:
        model: the network to average; deep-copied once per profile, then only read.
        sigma_rels (tuple[float, ...], default (0.05, 0.10)): the relative lengths tracked (EDM2's pair).
        snapshot_every (int, default 1000): updates between snapshots of every profile's weights.
    """

    kind = "power"

    def __init__(self, model: nn.Module, /, sigma_rels: tuple[SigmaRel, ...] = (0.05, 0.10),
                 snapshot_every: PositiveInt = 1000) -> None:
        super().__init__()
        assert sigma_rels and snapshot_every >= 1, (sigma_rels, snapshot_every)  # the config checks the rules
        self.sigma_rels = tuple(float(s) for s in sigma_rels)
        self.gammas = tuple(gamma_of(s) for s in self.sigma_rels)
        self.snapshot_every = snapshot_every
        self.profiles = nn.ModuleList(copy.deepcopy(model).requires_grad_(False) for _ in self.sigma_rels)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._host_updates: int | None = 0  # a host copy: reading the buffer each step would stall a GPU
        self.register_load_state_dict_post_hook(_forget_host_updates)

    @property
    def averaged(self) -> nn.Module:
        """The network that samples during training: the first profile's average."""
        return self.profiles[0]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move every profile towards ``model``'s weights (once after each optimizer step)."""
        if self._host_updates is None:
            self._host_updates = int(self.num_updates)
        t = self._host_updates + 1
        params = [p.detach() for p in model.parameters()]
        for profile, gamma in zip(self.profiles, self.gammas):
            avg = list(profile.parameters())
            if len(avg) != len(params):
                raise ValueError("PowerEMA.update got a model with a different structure than the one it averages")
            torch._foreach_lerp_(avg, [p.to(a.dtype) for a, p in zip(avg, params)], 1.0 - beta_at(t, gamma))
            for avg_buf, buf in zip(profile.buffers(), model.buffers()):
                avg_buf.copy_(buf)
        self.num_updates += 1
        self._host_updates = t

    def snapshot_due(self) -> bool:
        """Whether the update just made completes a snapshot period."""
        return self._host_updates is not None and self._host_updates > 0 and self._host_updates % self.snapshot_every == 0

    def snapshot(self) -> dict:
        """Every profile's weights at this update, as plain tensors on the CPU (a checkpoint-safe dict)."""
        return {"format": SNAPSHOT_FORMAT, "step": int(self.num_updates),
                "profiles": [{"sigma_rel": s, "gamma": g, "state_dict": {k: v.detach().cpu().clone()
                                                                         for k, v in p.state_dict().items()}}
                             for s, g, p in zip(self.sigma_rels, self.gammas, self.profiles)]}


class PostHocEMA(nn.Module):
    """One average built after training from a power EMA's snapshots (``python -m lit_gen.ema``): fixed.

    It holds the synthesised weights and samples like any EMA; ``update`` leaves them alone (training on
    from such a checkpoint changes the raw weights only). Its arguments record where it came from, so each
    is required: ``python -m lit_gen.ema`` writes them all.

    Args:
        model: the network whose weights it holds (deep-copied; the checkpoint's weights replace them).
        sigma_rel (float): the relative length it averages over.
        step (int): the training step it is the average at.
        sources (int): the snapshot averages it was combined from; relative_error (float): the L2 distance
            of the combined profile from the wanted one, relative to it (``lit_gen.nn.post_hoc_ema.synthesis``).
    """

    kind = "post_hoc"

    def __init__(self, model: nn.Module, /, sigma_rel: SigmaRel, step: PositiveInt, sources: PositiveInt,
                 relative_error: Annotated[float, Range(ge=0)]) -> None:
        super().__init__()
        self.sigma_rel, self.step, self.sources, self.relative_error = sigma_rel, step, sources, relative_error
        self.averaged = copy.deepcopy(model).requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        """A synthesised average is fixed: nothing to do."""

    def snapshot_due(self) -> bool:
        return False


def _forget_host_updates(module: EMA, incompatible_keys) -> None:
    """After a checkpoint is loaded, the host copy is read again from the restored buffer."""
    module._host_updates = None
