"""Temporal stability learnt from still photos: stylizing a moved copy of a crop should give the
stylized crop, moved the same way.

    L_temporal = Σ_i M(i) ‖T(W(x) + Δ)(i) − W(T(x))(i)‖² / (3 Σ_i M(i)),   averaged over the batch

T is the transformer network, W a small random motion of the whole crop (shift, rotation, scale and
a smooth local warp: what the camera and the scene do between two video frames), Δ Gaussian pixel
noise (sensor noise and compression, which differ in every frame), and M masks the pixels W brings
in from outside the crop. Wang et al. 2020 ("Consistent Video Style Transfer via Compound
Regularization") train with exactly this pairing; Gupta et al. 2017 showed that the noise term alone
already removes much of the flicker of a network trained on stills. No video and no optical flow are
needed, so every shard set and every style loss can use it.

The moved copy is sampled with reflection at the borders: black bands would be an input the network
never meets in a clip, and those pixels are masked out of the loss anyway. The gradient flows
through both branches, T(W(x) + Δ) and W(T(x)).

Cost: one more forward and backward pass of the transformer per step (not of the VGG): measured in
docs/benchmarks.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Motion:
    """The largest motion drawn, uniformly in ±range; fractions are of the crop's side."""

    shift: float = 0.02  # 2.6 px at a 128 crop, 5 px at 256: a pan between two frames
    rotation_deg: float = 1.0
    scale: float = 0.02  # a zoom in or out by 2 %
    warp: float = 0.005  # the smooth local displacement's amplitude (objects moving on their own)
    warp_cells: int = 4  # its control points per side: one smooth bend across the crop, not a ripple
    noise: float = 0.02  # σ of the pixel noise, in [0, 1] units (≈ 5/255)


MOTION = Motion()


def random_grid(n: int, height: int, width: int, motion: Motion = MOTION,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, H, W, 2) sampling grids for `grid_sample` (align_corners=False): output pixel i of the
    moved image reads the source at grid[i]. Drawn on the CPU (from `generator` if given, so a
    fixed seed gives a fixed motion), then moved to `device`."""
    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator) * 2 - 1

    angle = uniform(n) * math.radians(motion.rotation_deg)
    scale = 1 + uniform(n) * motion.scale
    shift = uniform(n, 2) * motion.shift * 2  # normalised coordinates span 2 per side
    # A rotation by `angle` in pixels is, in coordinates normalised per axis, a rotation with the
    # off-diagonal terms scaled by the aspect ratio.
    aspect = width / height
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin / aspect, shift[:, 0]], -1),
                         torch.stack([sin * aspect, cos, shift[:, 1]], -1)], 1)
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    bend = uniform(n, 2, motion.warp_cells, motion.warp_cells) * motion.warp * 2
    bend = F.interpolate(bend, size=(height, width), mode="bicubic", align_corners=True)
    return (grid + bend.permute(0, 2, 3, 1)).to(device)


def move(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """`images` (B, C, H, W) moved by `grid` (bilinear, borders reflected)."""
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def inside(grid: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) mask of the moved pixels that come from inside the crop (1) rather than its
    reflection (0)."""
    return (grid.abs() <= 1).all(-1, keepdim=True).permute(0, 3, 1, 2).float()


def with_noise(images: torch.Tensor, sigma: float = MOTION.noise, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """`images` plus Gaussian noise of σ `sigma`, kept in [0, 1] as a decoded frame is; drawn on the
    CPU from `generator` when one is given (a fixed noise), else on the images' device."""
    if generator is None:
        noise = torch.randn_like(images)
    else:
        noise = torch.randn(images.shape, generator=generator).to(images.device, images.dtype)
    return (images + sigma * noise).clamp(0, 1)


def temporal_loss(stylized_moved: torch.Tensor, moved_stylized: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image (B,): the masked mean squared difference of T(W(x) + Δ) and W(T(x)) per channel,
    in float32 (as the other terms under mixed precision)."""
    diff = (stylized_moved.float() - moved_stylized.float()).pow(2).sum(1, keepdim=True) * mask
    return diff.flatten(1).sum(1) / (3 * mask.flatten(1).sum(1).clamp_min(1))
