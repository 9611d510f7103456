"""Values checked against constructor signatures: the check behind every config section.

A constructor's annotated arguments are its config schema: ``check_arguments`` accepts only its
keys, converts values to the annotated types (lists to tuples, ints to floats), enforces the rules
declared beside them (``Annotated[float, Range(gt=0)]``, see ``lit_gen.rules``), fills defaults,
and raises ``ConfigError`` naming the key, the value and what was expected: the one place a
user's value is checked. A given value holding
NaN or an infinity anywhere (a float, an item of a list, a value in a mapping) is refused whatever
the annotation: no setting of lit_gen or Lightning means anything with one, and a NaN compares
false with every bound, so range checks further down would let it through.

A constructor that takes ``**kwargs`` and hands them to its base class's constructor extends its
schema with the base's arguments, so a family states only its own arguments (the optimizer's live
in ``GenerativeModule``, the loader's in ``ImageDataModule``). Where a class wants other defaults
for the arguments it forwards, it lists them in ``ARGUMENT_DEFAULTS`` and forwards with
``forward(cls, kwargs)``.
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

from lit_gen import registry
from lit_gen.errors import ConfigError
from lit_gen.registry import did_you_mean
from lit_gen.rules import Component, Range


def _own_parameters(klass: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """The named arguments of ``klass.__init__`` and whether it takes ``**kwargs``.

    Positional-only arguments are not part of a config: they are what code builds a component around
    (an EMA's network), given by the code that builds it.
    """
    signature = inspect.signature(klass.__init__)
    named = {name: p for name, p in signature.parameters.items()
             if name != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD,
                                                  inspect.Parameter.POSITIONAL_ONLY)}
    return named, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def schema_classes(cls: type) -> list[type]:
    """``cls`` and the base classes its constructor forwards ``**kwargs`` to, nearest first."""
    out: list[type] = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        out.append(klass)
        if not _own_parameters(klass)[1]:
            break
    return out or [cls]


def parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Every argument a config may give ``cls``: its constructor's, then those of the bases it forwards to.

    A parameter's default is the one of the nearest class that states it, in its signature or in
    its ``ARGUMENT_DEFAULTS``.
    """
    out: dict[str, inspect.Parameter] = {}
    overrides: dict[str, Any] = {}
    last = schema_classes(cls)[-1]
    for klass in cls.__mro__[:cls.__mro__.index(last) + 1]:
        for name, value in vars(klass).get("ARGUMENT_DEFAULTS", {}).items():
            overrides.setdefault(name, value)
        if "__init__" not in vars(klass):
            continue
        for name, param in _own_parameters(klass)[0].items():
            if name in out:
                continue
            if name in overrides:
                param = param.replace(default=overrides[name])
            out[name] = param
            overrides.setdefault(name, param.default)  # a nearer signature default hides farther overrides
    unknown = {name for klass in cls.__mro__ for name in vars(klass).get("ARGUMENT_DEFAULTS", {})} - set(out)
    assert not unknown, f"{cls.__name__}: ARGUMENT_DEFAULTS names no argument of its constructor chain: {sorted(unknown)}"
    return out


def forward(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """What ``cls.__init__`` passes to its base: ``given`` over the defaults ``cls`` states for forwarded arguments."""
    own = _own_parameters(cls)[0]
    defaults = {name: p.default for name, p in parameters(cls).items()
                if name not in own and p.default is not inspect.Parameter.empty}
    return {**defaults, **given}


def type_hints(func) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # annotations we cannot resolve are not checked, only the key names are
        return {}


def schema_hints(cls: type) -> dict[str, Any]:
    """The annotations of every argument in ``parameters(cls)``, nearest class first."""
    out: dict[str, Any] = {}
    for klass in reversed(schema_classes(cls)):
        out.update(type_hints(klass.__init__))
    return out


def check_arguments(section: str, cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """Check ``given`` against ``cls.__init__``: known keys, right types, required ones present.

    Returns the complete argument dict (defaults filled in), values converted to the annotated
    types (lists to tuples, ints to floats).
    """
    params = parameters(cls)
    hints = schema_hints(cls)
    for key in given:
        if key not in params:
            raise ConfigError(
                f"{section}.{key}: unknown key for {cls.__name__}. Valid keys: {', '.join(params)}."
                + did_you_mean(key, params)
            )
    out: dict[str, Any] = {}
    for key, param in params.items():
        if key in given:
            out[key] = coerce(f"{section}.{key}", given[key], hints.get(key, Any), default=param.default)
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
            whose = f" for {owner}" if owner != section else ""
            raise ConfigError(
                f"{section}.{old} was renamed to {section}.{renamed.new}{whose} ({renamed.meaning}); "
                f"write {section}.{renamed.new}: {given[old]!r} instead"
            )


class Added(typing.NamedTuple):
    """An argument added after files were written, declared by a class as ``ADDED_ARGUMENTS[name]``:
    ``before`` is the value that reproduces what the class did before the argument existed."""

    before: Any
    meaning: str


def added_arguments(cls: type) -> dict[str, Added]:
    """``{name: Added}`` for the arguments ``cls`` gained after files were written (its ``ADDED_ARGUMENTS``).

    Checkpoints store every argument (``GenerativeModule.save_hyperparameters`` fills the defaults),
    so a saved argument set without the name was written before it existed: ``upgrade_arguments``
    gives it ``before``, not today's default, and the file rebuilds the network it trained.
    """
    return dict(getattr(cls, "ADDED_ARGUMENTS", {}))


class Moved(typing.NamedTuple):
    """An argument that moved into a component's section, declared by a class as ``MOVED_ARGUMENTS[old]``:
    ``section`` is the component argument (e.g. "objective"), ``name`` its key there, ``component`` the
    entry it belongs to (it applies to no other)."""

    section: str
    name: str
    component: str


def moved_arguments(cls: type) -> dict[str, Moved]:
    """``{old name: Moved}`` for the arguments ``cls`` moved into component sections (its ``MOVED_ARGUMENTS``)."""
    return dict(getattr(cls, "MOVED_ARGUMENTS", {}))


def check_moved(section: str, cls: type, given: dict[str, Any]) -> None:
    """Refuse a moved argument in a config, writing out the section it belongs in now."""
    for old, moved in moved_arguments(cls).items():
        if old in given:
            raise ConfigError(
                f"{section}.{old} moved into the {moved.section} section: write {section}.{moved.section}: "
                f"{{name: {moved.component}, {moved.name}: {given[old]!r}}} instead"
            )


def upgrade_arguments(cls: type, saved: dict[str, Any]) -> dict[str, Any]:
    """Arguments saved before a rename or an addition (a checkpoint's hyperparameters, a first-stage
    spec) in today's form: renamed ones under their current names, added ones at the value that
    reproduces the behaviour of their time, so files written before still rebuild their model."""
    out = dict(saved)
    for old, renamed in renamed_arguments(cls).items():
        if old in out:
            value = out.pop(old)
            out.setdefault(renamed.new, value)
    for name, added in added_arguments(cls).items():
        out.setdefault(name, added.before)
    for old, moved in moved_arguments(cls).items():
        if old not in out:
            continue
        value = out.pop(old)
        # A file from before the section existed had the component that is the argument's default; the file's
        # own value wins over that default's settings, a section the file holds wins over the flat value.
        from_file = moved.section in saved
        section = out.get(moved.section, parameters(cls)[moved.section].default)
        section = {"name": section} if isinstance(section, str) else dict(section)
        if registry.canonical(_component_kind(cls, moved.section), section.get("name")) == moved.component:
            if from_file:
                section.setdefault(moved.name, value)
            else:
                section[moved.name] = value
        out[moved.section] = section  # a setting of another component meant nothing: dropped
    return out


def _component_kind(cls: type, argument: str) -> str:
    kind = component_arguments(cls).get(argument)
    if kind is None:
        raise AssertionError(f"{cls.__name__}.{argument} is not a Component argument")
    return kind


def component_arguments(cls: type) -> dict[str, str]:
    """``{argument: registry kind}`` for the constructor arguments of ``cls`` that are component sections."""
    out = {}
    for name, hint in schema_hints(cls).items():
        for rule in typing.get_args(hint):
            if isinstance(rule, Component):
                out[name] = rule.kind
    return out


def complete_sections(cls: type, arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` with each component argument completed (``component_section`` over its default)."""
    out = dict(arguments)
    params = parameters(cls)
    for name, kind in component_arguments(cls).items():
        if name in out:
            out[name] = component_section(f"model.{name}", out[name], kind, default=params[name].default)
    return out


def component_section(path: str, value: Any, kind: str, default: Any = None) -> dict[str, Any]:
    """A component argument (a registered name, or a section ``{name, ...}``) checked and completed:
    ``{"name": canonical name, every constructor argument}``; ConfigError naming ``path`` otherwise.

    ``default`` is the argument's default (a name or a section, e.g. VQ-GAN's ``{name: vq, num_codes: 1024}``):
    a section that names the same entry, or names none, merges into it, as config sections merge into their
    parent's (``model.quantizer.code_dim=8`` keeps the family's 1024 codes)."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, str):
        value = {"name": value}
    base = {"name": default} if isinstance(default, str) else dict(default) if isinstance(default, dict) else {}
    if isinstance(value, dict) and base:
        name = value.get("name", base["name"])
        if registry.canonical(kind, name) == registry.canonical(kind, base["name"]):
            value = {**base, **value, "name": name}
    choices = ", ".join(registry.names(kind))
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        article = "an" if kind[:1] in "aeiou" else "a"
        raise ConfigError(f"{path}: expected {article} {kind} name ({choices}) or a section {{name: ..., <its settings>}}, "
                          f"got {value!r}")
    try:
        cls = registry.resolve(kind, value["name"])
    except ConfigError as exc:
        raise ConfigError(f"{path}.name{str(exc).split('.name', 1)[1]}") from None
    args = check_arguments(path, cls, {k: v for k, v in value.items() if k != "name"})
    return {"name": registry.canonical(kind, value["name"]), **args}


def build_component(kind: str, section: dict[str, Any], *around: Any):
    """The registered part a complete component section (``component_section``'s result) describes, built
    around ``around`` (its positional-only arguments, e.g. the network an EMA averages)."""
    return registry.resolve(kind, section["name"])(*around, **{k: v for k, v in section.items() if k != "name"})


def _default(cls: type, key: str, param: inspect.Parameter) -> Any:
    if dataclasses.is_dataclass(cls) and key in cls.__dataclass_fields__:
        spec = cls.__dataclass_fields__[key]
        if spec.default_factory is not dataclasses.MISSING:
            return spec.default_factory()
    return param.default



class _Mismatch(Exception):
    pass


class _RuleMismatch(_Mismatch):
    """The value has the right type but breaks a declared rule: reported as it is, even inside a union."""


def coerce(path: str, value: Any, annotation: Any, strict: bool = True, finite: bool = True, default: Any = None) -> Any:
    """Check ``value`` against ``annotation`` and convert it; ConfigError naming ``path`` otherwise.

    With ``strict=False`` (Lightning's own arguments) annotations this checker does not know pass.
    With ``finite=True`` a NaN or infinity anywhere in ``value`` is refused, naming where it sits.
    ``default`` is the argument's default, which a component section that names the same entry merges into.
    """
    if finite:
        check_finite(path, value)
    if typing.get_origin(annotation) is typing.Annotated:
        for rule in typing.get_args(annotation)[1:]:
            if isinstance(rule, Component):
                return component_section(path, value, rule.kind, default=default)
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
    if origin is typing.Annotated:
        base, *rules = typing.get_args(annotation)
        text = _describe(base)
        article = {"int": "an integer", "float": "a number"}.get(text, text)
        return " ".join([article, *(str(r) for r in rules if isinstance(r, Range))])
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
    if origin is typing.Annotated:
        converted = _coerce(value, args[0], strict)
        for rule in args[1:]:
            if isinstance(rule, Range) and not rule.holds(converted):
                raise _RuleMismatch(_describe(annotation))
        return converted
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, strict)
            except _RuleMismatch as exc:
                nullable = " (or null)" if type(None) in args else ""
                raise _RuleMismatch(f"{exc}{nullable}") from None
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
            types_ = list(args)
        else:
            types_ = [args[0] if args else Any] * len(value)
        items = []
        for i, (item, item_type) in enumerate(zip(value, types_)):
            try:
                items.append(_coerce(item, item_type, strict))
            except _RuleMismatch as exc:
                raise _RuleMismatch(f"{exc} at item {i}") from None
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
