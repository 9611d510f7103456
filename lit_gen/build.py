"""Build a model from its registry name and constructor arguments, reading the first-stage file it names.

Models never read files. A family trained on top of another one (latent diffusion, the code prior)
takes its first stage as a spec (the stage's registry name and arguments) and rebuilds the module
from the registry; its weights travel inside the model's own checkpoints. Only when a model is
built for the first time from a config, with ``first_stage: <path>`` and no spec yet, is the
first-stage checkpoint read: here, above the models, so ``lit_gen.models`` never imports
``lit_gen.checkpoints`` and the dependencies point one way (CLIs -> build -> checkpoints/models).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lit_gen import registry
from lit_gen.checkpoints import model_name, read_checkpoint
from lit_gen.errors import CheckpointError, ConfigError
from lit_gen.models.base import GenerativeModule
from lit_gen.signatures import plain, upgrade_arguments


def build_model(name: str, kwargs: Mapping[str, Any]) -> GenerativeModule:
    """The model registered as ``name``, built from ``kwargs`` (the config's ``model:`` section).

    A ``first_stage`` path without a ``first_stage_spec`` is resolved here: the checkpoint is read,
    its family and arguments become the model's ``first_stage_spec`` (saved with the model, so a
    checkpoint rebuilds it without the file) and its weights are loaded into ``model.first_stage``.

    Raises:
        ConfigError: unknown name (from the registry) or arguments the model refuses.
        CheckpointError: a first-stage file that is missing, unreadable or does not fit its spec.
    """
    cls = registry.resolve("model", name)
    kwargs = dict(kwargs)
    path = kwargs.get("first_stage")
    weights = None
    if path is not None and kwargs.get("first_stage_spec") is None:
        try:
            state = read_checkpoint(path, map_location="cpu")
            stage_name = model_name(state, path)
        except CheckpointError as exc:
            raise CheckpointError(
                f"model.first_stage: {exc}. Train the first stage first (e.g. python -m lit_gen.fit --config "
                f"configs/vqvae_digits.yaml) and pass its checkpoint: "
                f"model.first_stage=runs/<name>/<id>/checkpoints/last.ckpt"
            ) from None
        stage_args = plain(state.get("hyper_parameters") or {})
        try:  # a stage saved before an argument's rename: its spec takes the current names
            stage_args = upgrade_arguments(registry.resolve("model", stage_name), stage_args)
        except ConfigError:  # an unknown family: the model's own check names it and the fix
            pass
        kwargs["first_stage_spec"] = cls.first_stage_spec_for(stage_name, stage_args)
        weights = state["state_dict"]
    model = cls(**kwargs)
    if weights is not None:
        _load_first_stage_weights(model.first_stage, weights, path)
    return model


def _load_first_stage_weights(stage: GenerativeModule, weights: Mapping[str, Any], path: str) -> None:
    """Load a first stage's saved weights into the module its spec rebuilt (all of them, shapes checked)."""
    try:
        missing, unexpected = stage.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"model.first_stage: {path}: weights do not fit the {type(stage).__name__} its "
                              f"arguments describe: {str(exc).splitlines()[0]}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"model.first_stage: {path}: weights do not match the {type(stage).__name__} its arguments describe "
            f"(missing: {', '.join(missing[:5]) or 'none'}; unexpected: {', '.join(unexpected[:5]) or 'none'})"
        )
    stage.eval()
