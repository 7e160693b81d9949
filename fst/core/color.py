"""Colour spaces: BT.601 luma (what --preserve-color keeps and SSIM compares) and CIELAB (where
the colour metrics measure distance to a painting's palette)."""

from __future__ import annotations

import torch

# BT.601 luma weights, as in JPEG's YCbCr: a grey offset added to RGB changes Y and leaves Cb, Cr alone.
LUMA = (0.299, 0.587, 0.114)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601)."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device)
    return (x * w.view(1, 3, 1, 1)).sum(1, keepdim=True)


# sRGB (D65) -> XYZ, and the D65 white point: IEC 61966-2-1 and CIE 15.
SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750), (0.0193339, 0.1191920, 0.9503041))
D65_WHITE = (0.95047, 1.0, 1.08883)


def srgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> CIELAB (L in [0, 100], a and b roughly in [-128, 127])."""
    x = x.double().clamp(0, 1)
    linear = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    m = torch.tensor(SRGB_TO_XYZ, dtype=x.dtype, device=x.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, linear) / torch.tensor(D65_WHITE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    eps, kappa = 216 / 24389, 24389 / 27
    f = torch.where(xyz > eps, xyz.pow(1 / 3), (kappa * xyz + 16) / 116)
    lab = torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)
    return lab.float()
