"""Numeric argument domains, checked where the arguments arrive (the top of a typed ``__init__``):
a value out of range is one line naming the argument, before any weights load or log folder
exists, instead of a traceback from deep inside torch several steps later."""

from __future__ import annotations

import math

from fst.core.errors import FstError


def at_least(name: str, value: float, low: float) -> None:
    """`value` is finite and >= `low` (NaN fails every comparison, so it is refused too)."""
    if not (math.isfinite(value) and value >= low):
        raise FstError(f"{name} must be >= {low}, got {value}")


def positive(name: str, value: float) -> None:
    """`value` is finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        raise FstError(f"{name} must be > 0, got {value}")
