"""Stylizing an image too large for one pass: overlapping tiles, one set of instance-norm statistics.

Two things make naive tiling show seams:

1. Instance norm normalises each tile by *its own* mean and variance, so a sky tile and a
   building tile come out with different colours and contrast. `norm_stats` records every
   InstanceNorm2d's per-channel input mean/variance during one pass over the whole image
   (downscaled if it is too large, `stats_side`), and `frozen_norms` makes each layer reuse them
   for every tile, so every tile is normalised as the whole image was.
2. Pixels near a tile's border see reflection padding instead of their real neighbours. Tiles
   overlap by `overlap` pixels and are blended with complementary weights (`ramp`: zero on the
   outer quarter of each overlap, sin^2/cos^2 across the middle half), so each output pixel comes
   from tiles in which it is at least overlap/4 from a border.
3. The net's stride-4 grid: a tile must start on a multiple of 4 (`ALIGN`) to compute what the
   whole-image pass computes; sides are reflect-padded to a multiple of 4 and cropped back.

Receptive field radius, for choosing `overlap`: 22 px for TransformerNet(8, 1), 54 px for the
default (32, 5); influence decays well before that. Measured on a 768^2 photo, tiles of 256, random
nets, statistics from the full image: overlap 64 -> max |diff| 0.0032 for (8, 1), mean 1e-4 and
max 0.018 for (32, 5); overlap 96 -> max 0.002 for (32, 5). Per-tile statistics instead: mean 0.05, max 0.8 (visible blocks).
Statistics from a downscaled pass shift the whole image slightly (no seams): mean 0.015 at 384
for a 768 image, so `stats_side` defaults to 1024.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

Stats = dict[nn.InstanceNorm2d, tuple[torch.Tensor, torch.Tensor]]
Model = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_OVERLAP = 96
# TransformerNet downsamples twice by 2: a tile lines up with the whole-image computation only if
# it starts on a multiple of 4 (and the padded image is one), else its strided grid is shifted.
ALIGN = 4
DEFAULT_STATS_SIDE = 1024


def instance_norms(net: nn.Module) -> list[nn.InstanceNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]


def image_stat_modules(net: nn.Module) -> list[nn.Module]:
    """Modules other than instance norms whose output depends on whole-image statistics of their input:
    they have `image_stats(x)` and take the whole image's from their `frozen` attribute (the universal
    network's whitening, fst/models/style_transforms.py)."""
    return [m for m in net.modules() if callable(getattr(m, "image_stats", None))]


def alignment(net: nn.Module) -> int:
    """The stride grid tiles must start on: ALIGN, or a network's own `tile_align` (one pool more, one x2 more)."""
    return max([ALIGN, *(int(m.tile_align) for m in net.modules() if hasattr(m, "tile_align"))])


def norm_stats(net: nn.Module, x: torch.Tensor) -> Stats:
    """Per-layer (mean, biased var), each (B, C, 1, 1) fp32, of every InstanceNorm2d's input during net(x);
    and each `image_stat_modules` module's own statistics of its input."""
    stats: Stats = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        var, mean = torch.var_mean(inputs[0].float(), dim=(2, 3), keepdim=True, correction=0)
        stats[module] = (mean, var)

    def record_own(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        stats[module] = module.image_stats(inputs[0])

    handles = [m.register_forward_pre_hook(record) for m in instance_norms(net)]
    handles += [m.register_forward_pre_hook(record_own) for m in image_stat_modules(net)]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return stats


@contextlib.contextmanager
def frozen_norms(net: nn.Module, stats: Stats) -> Iterator[None]:
    """Within the block, each InstanceNorm2d normalises with the recorded statistics, not its input's."""
    norms, own = instance_norms(net), image_stat_modules(net)
    for m in norms:
        mean, var = stats[m]
        m.forward = _frozen_forward(m, mean, var)  # instance attribute shadows the class method
    for m in own:
        m.frozen = stats[m]
    try:
        yield
    finally:
        for m in norms:
            del m.forward
        for m in own:
            m.frozen = None


def _frozen_forward(m: nn.InstanceNorm2d, mean: torch.Tensor, var: torch.Tensor) -> Model:
    scale = torch.rsqrt(var + m.eps)

    def forward(x: torch.Tensor) -> torch.Tensor:
        y = (x.float() - mean) * scale
        if m.affine:
            y = y * m.weight.float()[:, None, None] + m.bias.float()[:, None, None]
        return y.to(x.dtype)

    return forward


def spans(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """[start, end) of tiles covering 0..length, stride tile - overlap, the last flush with the end.
    With `align`, tile and stride are rounded to multiples of it (length must be one already)."""
    tile = tile // align * align
    overlap = -(-overlap // align) * align
    if length <= tile:
        return [(0, length)]
    stride = max(align, tile - overlap)
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return [(s, s + tile) for s in starts]


def ramp(n: int) -> torch.Tensor:
    """Fade-in weights over an overlap of n pixels: 0 for the first quarter (those pixels sit
    nearest this tile's border, where reflection padding stands in for real context), a sin^2
    rise over the middle half, 1 after. ramp(n) + ramp(n).flip(0) == 1 everywhere."""
    margin = n // 4
    rise = n - 2 * margin
    w = torch.ones(n)
    w[:margin] = 0
    w[margin : margin + rise] = torch.sin(0.5 * math.pi * (torch.arange(rise) + 0.5) / rise) ** 2
    return w


def weights_1d(tiles: list[tuple[int, int]], i: int) -> torch.Tensor:
    """Blend weights along one axis for tile i: ramps over its actual overlaps with its neighbours."""
    start, end = tiles[i]
    w = torch.ones(end - start)
    n_in = tiles[i - 1][1] - start if i > 0 else 0
    n_out = end - tiles[i + 1][0] if i + 1 < len(tiles) else 0
    if n_in > 0:
        w[:n_in] = ramp(n_in)
    if n_out > 0:
        w[w.numel() - n_out :] *= ramp(n_out).flip(0)
    return w


def run_tiled(fn: Model, x: torch.Tensor, tile: int, overlap: int, align: int = ALIGN) -> torch.Tensor:
    """fn over overlapping tiles of x (B, C, H, W), blended; fn must keep the spatial size."""
    if not 0 <= overlap < tile // 2 or tile < 2 * align:
        raise ValueError(f"need 0 <= overlap < tile/2 and tile >= {2 * align}, got tile {tile}, overlap {overlap}")
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % align, -w % align
    if pad_h or pad_w:  # reflect up to the alignment, crop at the end
        return run_tiled(fn, F.pad(x, (0, pad_w, 0, pad_h), mode="reflect"), tile, overlap, align)[..., :h, :w]
    rows, cols = spans(h, tile, overlap, align), spans(w, tile, overlap, align)
    out = torch.zeros(x.shape[0], 3, h, w, device=x.device)
    total = torch.zeros(1, 1, h, w, device=x.device)
    for i, (y0, y1) in enumerate(rows):
        wy = weights_1d(rows, i).to(x.device)
        for j, (x0, x1) in enumerate(cols):
            weight = wy[:, None] * weights_1d(cols, j).to(x.device)[None, :]
            out[..., y0:y1, x0:x1] += fn(x[..., y0:y1, x0:x1]).float() * weight
            total[..., y0:y1, x0:x1] += weight
    return out.div_(total)  # in place: one whole fp32 image fewer at the peak


def downscaled(x: torch.Tensor, side: int) -> torch.Tensor:
    """x with its long side at most `side` (antialiased), unchanged if already that small."""
    h, w = x.shape[-2:]
    if max(h, w) <= side:
        return x
    scale = side / max(h, w)
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    return F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False).to(x.dtype)


def stylize_tiled(
    net: nn.Module,
    x: torch.Tensor,
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    stats_side: int = DEFAULT_STATS_SIDE,
) -> torch.Tensor:
    """net(x) computed tile by tile, with norm statistics from a whole-image pass at <= stats_side."""
    stats = norm_stats(net, downscaled(x, stats_side))
    with frozen_norms(net, stats):
        return run_tiled(net, x, tile, overlap, alignment(net))
