"""Values checked against constructor signatures: the check behind every config section.

A constructor's annotated arguments are its config schema: ``check_arguments`` accepts only its
keys, converts values to the annotated types (lists to tuples, ints to floats), fills defaults,
and raises ``ConfigError`` naming the key, the value and what was expected. A given value holding
NaN or an infinity anywhere (a float, an item of a list, a value in a mapping) is refused whatever
the annotation: no setting of lit_gen or Lightning means anything with one, and a NaN compares
false with every bound, so range checks further down would let it through.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import math
import types
import typing
from typing import Any, Literal

from omegaconf import DictConfig, ListConfig, OmegaConf

from lit_gen.errors import ConfigError
from lit_gen.registry import did_you_mean


def parameters(cls: type) -> dict[str, inspect.Parameter]:
    signature = inspect.signature(cls.__init__)
    return {
        name: p
        for name, p in signature.parameters.items()
        if name != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def type_hints(func) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # annotations we cannot resolve are not checked, only the key names are
        return {}


def check_arguments(section: str, cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """Check ``given`` against ``cls.__init__``: known keys, right types, required ones present.

    Returns the complete argument dict (defaults filled in), values converted to the annotated
    types (lists to tuples, ints to floats).
    """
    params = parameters(cls)
    hints = type_hints(cls.__init__)
    for key in given:
        if key not in params:
            raise ConfigError(
                f"{section}.{key}: unknown key for {cls.__name__}. Valid keys: {', '.join(params)}."
                + did_you_mean(key, params)
            )
    out: dict[str, Any] = {}
    for key, param in params.items():
        if key in given:
            out[key] = coerce(f"{section}.{key}", given[key], hints.get(key, Any))
        elif param.default is inspect.Parameter.empty:
            raise ConfigError(f"{section}.{key} is required by {cls.__name__} but missing from the config")
        else:
            # Defaults come from code, not from the user: only their types are converted.
            out[key] = coerce(f"{section}.{key}", plain(_default(cls, key, param)), hints.get(key, Any), strict=False,
                              finite=False)
    return out


class Renamed(typing.NamedTuple):
    """An argument's current name and what it sets, declared by a class as ``RENAMED_ARGUMENTS[old]``."""

    new: str
    meaning: str


def renamed_arguments(cls: type) -> dict[str, Renamed]:
    """``{old name: Renamed}`` for the arguments ``cls`` renamed (its ``RENAMED_ARGUMENTS`` table, if any).

    A class declares the table beside its constructor; the config check refuses the old names and
    ``upgrade_arguments`` maps them in saved arguments, so a later rename only adds a row.
    """
    return dict(getattr(cls, "RENAMED_ARGUMENTS", {}))


def check_renamed(section: str, owner: str, cls: type, given: dict[str, Any]) -> None:
    """Refuse a renamed argument in a config, naming its new key (``owner`` is the family, e.g. 'vqvae')."""
    for old, renamed in renamed_arguments(cls).items():
        if old in given:
            # An error, not a silent alias: the old word may mean something else in another family.
            raise ConfigError(
                f"{section}.{old} was renamed to {section}.{renamed.new} for {owner} ({renamed.meaning}); "
                f"write {section}.{renamed.new}: {given[old]!r} instead"
            )


def upgrade_arguments(cls: type, saved: dict[str, Any]) -> dict[str, Any]:
    """Arguments saved before a rename (a checkpoint's hyperparameters, a first-stage spec) under their
    current names, so files written before the rename still rebuild their model."""
    out = dict(saved)
    for old, renamed in renamed_arguments(cls).items():
        if old in out:
            value = out.pop(old)
            out.setdefault(renamed.new, value)
    return out


def _default(cls: type, key: str, param: inspect.Parameter) -> Any:
    if dataclasses.is_dataclass(cls):
        spec = cls.__dataclass_fields__[key]
        if spec.default_factory is not dataclasses.MISSING:
            return spec.default_factory()
    return param.default



class _Mismatch(Exception):
    pass


def coerce(path: str, value: Any, annotation: Any, strict: bool = True, finite: bool = True) -> Any:
    """Check ``value`` against ``annotation`` and convert it; ConfigError naming ``path`` otherwise.

    With ``strict=False`` (Lightning's own arguments) annotations this checker does not know pass.
    With ``finite=True`` a NaN or infinity anywhere in ``value`` is refused, naming where it sits.
    """
    if finite:
        check_finite(path, value)
    try:
        return _coerce(value, annotation, strict)
    except _Mismatch as exc:
        expected = str(exc) or _describe(annotation)
        raise ConfigError(f"{path}: expected {expected}, got {value!r} ({type(value).__name__})") from None


def check_finite(path: str, value: Any) -> None:
    """Raise ConfigError if ``value`` is or holds (in lists, tuples, mappings) a NaN or an infinity."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: expected a finite number, got {value!r}; NaN and infinities are never valid settings")
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(f"{path}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_finite(f"{path}[{i}]", item)


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _coerce(value: Any, annotation: Any, strict: bool) -> Any:
    if annotation is Any or annotation is inspect.Parameter.empty:
        return plain(value)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, strict)
            except _Mismatch:
                continue
        raise _Mismatch(" or ".join(_describe(a) if a is not type(None) else "null" for a in args))
    if origin is Literal:
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        hint = did_you_mean(value, args) if isinstance(value, str) else ""
        raise _Mismatch(_describe(annotation) + (f" ({hint.strip()})" if hint else ""))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        choices = [m.value for m in annotation]
        if value in choices:
            return value
        raise _Mismatch("one of " + ", ".join(repr(c) for c in choices))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch("true or false")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch("an integer")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch("a number")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Mismatch("a string")
    if origin in (tuple, list, collections.abc.Sequence) or annotation in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(_describe(annotation) + " (a list)")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch(f"a list of {len(args)} values")
            items = [_coerce(v, a, strict) for v, a in zip(value, args)]
        else:
            item_type = args[0] if args else Any
            items = [_coerce(v, item_type, strict) for v in value]
        return tuple(items) if (origin is tuple or annotation is tuple) else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise _Mismatch("a mapping")
        return plain(value)
    if strict:
        raise _Mismatch(_describe(annotation))
    return plain(value)


def plain(value: Any) -> Any:
    """Plain Python containers (no OmegaConf nodes, tuples as lists) for YAML and checkpoints."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value
