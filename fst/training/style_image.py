"""The painting a network learns, as the loss network sees it: decoded, its long side resized to
``style_size``, and checked first (in one line naming the file, before any run folder exists) that
every side still reaches the smallest the VGG layers take (a 4000x6 panorama came out 64x1 and failed
in a max-pool) and that memory can hold it."""

from __future__ import annotations

from pathlib import Path

import torch

from fst.core.errors import FstError
from fst.io.images import open_rgb
from fst.io.pixels import to_tensor
from fst.training.step_memory import check_fits


def resized(size: tuple[int, int], style_size: int) -> tuple[int, int]:
    """`size` with its long side at `style_size` (0 keeps it)."""
    if not style_size:
        return size
    scale = style_size / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def load_style(path: Path, size: int, min_side: int = 1) -> torch.Tensor:
    """The style image as (1, 3, H, W) in [0, 1], its long side resized to `size` (0 keeps it);
    FstError when a side comes out under `min_side` px or the host cannot hold it."""
    img = open_rgb(path)
    w, h = resized(img.size, size)
    if min(w, h) < min_side:
        at = f"{w}x{h} at style_size {size}" if size else "used as it is"
        raise FstError(f"{path}: style image too small: {img.width}x{img.height} ({at}); the loss network's "
                       f"layers need at least {min_side} px a side")
    check_fits(f"{path}: style image at style_size {size}", 1, w, h, torch.device("cpu"))
    if (w, h) != img.size:
        img = img.resize((w, h), resample=3)
    return to_tensor(img).contiguous()[None]
