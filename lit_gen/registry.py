"""The only place where a name from a config becomes a class.

Each table maps a short name to ``"lit_gen.module:Class"``. Modules are imported on lookup, so this
file imports no model and any module may use it without an import cycle. Configs can only name
entries of these tables: no import path from a YAML file or the command line is ever imported.
"""

from __future__ import annotations

import difflib
import importlib

from lit_gen.errors import ConfigError

MODELS: dict[str, str] = {
    "ae": "lit_gen.models.ae:Autoencoder",
    "dae": "lit_gen.models.ae:DenoisingAutoencoder",
    "vae": "lit_gen.models.vae:VAE",
    "vqvae": "lit_gen.models.vqvae:VQVAE",
    "vqgan": "lit_gen.models.vqgan:VQGAN",
    "prior": "lit_gen.models.prior:CodePrior",
    "diffusion": "lit_gen.models.diffusion:Diffusion",
}

DATAMODULES: dict[str, str] = {
    "digits": "lit_gen.data.digits:DigitsDataModule",
    "mnist": "lit_gen.data.mnist:MNISTDataModule",
    "cifar10": "lit_gen.data.cifar10:CIFAR10DataModule",
    "celeba": "lit_gen.data.celeba:CelebADataModule",
}

#: The training objectives of the diffusion family (``model.objective``).
OBJECTIVES: dict[str, str] = {
    "vp": "lit_gen.diffusion.objectives:VPObjective",
    "edm": "lit_gen.diffusion.objectives:EDMObjective",
    "flow": "lit_gen.diffusion.objectives:FlowObjective",
}

#: The averages of the weights a family may keep (``model.ema``).
EMAS: dict[str, str] = {
    "exponential": "lit_gen.nn.ema:EMA",
    "power": "lit_gen.nn.ema:PowerEMA",
    "post_hoc": "lit_gen.nn.ema:PostHocEMA",
}

#: The quantizers of the VQ families (``model.quantizer``).
QUANTIZERS: dict[str, str] = {
    "vq": "lit_gen.nn.quantizers.vq:VectorQuantizer",
    "fsq": "lit_gen.nn.quantizers.fsq:FiniteScalarQuantizer",
    "lfq": "lit_gen.nn.quantizers.lfq:LookupFreeQuantizer",
}

TABLES: dict[str, dict[str, str]] = {"model": MODELS, "data": DATAMODULES, "objective": OBJECTIVES, "ema": EMAS,
                                     "quantizer": QUANTIZERS}

#: Other names users type for an entry: the names it had before (configs, checkpoints and sweeps written
#: with them keep working).
ALIASES: dict[str, dict[str, str]] = {"model": {"ddpm": "diffusion"}, "objective": {"ddpm": "vp"}}


def did_you_mean(value: str, choices) -> str:
    """A " Did you mean 'x'?" hint for a mistyped name, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def names(kind: str) -> list[str]:
    """The registered names of one kind (a key of ``TABLES``), sorted (aliases left out)."""
    return sorted(TABLES[kind])


def canonical(kind: str, name: str) -> str:
    """The registered name behind ``name``: itself, or the entry an alias stands for."""
    return ALIASES.get(kind, {}).get(name, name) if isinstance(name, str) else name


def _import(target: str):
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    if not hasattr(module, attr):
        # Only our own table can cause this, so it is a bug, not a user error.
        raise ImportError(f"registry entry {target!r}: module has no attribute {attr!r}")
    return getattr(module, attr)


def resolve(kind: str, name: str):
    """The class registered as ``name`` in the ``kind`` table; a ConfigError that lists the choices otherwise."""
    table = TABLES[kind]
    name = canonical(kind, name)
    if not isinstance(name, str) or name not in table:
        known = [*table, *ALIASES.get(kind, {})]
        raise ConfigError(
            f"{kind}.name: unknown {kind} {name!r}. Valid choices: {', '.join(sorted(table))}."
            + did_you_mean(name, known)
        )
    return _import(table[name])


def name_of(cls: type, kind: str = "model") -> str:
    """The registered name of a class (the reverse lookup checkpoints use)."""
    target = f"{cls.__module__}:{cls.__qualname__}"
    for name, entry in TABLES[kind].items():
        if entry == target:
            return name
    raise KeyError(f"{target} is not registered as a {kind}")
