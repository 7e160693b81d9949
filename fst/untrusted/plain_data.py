"""Plain data from a file (a pickle's containers, JSON metadata), bounded before anything uses it.

A 21 MB pickle can hold a list of 2^40 strings (40 levels of one list shared twice), JSON can nest
100,000 levels, an int can have 5,000 digits: `repr`, `json.dumps`, `str` and a recursive walk then
run for minutes, run out of memory, or raise a traceback. `check_plain` walks a value without
recursion, counting every visit (a shared list counts each time it is reached), and stops at the
first bound it passes; `parse_json` parses text the same way.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from fst.core.errors import FstError, first_line

# Far above what fst writes: a checkpoint holds a few hundred values nested 6 deep (Lightning's
# loop and callback states), fst.json 30 values nested 3 deep; its longest text is a path.
MAX_VALUES = 100_000
MAX_DEPTH = 32
MAX_TEXT = 1 << 16
MAX_INT_BITS = 64  # every integer fst writes is a step, a count or a size
MAX_DIGITS = 20  # the digits of a 64-bit integer


def check_plain(value: Any, origin: str, what: str, tensors: bool = False) -> None:
    """Refuse, in one line, a value that is more than bounded plain data: None, bools, numbers,
    strings, bytes and containers of them (and tensors, if `tensors`)."""
    stack, seen = [(value, 0)], 1
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FstError(f"{origin}: refused: its {what} is nested more than {MAX_DEPTH} levels deep")
        if item is None or isinstance(item, (bool, float)) or (tensors and isinstance(item, torch.Tensor)):
            continue
        if isinstance(item, int):
            if item.bit_length() > MAX_INT_BITS:
                raise FstError(f"{origin}: refused: its {what} holds an integer of {item.bit_length()} bits")
        elif isinstance(item, (str, bytes)):
            if len(item) > MAX_TEXT:
                raise FstError(f"{origin}: refused: its {what} holds a text of {len(item)} characters")
        elif isinstance(item, (dict, list, tuple, set, frozenset)):
            seen += len(item) * (2 if isinstance(item, dict) else 1)
            if seen > MAX_VALUES:
                raise FstError(f"{origin}: refused: its {what} holds more than {MAX_VALUES} values "
                               "(shared lists that repeat without end?)")
            children = [x for kv in item.items() for x in kv] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        else:
            raise FstError(f"{origin}: refused: its {what} holds a {type(item).__name__}, not plain data")


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(raw: bytes | str, origin: str, what: str) -> Any:
    """JSON text as bounded plain data (`check_plain`): no NaN or Infinity, no integer over 20
    digits, no nesting Python's parser cannot take."""
    try:
        value = json.loads(raw, parse_int=_integer, parse_constant=_constant)
    except RecursionError:
        raise FstError(f"{origin}: refused: its {what} is nested too deeply to parse") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise FstError(f"{origin}: its {what} is not readable JSON: {first_line(e)[:200]}") from None
    check_plain(value, origin, what)
    return value


def describe(value: Any) -> str:
    """A short, safe description of any value for a one-line error (never `repr` of a crafted
    container or a huge int: either can take minutes)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= MAX_INT_BITS else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:60]) + ("..." if len(value) > 60 else "")
    return f"a {type(value).__name__}"
