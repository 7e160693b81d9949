"""Which styles of a several-style model each output gets: every style, `--style` picks or a `--mix`
blend, as (file-name label, style weights)."""

from __future__ import annotations

import math

import torch

from fst.core.errors import FstError
from fst.models.transformer import style_weights


def style_choices(names: list[str], styles: list[str] | None, mix: str | None) -> list[tuple[str | None, torch.Tensor]]:
    """(file-name label, (N,) style weights) of each output: --style's picks, --mix's blend, or every style."""
    if styles and mix:
        raise FstError("--style and --mix exclude each other (a blend of one style is that style)")
    n = len(names)
    if mix is not None:
        return [(None, style_weights(n, parse_mix(mix, names))[0])]
    picks = [style_index(ref, names) for item in styles or [] for ref in item.split(",")] or list(range(n))
    labels = [None] if len(picks) == 1 else [names[k] for k in picks]
    return [(label, style_weights(n, {k: 1.0})[0]) for label, k in zip(labels, picks)]


def style_index(ref: str, names: list[str]) -> int:
    """A style named by its name or its index."""
    ref = ref.strip()
    if ref in names:
        return names.index(ref)
    if ref.isascii() and ref.isdigit() and int(ref) < len(names):  # str.isdigit alone takes '²'
        return int(ref)
    # Names come from the model file: repr keeps a newline or a terminal escape in one of them inert.
    raise FstError(f"unknown style {ref!r}: this model holds {', '.join(f'{k}={n!r}' for k, n in enumerate(names))}")


def parse_mix(text: str, names: list[str]) -> dict[int, float]:
    """--mix NAME=W,NAME=W as {style index: weight}, the weights scaled to sum 1 here in float64: the
    network's float32 would overflow at 1e300 and turn 1e-50 into 0 (and 0/0 into a black image)."""
    mix: dict[int, float] = {}
    for item in text.split(","):
        ref, eq, weight = item.rpartition("=")
        try:
            value = float(weight)
        except ValueError:
            value = None
        if not eq or value is None:
            raise FstError(f"--mix: {item!r} is not NAME=WEIGHT (e.g. --mix starry_night=0.7,the_scream=0.3)")
        if not 0 <= value < math.inf:
            raise FstError(f"--mix: the weight of {ref.strip()!r} must be a finite number >= 0, got {weight.strip()!r}")
        k = style_index(ref, names)
        if k in mix:
            raise FstError(f"--mix: style {names[k]!r} given twice")
        mix[k] = value
    top = max(mix.values())
    if top == 0:
        raise FstError(f"--mix: every weight in {text!r} is 0; the weights must be >= 0 and not all 0")
    scaled = {k: v / top for k, v in mix.items()}  # largest 1: the sum below cannot overflow
    total = sum(scaled.values())
    return {k: v / total for k, v in scaled.items()}
