"""Where a model's loss terms go: step values on logging steps, exact means at the end of each epoch.

Training values appear as ``train/<name>_step`` on the steps whose values reach the loggers and as
``train/<name>_epoch`` (plus the plain ``train/<name>``, which callbacks such as ``ModelCheckpoint``
monitor) once per epoch; validation values as ``val/<name>``, the epoch mean. Epoch means are exact:
weighted sums kept on the device (``RunningMeans``), divided once, over every DDP rank's examples.

``log`` is ``LightningModule.log``: this class decides names, values and when; the module logs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor

from lit_gen.training.running_means import RunningMeans

Stage = Literal["train", "val"]
Log = Callable[..., None]


def shown_values(values: Mapping[str, Tensor], weights: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """The values worth showing for one step: all but the terms that averaged no example of the batch.

    Reading the weights costs one host sync, so call it only on steps whose values are logged.
    """
    if not weights or not values:
        return dict(values)
    names = [name for name in values if name in weights]
    device = next(iter(values.values())).device
    counts = torch.stack([torch.as_tensor(weights[name], device=device) for name in names]).tolist()
    empty = {name for name, count in zip(names, counts) if count <= 0}
    return {name: value for name, value in values.items() if name not in empty}


class TermLog:
    """The loss terms of one model: their epoch sums per stage, and what gets logged from them."""

    def __init__(self) -> None:
        self.means: dict[Stage, RunningMeans] = {"train": RunningMeans(), "val": RunningMeans()}
        self._train_epoch_logged: int | None = None

    def add(self, stage: Stage, epoch: int, values: Mapping[str, Tensor], batch_size: int,
            weights: Mapping[str, Tensor] | None = None) -> None:
        """Add one step's values to the epoch's sums, each weighted by ``weights[name]`` or the batch size."""
        self.means[stage].add(epoch, values, weights, default_weight=batch_size)

    @staticmethod
    def log_step(log: Log, values: Mapping[str, Tensor], batch_size: int,
                 weights: Mapping[str, Tensor] | None = None) -> None:
        """Log a training step's values as ``train/<name>_step`` (the loss also on the progress bar)."""
        for name, value in shown_values(values, weights).items():
            log(f"train/{name}_step", value, prog_bar=name == "loss", on_step=True, on_epoch=False,
                batch_size=batch_size)

    def log_epoch(self, log: Log, stage: Stage, reduce_sum: Callable[[Tensor], Tensor] | None = None) -> None:
        """Log the epoch means of ``stage`` and start its next epoch from zero.

        :param reduce_sum: sums a tensor over DDP ranks (every rank must call this then).
        """
        means = self.means[stage].means(reduce_sum)
        self.means[stage].reset()
        for name, mean in means.items():
            if stage == "train":
                log(f"train/{name}_epoch", mean, prog_bar=name == "loss", on_step=False, on_epoch=True, batch_size=1)
                # The plain name, for callbacks that monitor it (as Lightning provides for on_step + on_epoch values).
                log(f"train/{name}", mean, logger=False, on_step=False, on_epoch=True, batch_size=1)
            else:
                log(f"val/{name}", mean, prog_bar=name == "loss", on_step=False, on_epoch=True, batch_size=1)

    def log_train_epoch(self, log: Log, epoch: int, reduce_sum: Callable[[Tensor], Tensor] | None = None) -> bool:
        """Log training epoch ``epoch``'s means unless they were logged already; returns whether it logged.

        A callback that reads the epoch's metrics runs before the module's own epoch-end hook, so both
        may ask: only the first call logs.
        """
        if self._train_epoch_logged == epoch:
            return False
        self._train_epoch_logged = epoch
        self.log_epoch(log, "train", reduce_sum)
        return True

    def start_train_epoch(self) -> None:
        self._train_epoch_logged = None

    def start_validation(self) -> None:
        self.means["val"].reset()

    # Training sums only: a mid-epoch checkpoint resumes the epoch's means; validation restarts anyway.
    def state_dict(self) -> dict:
        return self.means["train"].state_dict()

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        self.means["train"].load_state_dict(state, device)
