"""Epoch means of logged values, accumulated on the device.

Lightning's ``self.log(..., on_epoch=True)`` costs a fraction of a millisecond per call, which
is as much as a whole training step of a small model. Keeping weighted sums as tensors costs one
multiply and one add per value and no host sync; the means are read once, at the end of the epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

Weight = Tensor | int | float


class RunningMeans:
    """Weighted means of named scalars over one epoch (``epoch`` tags the sums; a new epoch starts afresh).

    Weights let a term that averages part of a batch (e.g. the examples of one timestep quartile)
    count by its own number of examples; a weight of 0 (no such examples) leaves the mean unchanged.
    Plain-number weights (batch sizes) are summed on the host, tensor weights on their device.
    """

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.sums: dict[str, Tensor] = {}
        self.weights: dict[str, Weight] = {}
        self._restored = False  # sums loaded from a checkpoint, maybe onto another device than the values'

    def add(self, epoch: int, values: Mapping[str, Tensor], weights: Mapping[str, Weight] | None = None,
            default_weight: Weight = 1) -> None:
        """Add one step's ``values``, each weighted by ``weights[name]`` (``default_weight`` for the rest)."""
        if epoch != self.epoch:
            self.reset(epoch)
        if self._restored and values:
            self._move_to(next(iter(values.values())).device)
        for name, value in values.items():
            weight = default_weight if weights is None else weights.get(name, default_weight)
            value = value.detach()
            weighted = (value if value.dtype == torch.float32 else value.float()) * weight
            if name in self.sums:  # out of place: a state_dict taken earlier may share these tensors
                self.sums[name] = self.sums[name] + weighted
                self.weights[name] = self.weights[name] + weight
            else:
                self.sums[name] = weighted
                self.weights[name] = weight.float() if isinstance(weight, Tensor) else weight

    def reset(self, epoch: int | None = None) -> None:
        self.epoch = epoch
        self.sums, self.weights = {}, {}
        self._restored = False

    def means(self, reduce_sum: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
        """The mean of each value seen, skipping values whose total weight is 0 (one host sync).

        :param reduce_sum: sums a tensor over DDP ranks, for means over every rank's examples.
        """
        if not self.sums:
            return {}
        names = list(self.sums)
        sums = torch.stack([self.sums[name] for name in names])
        weights = torch.stack([torch.as_tensor(self.weights[name], dtype=torch.float32, device=sums.device)
                               for name in names])
        if reduce_sum is not None:
            sums, weights = reduce_sum(sums), reduce_sum(weights)
        present = (weights > 0).tolist()
        means = sums / weights.clamp(min=torch.finfo(weights.dtype).tiny)
        return {name: means[i] for i, name in enumerate(names) if present[i]}

    def _move_to(self, device: torch.device) -> None:
        self.sums = {k: v.to(device) for k, v in self.sums.items()}
        self.weights = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.weights.items()}
        self._restored = False

    # A mid-epoch checkpoint keeps the partial sums, so a resumed epoch's means cover all its steps.
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "sums": {k: v.detach().cpu() for k, v in self.sums.items()},
                "weights": {k: torch.as_tensor(v, dtype=torch.float32).detach().cpu() for k, v in self.weights.items()}}

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        self.epoch = state.get("epoch")
        self.sums = {k: v.to(device) for k, v in state.get("sums", {}).items()}
        self.weights = {k: v.to(device) for k, v in state.get("weights", {}).items()}
        self._restored = bool(self.sums)
