"""A painting given as a style image (`fst stylize --style-image`, `fst export --style-image`): read
once, checked, as (1, 3, H, W) in [0, 1].

A painting is data like any photo (`fst.io.images`: size bounds, any mode to RGB, EXIF orientation);
on top of that it must hold a style: big enough for the encoder once resized, and not one flat colour
(its statistics would paint every photo that colour, with no strokes: refused in one line). Here, not
in `fst.stylize`, because `fst export` bakes a painting into an artefact with the same checks."""

from __future__ import annotations

from pathlib import Path

import torch

from fst.core.errors import FstError
from fst.io.clips import is_clip
from fst.io.images import open_rgb
from fst.io.pixels import to_tensor

DEFAULT_STYLE_SIZE = 512  # the painting's long side when its statistics are taken (AdaIN's and WCT's)
FLAT = 1.0 / 255  # a painting whose every channel varies less than one 8-bit level holds no style


def load_painting(path: Path, size: int, min_side: int) -> torch.Tensor:
    """The painting at `path` as (1, 3, H, W) in [0, 1], its long side resized to `size` (0 keeps it)."""
    path = Path(path)
    if path.is_dir():
        raise FstError(f"{path}: a folder; --style-image takes one painting (repeat it for several)")
    if is_clip(path):
        raise FstError(f"{path}: a video clip; --style-image takes a painting (an image file)")
    img = open_rgb(path, draft=size or None)
    if size:
        scale = size / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), resample=3)
    if min(img.size) < min_side:
        raise FstError(f"{path}: {img.width}x{img.height} after resizing to a long side of {size}: too small for "
                       f"a style image (at least {min_side} px a side)")
    x = to_tensor(img).contiguous()[None]
    if float(x.flatten(2).std(-1).max()) < FLAT:
        raise FstError(f"{path}: one flat colour: there is no style in it to transfer")
    return x
