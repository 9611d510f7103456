"""Configs: YAML files with ``extends:``, command-line overrides, and validation against constructors.

A config has these sections::

    extends: base.yaml          # optional, a path relative to this file; chains are allowed
    name: vae_mnist             # run name: runs/<name>/<id>/
    seed: 0
    model: {name: vae, ...}     # registry name + the model's constructor arguments
    data: {name: mnist, ...}    # registry name + the datamodule's constructor arguments
    trainer: {...}              # lightning.Trainer arguments
    run: {...}                  # RunSettings: output folder, sample grids, checkpoints
    logger: {...}               # LoggerSettings: W&B project, mode, tags
    eval: {...}                 # EvalSettings: FID during training, report.md

Overrides come in the three forms W&B agents pass: ``a.b=v`` (``${args_no_hyphens}``),
``--a.b=v`` (``${args}``) and ``--a.b v`` (``${args_no_equals}``); a nested sweep parameter comes
as one dict literal, ``model={'beta': 0.5}``, and merges like ``model.beta=0.5``.

Every key is checked before anything is built: unknown keys, wrong types and unknown registry
names raise ``ConfigError`` naming the key, the value and the valid choices.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lit_gen import registry
from lit_gen.errors import ConfigError
from lit_gen.metrics.protocol import DEFAULT_STATS_CACHE_DIR, parse_feature_spec
from lit_gen.registry import did_you_mean
from lit_gen.rules import NonNegativeInt, PositiveInt, Range
from lit_gen.signatures import Renamed, check_arguments, check_moved, check_renamed, coerce, parameters, plain, type_hints

SECTIONS = ("name", "seed", "model", "data", "trainer", "run", "logger", "eval")

# Trainer arguments lit_gen sets itself; a config that sets them would be silently overridden.
TRAINER_RESERVED = {
    "logger": "use the logger: section",
    "callbacks": "lit_gen adds its own callbacks",
    "default_root_dir": "use run.output_dir",
    "enable_checkpointing": "use run.save_last / run.checkpoint_every_n_steps",
    "plugins": "lit_gen sets the checkpoint plugin",
}


@dataclass
class RunSettings:
    """The ``run:`` section: where a run's files go and what it writes there.

    Args:
        output_dir (str, default "runs"): runs are written to ``<output_dir>/<name>/<id>/``.
        sample_every_n_epochs (int, default 1): write a sample grid every N epochs (0: only at the end).
        num_samples (int, default 64): images in each sample grid.
        sample_options (dict, default {}): keyword arguments for ``model.sample()`` in grids
            (e.g. ``{steps: 50}`` for the diffusion family).
        checkpoint_every_n_steps (int, default 0): also write ``last.ckpt`` every N training steps
            (0: at the end of each epoch only); long jobs on clusters want this.
        monitor (str, default "val/loss"): metric that picks ``best.ckpt`` (lower is better).
        grid_scale (int, default 0): upscale factor of saved grids; 0 picks one so grids are at
            least 256 pixels wide.
        max_nonfinite_steps (int, default 20): optimizer steps with a non-finite loss or gradient
            are skipped; this many in a row stop training with an error.
    """

    output_dir: str = "runs"
    sample_every_n_epochs: NonNegativeInt = 1
    num_samples: NonNegativeInt = 64
    sample_options: dict = field(default_factory=dict)
    checkpoint_every_n_steps: NonNegativeInt = 0
    monitor: str = "val/loss"
    grid_scale: NonNegativeInt = 0
    max_nonfinite_steps: PositiveInt = 20


@dataclass
class LoggerSettings:
    """The ``logger:`` section: W&B settings (a CSV log is always written to the run folder).

    Args:
        wandb (bool, default True): log to Weights & Biases.
        mode ("auto" | "online" | "offline" | "disabled", default "auto"): "auto" logs online when
            an API key is configured (``wandb login`` or ``WANDB_API_KEY``) and offline otherwise
            (``wandb sync`` uploads offline runs later). ``WANDB_MODE`` wins when set.
        project (str, default "lit_gen"): W&B project.
        entity (str | None, default None): W&B entity (user or team); None uses your default.
        group (str | None, default None): W&B group (sweeps set it to the sweep's name).
        tags (list[str], default []): W&B tags.
        run_name (str | None, default None): W&B display name; None uses ``<name>-<id>``.
        log_every_n_steps (int, default 50): how often step metrics are written.
    """

    wandb: bool = True
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "lit_gen"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    run_name: str | None = None
    log_every_n_steps: PositiveInt = 50


@dataclass
class EvalSettings:
    """The ``eval:`` section: FID measured during training, and the report written when a fit ends.

    Args:
        fid_every_n_epochs (int, default 0): measure FID after every N-th training epoch (0: never).
            Logged as ``val/fid`` (Inception) or ``val/fid_<dataset>_classifier`` (domain classifier);
            each measurement's protocol goes to ``fid.jsonl`` in the run folder.
        num_samples (int, default 10000): generated images per measurement (split across DDP ranks).
        batch_size (int, default 250): images per ``sample()`` call and per feature batch.
        feature (str, default "inception"): "inception" (Inception-v3, the published FID) or
            "classifier:<path>" (a classifier from ``python -m lit_gen.metrics.classifier``; its values
            are labelled FID-<dataset>-classifier and never compare with Inception FID).
        fid_weights_path (str | None, default None): Inception weights file
            (weights-inception-2015-12-05-6726825d.pth from torch-fidelity's GitHub release); None looks
            in torch's hub cache.
        antialias (bool, default False): antialiased resize to 299 for Inception; False matches the
            original TensorFlow FID.
        real_split ("train" | "val" | "test", default "test"): the reference images.
        real_count (int | None, default None): reference image count; None uses the whole split.
        sample_options (dict, default {}): keyword arguments for ``model.sample()`` (diffusion: sampler,
            steps, guidance, use_ema).
        cache_dir (str | None, default "~/.cache/lit_gen/fid_stats"): where reference statistics
            are cached (keyed on dataset, split, size, count and extractor); None disables the cache.
        report (bool, default True): write ``report.md`` (config, metrics, loss curves, samples) at the end.
    """

    #: The names these settings had before they matched ``python -m lit_gen.evaluate``'s flags and the FID records.
    RENAMED_ARGUMENTS: ClassVar[dict[str, Renamed]] = {
        "fid_num_samples": Renamed("num_samples", "generated images per FID; evaluate's --num-samples"),
        "fid_batch_size": Renamed("batch_size", "images per sample() call; evaluate's --batch-size"),
        "real_num_samples": Renamed("real_count", "reference images; evaluate's --real-count, the records' real_count"),
        "stats_cache_dir": Renamed("cache_dir", "the reference-statistics cache; evaluate's --cache-dir"),
    }

    fid_every_n_epochs: NonNegativeInt = 0
    num_samples: Annotated[int, Range(ge=2)] = 10000
    batch_size: PositiveInt = 250
    feature: str = "inception"
    fid_weights_path: str | None = None
    antialias: bool = False
    real_split: Literal["train", "val", "test"] = "test"
    real_count: Annotated[int, Range(ge=2)] | None = None
    sample_options: dict = field(default_factory=dict)
    cache_dir: str | None = DEFAULT_STATS_CACHE_DIR
    report: bool = True

    def __post_init__(self) -> None:
        try:
            parse_feature_spec(self.feature)
        except ConfigError as exc:
            raise ConfigError(f"eval.{exc}") from None


@dataclass
class RunConfig:
    """A validated config: every section complete, with the defaults of the classes filled in."""

    name: str
    seed: int
    model: dict[str, Any]
    data: dict[str, Any]
    trainer: dict[str, Any]
    run: RunSettings
    logger: LoggerSettings
    eval: EvalSettings = field(default_factory=EvalSettings)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "model": self.model,
            "data": self.data,
            "trainer": self.trainer,
            "run": dataclasses.asdict(self.run),
            "logger": dataclasses.asdict(self.logger),
            "eval": dataclasses.asdict(self.eval),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(plain(self.to_dict()), sort_keys=False)

    def model_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k != "name"}

    def data_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k != "name"}


# ---------------------------------------------------------------------------------- reading YAML
def read_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> DictConfig:
    """Read a config file and the files it ``extends``, merged parent-first."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        configs = Path("configs")
        if configs.is_dir():
            hint = did_you_mean(path.name, [p.name for p in configs.glob("*.yaml")])
        raise ConfigError(f"config file {str(path)!r} does not exist.{hint}")
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p.name) for p in (*_chain, resolved))
        raise ConfigError(f"{path}: 'extends' forms a cycle: {cycle}")
    try:
        node = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}".rstrip()) from None
    if node is None or not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: a config must be a YAML mapping of sections ({', '.join(SECTIONS)}).")
    parent = node.pop("extends", None)
    if parent is None:
        return node
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'extends' must be one file name, got {parent!r}")
    base = read_yaml(path.parent / parent, (*_chain, resolved))
    base = OmegaConf.create(_without_renamed(OmegaConf.to_container(base, resolve=False),
                                             OmegaConf.to_container(node, resolve=False)))
    return OmegaConf.merge(base, node)


def _without_renamed(base: Any, child: Any) -> Any:
    """``base`` less the sections ``child`` replaces: a section that names another entry (``name:`` changes,
    e.g. ``objective: {name: flow}`` over ``{name: vp, timesteps: 1000}``) starts afresh; the parent's settings
    belong to the entry it named, not to the new one. Other sections merge key by key."""
    if not isinstance(base, dict) or not isinstance(child, dict):
        return base
    out = dict(base)
    for key, value in child.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            if "name" in value and value["name"] != old.get("name"):
                out.pop(key)
            else:
                out[key] = _without_renamed(old, value)
    return out


# ---------------------------------------------------------------------------------- overrides
def parse_value(text: str) -> Any:
    """A command-line value as a Python value: numbers, booleans, null/None, lists and dicts, else the string."""
    stripped = text.strip()
    if stripped in ("null", "None", "none", "~"):
        return None
    if stripped in ("true", "True"):
        return True
    if stripped in ("false", "False"):
        return False
    for convert in (int, float):
        try:
            return convert(stripped)
        except ValueError:
            pass
    if stripped[:1] in "[{(\"'":
        try:
            return ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            try:
                return yaml.safe_load(stripped)
            except yaml.YAMLError:
                raise ConfigError(f"cannot parse the value {text!r}: not a valid list, dict or quoted string") from None
    return text


def split_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """Turn override arguments in any of the three forms into (dotted key, value) pairs."""
    pairs: list[tuple[str, Any]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            body = arg[2:]
            if "=" in body:
                key, value = body.split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                key, value = body, args[i + 1]
                i += 1
            else:
                raise ConfigError(f"override {arg!r} has no value: write --{body}=VALUE or --{body} VALUE")
        elif "=" in arg:
            key, value = arg.split("=", 1)
        else:
            raise ConfigError(f"cannot read the argument {arg!r}: overrides look like a.b=v, --a.b=v or --a.b v")
        key = key.strip()
        if not key or any(not part.isidentifier() for part in key.split(".")):
            raise ConfigError(f"override {arg!r}: {key!r} is not a dotted key such as model.beta")
        pairs.append((key, parse_value(value)))
        i += 1
    return pairs


def apply_overrides(node: DictConfig, args: list[str]) -> DictConfig:
    """Merge command-line overrides into a config; dict values merge into the section like dotted keys."""
    raw = OmegaConf.to_container(node, resolve=False)
    for key, value in split_overrides(args):
        _set_dotted(raw, key.split("."), value)
    return OmegaConf.create(raw)


def _set_dotted(target: dict, parts: list[str], value: Any) -> None:
    *parents, last = parts
    for part in parents:
        child = target.get(part)
        if child is None:
            child = target[part] = {}
        if isinstance(child, str):  # a component given by name (model.objective: vp) gains its first setting
            child = target[part] = {"name": child}
        if not isinstance(child, dict):
            raise ConfigError(f"override {'.'.join(parts)}: {part!r} holds a value, not a section")
        target = child
    old = target.get(last)
    if parents and last == "name" and target.get("name") not in (None, value):
        target.clear()  # a.name=other: another entry, whose settings are not the old entry's (_without_renamed)
        target[last] = value
    elif isinstance(value, dict) and isinstance(old, dict) and "name" in value and value["name"] != old.get("name"):
        target[last] = value
    elif isinstance(value, dict) and isinstance(old, dict):
        for key, item in value.items():
            _set_dotted(old, [str(key)], item)
    else:
        target[last] = value


# ---------------------------------------------------------------------------------- validation
def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, merge, override and validate a config; raise ConfigError naming the first problem."""
    node = read_yaml(path)
    node = apply_overrides(node, list(overrides or []))
    try:
        raw = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: cannot resolve an interpolation: {exc}") from None
    return validate(raw, source=str(path))


def validate(raw: dict[str, Any], source: str = "") -> RunConfig:
    """Check a plain config dict against the registered classes and return a complete RunConfig."""
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(f"unknown top-level key {key!r}. Valid keys: {', '.join(SECTIONS)}." + did_you_mean(key, SECTIONS))
    name = raw.get("name") or (Path(source).stem if source else "run")
    if not isinstance(name, str) or not name.replace("-", "_").replace(".", "_").isidentifier():
        raise ConfigError(f"name: {name!r} must be a simple name (letters, digits, '_', '-', '.')")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: expected an integer, got {seed!r}")

    data = _section(raw, "data")
    data_cls = registry.resolve("data", data.get("name"))
    data_args = check_arguments("data", data_cls, {k: v for k, v in data.items() if k != "name"})
    if "root" in data_args and data.get("root") is None:
        data_args["root"] = os.environ.get("LIT_GEN_DATA", "data")
    if "seed" in data_args and "seed" not in data:
        data_args["seed"] = seed

    model = _section(raw, "model")
    model_cls = registry.resolve("model", model.get("name"))
    model_given = {k: v for k, v in model.items() if k != "name"}
    check_renamed("model", model["name"], model_cls, model_given)
    check_moved("model", model_cls, model_given)
    _fill_from_data(model_given, model_cls, data_cls, data_args)
    model_args = check_arguments("model", model_cls, model_given)
    if hasattr(model_cls, "check_config"):  # a family's rules on settings a config may not ask for
        model_cls.check_config(model_args)

    trainer = check_trainer(_section(raw, "trainer", required=False))
    run = _dataclass_section(raw, "run", RunSettings)
    logger = _dataclass_section(raw, "logger", LoggerSettings)
    eval_settings = _dataclass_section(raw, "eval", EvalSettings)
    return RunConfig(
        name=name,
        seed=seed,
        model={"name": registry.canonical("model", model["name"]), **model_args},
        data={"name": data["name"], **data_args},
        trainer=trainer,
        run=run,
        logger=logger,
        eval=eval_settings,
        source=source,
    )


def _section(raw: dict, key: str, required: bool = True) -> dict:
    value = raw.get(key)
    if value is None:
        if required:
            choices = ", ".join(registry.names(key))
            raise ConfigError(f"the config has no '{key}:' section; it needs at least '{key}: {{name: ...}}' (choices: {choices})")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a section (a mapping), got {value!r}")
    return value


def _fill_from_data(model_given: dict, model_cls: type, data_cls: type, data_args: dict) -> None:
    """Take the image shape from the dataset unless the config states it, and check it when it does."""
    params = parameters(model_cls)
    shape = {"channels": data_cls.channels, "image_size": data_args.get("image_size") or data_cls.native_image_size}
    for key, value in shape.items():
        if key not in params:
            continue
        if model_given.get(key) is None:
            model_given[key] = value
        elif model_given[key] != value:
            raise ConfigError(
                f"model.{key}={model_given[key]!r} does not match the dataset ({data_cls.__name__} gives {key}={value}). "
                f"Remove model.{key} to take it from the data, or set data.image_size."
            )
    classes = model_given.get("num_classes")
    if "num_classes" in params and classes is not None:
        available = data_cls.num_classes
        if available is None:
            raise ConfigError(f"model.num_classes={classes!r}, but {data_cls.__name__} has no class labels; set model.num_classes=null")
        if isinstance(classes, int) and classes > available:
            raise ConfigError(f"model.num_classes={classes} exceeds the {available} classes of {data_cls.__name__}")


def check_trainer(given: dict[str, Any]) -> dict[str, Any]:
    """Check the ``trainer:`` section against ``lightning.Trainer``; only the given keys are kept."""
    import lightning

    for key, why in TRAINER_RESERVED.items():
        if key in given:
            raise ConfigError(f"trainer.{key} cannot be set in a config: {why}")
    params = parameters(lightning.Trainer)
    hints = type_hints(lightning.Trainer.__init__)
    out = {}
    for key, value in given.items():
        if key not in params:
            raise ConfigError(f"trainer.{key}: unknown lightning.Trainer argument." + did_you_mean(key, params))
        out[key] = coerce(f"trainer.{key}", value, hints.get(key, Any), strict=False)
    return out


def _dataclass_section(raw: dict, key: str, cls: type):
    given = _section(raw, key, required=False)
    check_renamed(key, key, cls, given)
    return cls(**check_arguments(key, cls, given))
