"""Read a W&B sweep file and check it against the W&B sweep schema.

The file is plain YAML read with ``yaml.safe_load`` (never OmegaConf: ``${args}`` and friends are
W&B command macros, not interpolations). Every problem a user can make raises ``SweepError`` with
the YAML path of the bad key, the value and the fix, before anything runs.

The schema (https://docs.wandb.ai/guides/sweeps/sweep-config-keys) in short::

    program: lit_gen/fit.py          # shown by W&B; needed when the command uses ${program}
    method: grid | random | bayes
    metric: {name: val/loss, goal: minimize | maximize, target: 0.1}
    parameters:
      lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}
      model:                         # nested: the program gets model={'beta': ..., 'latent_dim': ...}
        parameters:
          beta: {values: [0.5, 1.0]}
          latent_dim: {value: 8}
    early_terminate: {type: hyperband, min_iter: 3, eta: 3}
    command: [${env}, ${interpreter}, -m, lit_gen.fit, --config, configs/x.yaml, ${args_no_hyphens}]
    run_cap: 20
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_gen.errors import SweepError
from lit_gen.registry import did_you_mean
from lit_gen.sweeping.parameters import GRID_DISTRIBUTIONS, Parameter, check_keys, integer, number, parse_parameters

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")

TOP_LEVEL_KEYS = (
    "program", "method", "metric", "parameters", "early_terminate", "command",
    "name", "description", "project", "entity", "run_cap",
    # Accepted because W&B accepts them; they mean nothing to the offline engine.
    "controller", "kind", "apiVersion", "job", "image_uri",
)
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")
HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")


@dataclass(frozen=True)
class Metric:
    """``metric:``: what the sweep optimises. ``target`` ends the sweep once a trial reaches it."""

    name: str
    goal: str = "minimize"
    target: float | None = None

    def reached(self, value: float) -> bool:
        """Whether ``value`` meets ``target`` (never, without a target)."""
        if self.target is None:
            return False
        return value <= self.target if self.goal == "minimize" else value >= self.target


@dataclass(frozen=True)
class HyperbandSpec:
    """``early_terminate: {type: hyperband, ...}``; see ``lit_gen.sweeping.hyperband``.

    Defaults are W&B's schema defaults (``eta: 3``, ``strict: true``), so a file that omits them
    prunes the same trials offline as on W&B's server.
    """

    min_iter: int | None = None
    max_iter: int | None = None
    s: int | None = None
    eta: float = 3.0
    strict: bool = True


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file."""

    name: str
    method: str
    parameters: tuple[Parameter, ...]
    command: tuple[str, ...]
    metric: Metric | None = None
    early_terminate: HyperbandSpec | None = None
    program: str | None = None
    run_cap: int | None = None
    description: str | None = None
    raw: dict = field(default_factory=dict, compare=False)
    source: str = "sweep"

    def nest(self, values: dict[str, Any]) -> dict[str, Any]:
        """Flat ``{name: value}`` -> the run config W&B hands the program (nested keys as dicts)."""
        out: dict[str, Any] = {}
        for param in self.parameters:
            target = out
            for part in param.path[:-1]:
                target = target.setdefault(part, {})
            target[param.path[-1]] = values[param.name]
        return out


DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
COMMAND_MACROS = (
    "env", "interpreter", "program", "args", "args_no_hyphens", "args_no_equals",
    "args_no_boolean_flags", "args_json", "args_json_file", "args_append_hydra", "args_override_hydra",
)
_MACRO = re.compile(r"\$\{([^}]*)\}")


# ----------------------------------------------------------------------------------- loading
def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML file."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML: {exc}") from None
    return parse_sweep(raw, source=str(path), default_name=path.stem)


def parse_sweep(raw: Any, *, source: str = "sweep", default_name: str = "sweep") -> SweepSpec:
    """Validate a sweep config mapping (as ``yaml.safe_load`` returns it) into a ``SweepSpec``."""
    if not isinstance(raw, dict):
        raise SweepError(f"{source}: a sweep file is a mapping with method: and parameters:, got {type(raw).__name__}")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise SweepError(
                f"{source}: unknown top-level key {key!r}. Valid keys: {', '.join(TOP_LEVEL_KEYS[:11])}."
                + did_you_mean(key, TOP_LEVEL_KEYS)
            )
    method = raw.get("method")
    if method not in METHODS:
        if method == "custom":
            raise SweepError(f"{source}: method: custom needs the W&B server; the offline engine runs grid, random or bayes")
        raise SweepError(f"{source}: method: {method!r} is not a search method. Valid choices: {', '.join(METHODS)}."
                         + did_you_mean(method, METHODS))
    if "parameters" not in raw:
        raise SweepError(f"{source}: parameters: is missing; it lists what the sweep searches")
    parameters = tuple(parse_parameters(raw["parameters"], (), source, "parameters"))
    names = [p.name for p in parameters]
    for name in names:
        if names.count(name) > 1:
            raise SweepError(f"{source}: parameter {name!r} is given twice (once nested, once as a dotted key)")
    metric = _metric(raw["metric"], source) if raw.get("metric") is not None else None
    early = _hyperband(raw["early_terminate"], source) if raw.get("early_terminate") is not None else None
    if metric is None and method == "bayes":
        raise SweepError(f"{source}: method: bayes needs metric: {{name: ..., goal: minimize|maximize}} to optimise")
    if metric is None and early is not None:
        raise SweepError(f"{source}: early_terminate needs metric: {{name: ...}} to compare trials")
    if method == "grid":
        for param in parameters:
            if param.distribution not in GRID_DISTRIBUTIONS:
                raise SweepError(
                    f"{source}: parameters.{param.name}: method: grid needs discrete parameters, but this one is "
                    f"{param.distribution}. Use values: [...] (or int_uniform / q_uniform), or method: random or bayes."
                )
    command = _command(raw.get("command"), source)
    program = _optional_str(raw, "program", source)
    if "${program}" in command and not program:
        raise SweepError(f"{source}: the command uses ${{program}}, so program: is required")
    run_cap = raw.get("run_cap")
    if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap < 1):
        raise SweepError(f"{source}: run_cap: must be a positive integer, got {run_cap!r}")
    for key in ("description", "project", "entity"):
        _optional_str(raw, key, source)
    return SweepSpec(
        name=_optional_str(raw, "name", source) or default_name,
        method=method,
        parameters=parameters,
        command=command,
        metric=metric,
        early_terminate=early,
        program=program,
        run_cap=run_cap,
        description=raw.get("description"),
        raw=raw,
        source=source,
    )


def _optional_str(raw: dict, key: str, source: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise SweepError(f"{source}: {key}: must be a string, got {value!r}")
    return value


# ---------------------------------------------------------------------------------- sections
def _metric(raw: Any, source: str) -> Metric:
    if not isinstance(raw, dict):
        raise SweepError(f"{source}: metric: must be a mapping like {{name: val/loss, goal: minimize}}, got {raw!r}")
    check_keys(raw, METRIC_KEYS, f"{source}: metric")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SweepError(f"{source}: metric.name: the name of a logged metric (e.g. val/loss) is required")
    goal = raw.get("goal", "minimize")
    if goal not in GOALS:
        raise SweepError(f"{source}: metric.goal: {goal!r} is not a goal. Valid choices: minimize, maximize."
                         + did_you_mean(goal, GOALS))
    target = raw.get("target")
    if target is not None:
        target = float(number(target, f"{source}: metric.target"))
    return Metric(name=name, goal=goal, target=target)


def _hyperband(raw: Any, source: str) -> HyperbandSpec:
    where = f"{source}: early_terminate"
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: must be a mapping like {{type: hyperband, min_iter: 3}}, got {raw!r}")
    check_keys(raw, HYPERBAND_KEYS, where)
    if raw.get("type") != "hyperband":
        raise SweepError(f"{where}.type: {raw.get('type')!r} is not supported; the only type is hyperband")
    min_iter = raw.get("min_iter")
    max_iter = raw.get("max_iter")
    s = raw.get("s")
    if min_iter is not None:
        min_iter = integer(min_iter, f"{where}.min_iter", minimum=1)
    if max_iter is not None:
        max_iter = integer(max_iter, f"{where}.max_iter", minimum=1)
    if s is not None:
        s = integer(s, f"{where}.s", minimum=1)
    if min_iter is None and max_iter is None:
        raise SweepError(f"{where}: give min_iter (first iteration that can stop a trial) or max_iter and s")
    if max_iter is not None and s is None:
        # W&B uses the max_iter form whenever max_iter is present, even beside min_iter, and needs s there.
        raise SweepError(f"{where}: max_iter needs s, the number of brackets counted back from max_iter")
    eta = float(number(raw.get("eta", 3), f"{where}.eta"))
    if eta <= 1:
        raise SweepError(f"{where}.eta: must be greater than 1 (each band keeps the best 1/eta of trials), got {eta}")
    strict = raw.get("strict", True)  # W&B's schema default: the value at the band, not the best so far
    if not isinstance(strict, bool):
        raise SweepError(f"{where}.strict: must be true or false, got {strict!r}")
    if max_iter is not None and int(max_iter / eta) < 1:
        raise SweepError(f"{where}: max_iter={max_iter} with eta={eta} gives no band; raise max_iter or lower eta")
    return HyperbandSpec(min_iter=min_iter, max_iter=max_iter, s=s, eta=eta, strict=strict)


def _command(raw: Any, source: str) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_COMMAND
    if not isinstance(raw, list) or not raw:
        raise SweepError(f"{source}: command: must be a non-empty list of arguments, got {raw!r}")
    items = []
    for i, item in enumerate(raw):
        if isinstance(item, (dict, list)) or item is None:
            raise SweepError(f"{source}: command[{i}]: each item is one argument (a string), got {item!r}")
        text = str(item)
        whole = text.startswith("${") and text.endswith("}") and text.count("${") == 1
        for match in _MACRO.finditer(text):
            macro = match.group(1)
            if macro.startswith("envvar:"):
                continue
            if macro not in COMMAND_MACROS:
                raise SweepError(f"{source}: command[{i}]: unknown macro ${{{macro}}}. Known: "
                                 + ", ".join("${" + m + "}" for m in COMMAND_MACROS) + "."
                                 + did_you_mean(macro, COMMAND_MACROS))
            if not whole:
                raise SweepError(f"{source}: command[{i}]: {text!r}: W&B expands ${{{macro}}} only as a list item of its own")
        items.append(text)
    return tuple(items)
