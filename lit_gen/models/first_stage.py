"""A frozen first stage inside a second-stage model: latent diffusion's autoencoder, the code prior's VQ model.

Both second stages keep their first stage the same way: rebuilt from a spec ``{"name": <family>,
"hparams": <its arguments>}`` saved in their own hyperparameters (so a checkpoint samples without the
first stage's file), its weights loaded afterwards (``lit_gen.build`` from the first-stage file, or
the second stage's own checkpoint), frozen and kept in eval mode. The model never opens a file.

The diffusion family's specs written before this module were ``{"model": ..., "hparams": ...}``:
``stage_from_spec`` reads both forms.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lit_gen import registry
from lit_gen.errors import CheckpointError, ConfigError
from lit_gen.signatures import plain, upgrade_arguments


def first_stage_spec(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """The spec a second stage saves for a first stage of family ``name`` with ``hparams``."""
    return {"name": registry.canonical("model", name), "hparams": plain(hparams)}


def stage_from_spec(path: str, spec: dict[str, Any] | None, needs: type, what: str, example: str) -> nn.Module:
    """The untrained, frozen first stage a spec describes, refused unless it offers the ``needs`` Protocol.

    ``what`` says what the second stage needs of it ("an autoencoder with encode/decode") and
    ``example`` a config that trains one; both go into the error a wrong checkpoint gets.
    """
    if spec is None:
        raise ConfigError(f"model.first_stage: {path} has not been read: a model never opens files itself. Build it "
                          "with lit_gen.build.build_model (python -m lit_gen.fit does), which reads the first-stage "
                          "checkpoint and passes its first_stage_spec and weights")
    name = spec.get("name", spec.get("model")) if isinstance(spec, dict) else None
    try:
        cls = registry.resolve("model", name)
        stage = cls(**upgrade_arguments(cls, spec["hparams"]))  # a spec saved before an argument changed
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"model.first_stage: the saved first_stage_spec cannot rebuild its first stage: {exc}") from None
    if not isinstance(stage, needs):
        raise CheckpointError(
            f"model.first_stage: {path} holds a '{name}' model, but this needs {what}. Train one first (e.g. "
            f"python -m lit_gen.fit --config {example}) and pass its checkpoint: "
            f"model.first_stage=runs/<name>/<id>/checkpoints/last.ckpt")
    stage.eval()
    stage.requires_grad_(False)  # frozen: out of the optimizer and of DDP's gradient sync
    return stage
