"""A painting as a universal network takes it: read once, checked, and its statistics under the
network's transform (fst/models/universal.py). `fst stylize --style-image` and a fine-tune from a
universal network (fst/training/universal_base.py) both read it here, so a fine-tune starts at
exactly the statistics `fst stylize` would bind.

A painting is data like any photo (`fst.io.images`: size bounds, any mode to RGB, EXIF orientation);
on top of that it must hold a style: big enough for the encoder once resized, and not one flat colour
(its statistics would paint every photo that colour, with no strokes: refused in one line)."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision.transforms.functional as TF

from fst.core.errors import FstError
from fst.io.clips import is_clip
from fst.io.images import open_rgb
from fst.models.universal import UniversalNet

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
    x = TF.to_tensor(img)[None]
    if float(x.flatten(2).std(-1).max()) < FLAT:
        raise FstError(f"{path}: one flat colour: there is no style in it to transfer")
    return x


@torch.no_grad()  # not inference_mode: a fine-tune saves these for backward
def painting_stats(net: UniversalNet, paths: list[Path], size: int = DEFAULT_STYLE_SIZE) -> torch.Tensor:
    """The paintings' statistics under `net`'s transform, (N, K, C) fp32 on `net`'s device: in fp32
    once, whatever dtype the photos then run in."""
    return torch.stack([net.style_stats(load_painting(p, size, net.min_side)) for p in paths])
