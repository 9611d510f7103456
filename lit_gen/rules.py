"""Rules declared beside an argument, enforced once where a config enters lit_gen.

    lr: Annotated[float, Range(gt=0)]          # or the alias PositiveFloat
    dropout: Annotated[float, Range(ge=0, lt=1)]

``lit_gen.signatures`` reads the ``Annotated`` metadata of every constructor argument a config
section sets and raises ``ConfigError`` naming the key, the value and the rule. Code below that
boundary does not check the value again; it may assert the invariant for callers that build
objects in Python without a config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class Range:
    """An interval a number must lie in: ``ge`` / ``gt`` below, ``le`` / ``lt`` above (None: open)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __post_init__(self) -> None:
        assert self.ge is None or self.gt is None, "give ge or gt, not both"
        assert self.le is None or self.lt is None, "give le or lt, not both"

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def __str__(self) -> str:
        low = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        high = ("]", self.le) if self.le is not None else (")", self.lt) if self.lt is not None else None
        if low and high:
            return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
        if low:
            return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}"
        if high:
            return f"{'<=' if high[0] == ']' else '<'} {high[1]:g}"
        return "any number"


#: The rules most arguments need, by name.
PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
#: A share or a decay: 0 allowed, 1 not (dropout, EMA decay, validation fraction).
Fraction = Annotated[float, Range(ge=0, lt=1)]


@dataclass(frozen=True)
class Component:
    """An argument that is a registered part with its own settings, a config section of its own:
    ``objective: {name: flow, time_sampling: uniform}`` (or just ``objective: flow`` for its defaults).

    ``kind`` names the registry table (``lit_gen.registry``); the section's other keys are checked
    against that entry's constructor, and the argument arrives complete: ``{name, every argument}``.
    """

    kind: str
