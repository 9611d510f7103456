"""Load a model from a checkpoint alone: the file names its family and holds its constructor arguments.

The class comes from the registry by name, so this module imports no model and models never import
it (a first stage's file is read by ``lit_gen.build``, above both).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lit_gen import registry
from lit_gen.errors import CheckpointError, ConfigError
from lit_gen.signatures import upgrade_arguments

if TYPE_CHECKING:  # annotations only: the class is the registry's
    from lit_gen.models.base import GenerativeModule

log = logging.getLogger(__name__)


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The checkpoint dict, loaded safely (``weights_only=True``); CheckpointError when it is not one."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if path.is_dir():
        last = path / "checkpoints" / "last.ckpt"
        hint = f" (did you mean {last}?)" if last.is_file() else ""
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch.load on damaged bytes raises almost anything (IndexError, KeyError, struct.error, ...)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable lit_gen checkpoint (truncated, corrupt or another format): {first_line}") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no 'state_dict'")
    for key in ("state_dict", "hyper_parameters"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            raise CheckpointError(f"{path} is damaged: its '{key}' is a {type(state[key]).__name__}, not a mapping")
    return state


def model_name(state: dict, path: str | Path = "checkpoint") -> str:
    """The registry name of the family that wrote a checkpoint."""
    info = state.get("lit_gen")
    if not isinstance(info, dict) or "model" not in info:
        raise CheckpointError(f"{path} was not written by lit_gen (no 'lit_gen' entry naming its model family)")
    return info["model"]


def load_model(path: str | Path, map_location="cpu", expect: str | tuple[str, ...] | None = None) -> GenerativeModule:
    """Rebuild the model saved in ``path`` from its hyperparameters and load its weights.

    Args:
        path: a ``.ckpt`` file written by ``lit_gen.fit``.
        map_location: where tensors go (a device or "cpu").
        expect: registry name(s) the checkpoint must be of; another family raises CheckpointError.
    """
    state = read_checkpoint(path, map_location)
    name = model_name(state, path)
    if expect is not None:
        allowed = tuple(registry.canonical("model", e) for e in ((expect,) if isinstance(expect, str) else expect))
        if registry.canonical("model", name) not in allowed:
            raise CheckpointError(f"{path} holds a '{name}' model, but a {' or '.join(allowed)} checkpoint is needed here")
    try:
        cls = registry.resolve("model", name)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    hparams = upgrade_arguments(cls, dict(state.get("hyper_parameters") or {}))  # older files: renamed arguments
    try:
        model = cls(**hparams)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its saved arguments no longer fit {cls.__name__}: {exc}") from None
    try:
        missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{path}: weights do not fit the {cls.__name__} its arguments describe: {str(exc).splitlines()[0]}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the {cls.__name__} its arguments describe "
            f"(missing: {', '.join(missing[:5]) or 'none'}; unexpected: {', '.join(unexpected[:5]) or 'none'})"
        )
    model.eval()
    return model.to(map_location) if not isinstance(map_location, dict) else model
