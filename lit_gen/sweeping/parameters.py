"""Sweep parameters: the W&B forms of one parameter, validated into a ``Parameter``.

A parameter is ``value: x`` (constant), ``values: [...]`` (categorical, with optional
``probabilities``), ``min``/``max`` (int_uniform for two ints, else uniform), or an explicit
``distribution:`` with its keys (see ``DISTRIBUTION_KEYS``; defaults follow W&B's schema). A key
whose spec holds ``parameters:`` nests more parameters. The value checkers here are shared with
``space`` and name the YAML path of whatever is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from lit_gen.errors import SweepError
from lit_gen.registry import did_you_mean
from lit_gen.sweeping.distributions import quantile

# Keys each distribution takes besides ``distribution`` itself; defaults follow W&B's schema.
DISTRIBUTION_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values",),
    "categorical_w_probabilities": ("values", "probabilities"),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "log_uniform": ("min", "max"),
    "log_uniform_values": ("min", "max"),
    "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
    "inv_log_uniform": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma", "q"),
    "beta": ("a", "b"),
    "q_beta": ("a", "b", "q"),
}
DEFAULTS = {"q": 1.0, "mu": 0.0, "sigma": 1.0, "a": 1.0, "b": 1.0}
BOUNDED = {d for d, keys in DISTRIBUTION_KEYS.items() if "min" in keys}
POSITIVE_BOUNDS = {"log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"}
# What W&B's grid search accepts: it turns int_uniform and q_uniform into lists of values.
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")

# W&B's rule for parameter names (config/schema.json).
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Numbers PyYAML (YAML 1.1) leaves as strings: an exponent without a dot or without a sign.
_YAML11_NUMBER_STRING = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


@dataclass(frozen=True)
class Parameter:
    """One searched (or fixed) value. ``path`` is ``("model", "beta")`` for a nested parameter and
    ``("lr",)`` or ``("model.beta",)`` for a top-level key; ``name`` joins it with dots."""

    path: tuple[str, ...]
    distribution: str
    value: Any = None
    values: tuple = ()
    probabilities: tuple[float, ...] | None = None
    min: float | int | None = None
    max: float | int | None = None
    q: float | int = 1.0
    mu: float = 0.0
    sigma: float = 1.0
    a: float = 1.0
    b: float = 1.0

    @property
    def name(self) -> str:
        return ".".join(self.path)




def parse_parameters(raw: Any, prefix: tuple[str, ...], source: str, where: str):
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{source}: {where}: must be a non-empty mapping of parameter names to specs, got {raw!r}")
    for key, spec in raw.items():
        if not isinstance(key, str) or not PARAMETER_NAME.match(key):
            raise SweepError(f"{source}: {where}: {key!r} is not a valid parameter name "
                             "(letters, digits, _ . -; not starting with a digit)")
        here = f"{where}.{key}"
        if not isinstance(spec, dict):
            raise SweepError(f"{source}: {here}: must be a mapping like {{values: [...]}}, {{value: x}} "
                             f"or {{min: a, max: b}}, got {spec!r}")
        if "parameters" in spec:
            extra = sorted(set(spec) - {"parameters"})
            if extra:
                raise SweepError(f"{source}: {here}: a nested parameter holds only parameters:, "
                                 f"but also has {', '.join(extra)}")
            yield from parse_parameters(spec["parameters"], prefix + (key,), source, f"{here}.parameters")
        else:
            yield _parameter(prefix + (key,), spec, f"{source}: {here}")


def _infer_distribution(spec: dict, where: str) -> str:
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
    if "min" in spec and "max" in spec:
        low = number(spec["min"], f"{where}.min")
        high = number(spec["max"], f"{where}.max")
        return "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"
    raise SweepError(f"{where}: cannot tell the distribution: give value: x, values: [...], min: and max:, "
                     "or distribution: (e.g. normal with mu and sigma)")


def _parameter(path: tuple[str, ...], spec: dict, where: str) -> Parameter:
    distribution = spec.get("distribution")
    if distribution is None:
        distribution = _infer_distribution(spec, where)
    elif distribution == "categorical" and "probabilities" in spec:
        distribution = "categorical_w_probabilities"
    if distribution not in DISTRIBUTION_KEYS:
        raise SweepError(f"{where}.distribution: unknown distribution {distribution!r}. Valid choices: "
                         f"{', '.join(DISTRIBUTION_KEYS)}." + did_you_mean(distribution, DISTRIBUTION_KEYS))
    allowed = DISTRIBUTION_KEYS[distribution]
    check_keys(spec, allowed + ("distribution",), where)
    for key in allowed:
        if key not in spec and key not in DEFAULTS:
            raise SweepError(f"{where}: distribution {distribution} needs {key}:")
    fields: dict[str, Any] = {"path": path, "distribution": distribution}
    if "value" in allowed:
        fields["value"] = _plain_value(spec["value"], f"{where}.value")
    if "values" in allowed:
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}.values: must be a non-empty list, got {values!r}")
        fields["values"] = tuple(_plain_value(v, f"{where}.values[{i}]") for i, v in enumerate(values))
    if "probabilities" in allowed:
        fields["probabilities"] = _probabilities(spec["probabilities"], len(fields["values"]), where)
    for key in ("min", "max", "q", "mu", "sigma", "a", "b"):
        if key in allowed:
            value = number(spec.get(key, DEFAULTS.get(key)), f"{where}.{key}")
            fields[key] = value if key in ("min", "max", "q") else float(value)
    if distribution == "int_uniform":
        for key in ("min", "max"):
            if not isinstance(fields[key], int):
                raise SweepError(f"{where}.{key}: int_uniform needs integers, got {fields[key]!r}")
    if distribution in BOUNDED:
        if fields["min"] > fields["max"]:
            raise SweepError(f"{where}: min ({fields['min']}) is greater than max ({fields['max']})")
        if distribution in POSITIVE_BOUNDS and fields["min"] <= 0:
            raise SweepError(f"{where}.min: {distribution} takes the values themselves, so min must be > 0, "
                             f"got {fields['min']} (log_uniform takes exponents instead)")
    if "q" in allowed and fields["q"] <= 0:
        raise SweepError(f"{where}.q: the quantisation step must be > 0, got {fields['q']}")
    if "sigma" in allowed and fields["sigma"] < 0:
        raise SweepError(f"{where}.sigma: must be >= 0, got {fields['sigma']}")
    for key in ("a", "b"):
        if key in allowed and fields[key] <= 0:
            raise SweepError(f"{where}.{key}: the beta distribution needs {key} > 0, got {fields[key]}")
    param = Parameter(**fields)
    _check_draws_finite(param, where)
    return param


def _check_draws_finite(param: Parameter, where: str) -> None:
    """Refuse bounds whose draws overflow (exp(1000) for log_uniform, max - min beyond a float, ...).

    Every quantile function is monotone in u, so its ends bound every value the sweep can draw.
    """
    if param.distribution in ("constant", "categorical", "categorical_w_probabilities"):
        return
    for u in (0.0, 1.0):
        try:
            value = quantile(param, u)
        except (OverflowError, ValueError, ZeroDivisionError):
            value = math.inf
        if not math.isfinite(value):
            raise SweepError(f"{where}: {param.distribution} with these bounds draws values beyond a float's range "
                             f"(at the {'low' if u == 0.0 else 'high'} end); narrow them")


def _probabilities(raw: Any, n: int, where: str) -> tuple[float, ...]:
    if not isinstance(raw, list) or len(raw) != n:
        raise SweepError(f"{where}.probabilities: must be a list of {n} numbers, one per value, got {raw!r}")
    probs = tuple(float(number(p, f"{where}.probabilities[{i}]")) for i, p in enumerate(raw))
    if any(p < 0 for p in probs):
        raise SweepError(f"{where}.probabilities: must be >= 0, got {list(probs)}")
    total = math.fsum(probs)
    if abs(total - 1.0) > 1e-6:
        raise SweepError(f"{where}.probabilities: sum to {total:g}, but they must sum to 1")
    return probs


# ------------------------------------------------------------------------------------ values
def check_keys(raw: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise SweepError(f"{where}: unknown key {key!r}. Valid keys here: {', '.join(allowed)}."
                             + did_you_mean(key, allowed))


def yaml11_spelling(text: str) -> str:
    """How to write a number that PyYAML read as a string so that it reads as a number (1e-4 -> 1.0e-4)."""
    mantissa, exponent = re.split("[eE]", text.strip(), maxsplit=1)
    if "." not in mantissa:
        mantissa += ".0"
    elif mantissa.endswith("."):
        mantissa += "0"
    if exponent[0] not in "+-":
        exponent = "+" + exponent
    return f"{mantissa}e{exponent}"


def number(value: Any, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str) and _YAML11_NUMBER_STRING.match(value.strip()):
            raise SweepError(f"{where}: {value!r} was read as a string: PyYAML (YAML 1.1) needs a dot and a signed "
                             f"exponent in a float. Write {yaml11_spelling(value)} instead of {value}.")
        raise SweepError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SweepError(f"{where}: expected a finite number, got {value!r}")
    return value


def integer(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SweepError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _plain_value(value: Any, where: str) -> Any:
    """A value handed to the program: refuse the YAML 1.1 trap where 1e-4 silently becomes text, and NaN or infinities."""
    if isinstance(value, str) and _YAML11_NUMBER_STRING.match(value.strip()):
        raise SweepError(f"{where}: {value!r} was read as a string: PyYAML (YAML 1.1) needs a dot and a signed "
                         f"exponent in a float. Write {yaml11_spelling(value)} instead of {value}.")
    if isinstance(value, float) and not math.isfinite(value):
        # The program would refuse it anyway (lit_gen.config does), but only after a trial was spent on it.
        raise SweepError(f"{where}: expected a finite number, got {value!r}; NaN and infinities are never valid settings")
    if isinstance(value, list):
        return [_plain_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _plain_value(v, f"{where}.{k}") for k, v in value.items()}
    return value
