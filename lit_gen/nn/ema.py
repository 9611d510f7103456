"""Exponential moving average of a network's weights (Ho et al. sample from an EMA with decay 0.9999).

``EMA`` is an ``nn.Module`` that owns a frozen copy of the network. Registered as a submodule of
a model, the averaged weights and the update counter live in the model's ``state_dict``, so
checkpoints save and restore them with no extra code, and they follow ``.to(device)``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn


class EMA(nn.Module):
    """A running average ``avg <- d * avg + (1 - d) * param`` of a module's parameters.

    Buffers (e.g. normalisation statistics) are copied, not averaged.

    :param model: the network to average; it is deep-copied once, then only read.
    :param decay: the decay ``d`` in [0, 1); larger averages over more steps.
    :param warmup: use ``d_n = min(decay, (1 + n) / (10 + n))`` at update ``n``, so early averages
        are not dominated by the random initial weights (matters when training is short).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        super().__init__()
        assert 0.0 <= decay < 1.0, decay  # model.ema_decay, checked by the config
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


def _forget_host_updates(module: EMA, incompatible_keys) -> None:
    """After a checkpoint is loaded, the host copy is read again from the restored buffer."""
    module._host_updates = None
