"""A painting's statistics under a universal network's transform (fst/models/universal.py), read once
by `fst.io.style_images` (decoded, resized, checked). `fst stylize --style-image` and a fine-tune from
a universal network (fst/training/universal_base.py) both take them here, so a fine-tune starts at
exactly the statistics `fst stylize` would bind."""

from __future__ import annotations

from pathlib import Path

import torch

from fst.io.style_images import DEFAULT_STYLE_SIZE, load_painting
from fst.models.universal import UniversalNet


@torch.no_grad()  # not inference_mode: a fine-tune saves these for backward
def painting_stats(net: UniversalNet, paths: list[Path], size: int = DEFAULT_STYLE_SIZE) -> torch.Tensor:
    """The paintings' statistics under `net`'s transform, (N, K, C) fp32 on `net`'s device: in fp32
    once, whatever dtype the photos then run in."""
    return torch.stack([net.style_stats(load_painting(p, size, net.min_side)) for p in paths])
