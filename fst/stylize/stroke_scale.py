"""Stroke size, the user's choice: run the network at a smaller working size, then bring the result back
to the photo's size with the photo's own edges (`--stroke-scale S`).

A network trained on 128-256 px crops paints strokes of a fixed size in pixels: at 1080p they are fine
hatching, where a painting's strokes would span tens of pixels. Running at 1/S of the size makes every
stroke S times larger on the photo; a plain resize back would then blur the photo's edges as much.
Instead the result is upsampled with the photo as guide (the guided filter's linear model, He et al.
2013, fitted at the working size and applied at full size, as the fast guided filter does, Wu et al.
2018): in each small window the output is a_c · Y + b_c, with Y the photo's luminance, so the colours
and strokes come from the network and the sharp edges from the photo at full resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fst.core.color import luminance

RADIUS = 2  # window radius at the working size
EPS = 1e-3  # how much a window's edges must stand out of its noise to be followed (Y in [0, 1])


def working_size(h: int, w: int, scale: float, least: int) -> tuple[int, int]:
    """The size the network runs at for stroke scale `scale`, each side at least `least` px."""
    return max(least, round(h / scale)), max(least, round(w / scale))


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def guided_upsample(out_small: torch.Tensor, guide_small: torch.Tensor, guide: torch.Tensor,
                    radius: int = RADIUS, eps: float = EPS) -> torch.Tensor:
    """`out_small` (B, 3, h, w) at the size of `guide` (B, 3, H, W), following `guide`'s edges: per
    channel c, out_c ≈ a_c · Y + b_c fitted in each (2r+1)² window of the small images, the
    coefficients averaged and upsampled bilinearly, applied to the full-size luminance Y."""
    p, y = out_small.float(), luminance(guide_small.float())
    mean_y, mean_p = _box(y, radius), _box(p, radius)
    cov = _box(y * p, radius) - mean_y * mean_p
    var = _box(y * y, radius) - mean_y * mean_y
    a = cov / (var + eps)
    b = mean_p - a * mean_y
    size = guide.shape[-2:]
    a, b = (F.interpolate(_box(t, radius), size=size, mode="bilinear", align_corners=False) for t in (a, b))
    return (a * luminance(guide.float()) + b).clamp(0, 1)


def at_stroke_scale(run, content: torch.Tensor, scale: float, least: int) -> torch.Tensor:
    """`run` (the network on a batch) on `content` shrunk by `scale`, guided back to its size; `run`
    itself when scale is 1."""
    if scale == 1:
        return run(content)
    h, w = working_size(*content.shape[-2:], scale, least)
    small = F.interpolate(content.float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return guided_upsample(run(small), small, content)
