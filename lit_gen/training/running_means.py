"""Epoch means of logged values, accumulated on the device.

Lightning's ``self.log(..., on_epoch=True)`` costs a fraction of a millisecond per call, which
is as much as a whole training step of a small model. Keeping weighted sums as tensors costs two
tensor adds per value and no host sync; the means are read once, at the end of the epoch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class RunningMeans:
    """Weighted means of named scalars over one epoch (``epoch`` tags the sums; a new epoch starts afresh).

    Weights let a term that averages part of a batch (e.g. the examples of one timestep quartile)
    count by its own number of examples; a weight of 0 (no such examples) leaves the mean unchanged.
    """

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.sums: dict[str, Tensor] = {}
        self.weights: dict[str, Tensor] = {}

    def add(self, epoch: int, values: dict[str, Tensor], weights: dict[str, Tensor | float]) -> None:
        if epoch != self.epoch:
            self.reset(epoch)
        for name, value in values.items():
            weight = weights[name]
            weighted = value.detach().float() * weight
            if name in self.sums:  # out of place: sums restored from a checkpoint may sit on another device
                self.sums[name] = self.sums[name].to(weighted.device) + weighted
                self.weights[name] = self.weights[name].to(weighted.device) + weight
            else:
                self.sums[name] = weighted
                self.weights[name] = torch.as_tensor(weight, dtype=torch.float32, device=weighted.device).clone()

    def reset(self, epoch: int | None = None) -> None:
        self.epoch = epoch
        self.sums, self.weights = {}, {}

    def means(self, reduce_sum: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
        """The mean of each value seen, skipping values whose total weight is 0 (one host sync).

        :param reduce_sum: sums a tensor over DDP ranks, for means over every rank's examples.
        """
        if not self.sums:
            return {}
        names = list(self.sums)
        sums = torch.stack([self.sums[name] for name in names])
        weights = torch.stack([self.weights[name].to(sums.device) for name in names])
        if reduce_sum is not None:
            sums, weights = reduce_sum(sums), reduce_sum(weights)
        present = (weights > 0).tolist()
        means = sums / weights.clamp(min=torch.finfo(weights.dtype).tiny)
        return {name: means[i] for i, name in enumerate(names) if present[i]}

    # A mid-epoch checkpoint keeps the partial sums, so a resumed epoch's means cover all its steps.
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "sums": {k: v.detach().cpu() for k, v in self.sums.items()},
                "weights": {k: v.detach().cpu() for k, v in self.weights.items()}}

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        self.epoch = state.get("epoch")
        self.sums = {k: v.to(device) for k, v in state.get("sums", {}).items()}
        self.weights = {k: v.to(device) for k, v in state.get("weights", {}).items()}
