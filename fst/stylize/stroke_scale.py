"""Stroke size, the user's choice: run the network at a smaller working size, then bring the result back
to the photo's size with the photo's own fine detail (`--stroke-scale S`).

A network trained on 128-256 px crops paints strokes of a fixed size in pixels: at 1080p they are fine
hatching, where a painting's strokes would span tens of pixels. Running at 1/S of the size makes every
stroke S times larger on the photo; a plain resize back would then blur the photo's edges as much.
Instead the detail the small size lost is put back: the photo's luminance minus its own down-and-up
copy (the top level of a Laplacian pyramid: edges, fine texture) is added to the upsampled result, on
every channel alike, so the strokes and colours come from the network and the sharp edges from the
photo at full resolution. (A guided filter fitted at the small size, He et al. 2013, gave sharp edges
too but averaged the strokes away in flat regions: its linear model has nothing to follow there.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fst.core.color import luminance


def working_size(h: int, w: int, scale: float, least: int) -> tuple[int, int]:
    """The size the network runs at for stroke scale `scale`, each side at least `least` px."""
    return max(least, round(h / scale)), max(least, round(w / scale))


def _resized(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x.float(), size=tuple(size), mode="bilinear", antialias=True, align_corners=False)


def detail_upsample(out_small: torch.Tensor, guide_small: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """`out_small` (B, 3, h, w) at the size of `guide` (B, 3, H, W), with the detail of `guide` that its
    small copy `guide_small` lacks: up(out_small) + Y − up(Y_small), Y the luminance, clamped to [0, 1]."""
    size = guide.shape[-2:]
    detail = luminance(guide.float()) - _resized(luminance(guide_small), size)
    return (_resized(out_small, size) + detail).clamp(0, 1)


def at_stroke_scale(run, content: torch.Tensor, scale: float, least: int) -> torch.Tensor:
    """`run` (the network on a batch) on `content` shrunk by `scale`, brought back to its size with its
    detail (`detail_upsample`); `run` itself when scale is 1."""
    if scale == 1:
        return run(content)
    h, w = working_size(*content.shape[-2:], scale, least)
    small = _resized(content, (h, w))
    return detail_upsample(run(small), small, content)
