"""`fst stylize --color-match`: the painting's RGB statistics given to a universal network's output,
the image-level step of Li et al.'s multi-level WCT (2017) after fst's one feature-level transform.
The painting's pixel statistics are taken once per run (as its feature statistics are, at
--style-size); each output's statistics are its own whole image's, taken after tiles are joined,
so a tiled output is matched as a whole pass's is. `mean-std` moves each channel's mean and standard
deviation to the painting's (AdaIN on pixels); `covariance` moves the mean and the 3x3 colour
covariance (whitening and colouring, WCT on pixels), so the painting's colour correlations come too."""

from __future__ import annotations

from pathlib import Path

import torch

from fst.core.errors import FstError
from fst.io.style_images import load_painting

MODES = ("off", "mean-std", "covariance")
CHUNK = 1 << 20  # pixels summed at once in float64 (24 MB)
EPS = 1e-5  # the least variance an output is divided by: a flat (grey) one is moved, not divided by 0


def moments(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images' RGB mean and covariance as (B, 12): mean, then the 3x3 matrix. Sums in
    float64 (a 4K image's sums in fp32 lose digits that a 3x3 square root then amplifies), over
    CHUNK pixels at a time: a large photo needs no float64 copy of itself."""
    flat = x.flatten(2)
    n = flat.shape[-1]
    total = torch.zeros(x.shape[0], 3, dtype=torch.float64, device=x.device)
    outer = torch.zeros(x.shape[0], 3, 3, dtype=torch.float64, device=x.device)
    for i in range(0, n, CHUNK):
        part = flat[..., i:i + CHUNK].double()
        total += part.sum(-1)
        outer += part @ part.transpose(1, 2)
    mean = total / n
    cov = outer / n - mean[:, :, None] * mean[:, None, :]
    return torch.cat([mean, cov.flatten(1)], 1)


def painting_moments(paths: list[Path], size: int, min_side: int) -> torch.Tensor:
    """(N, 12) moments of each painting, read as its feature statistics are (long side `size`)."""
    return torch.cat([moments(load_painting(p, size, min_side)) for p in paths])


def mixed(stats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(12,) moments of the paintings' pixels pooled with `weights` (summing to 1): a --mix's target is
    the mixture's mean and covariance, which for one weight of 1 is that painting's."""
    w = weights.to(stats)
    mean = (w[:, None] * stats[:, :3]).sum(0)
    second = (w[:, None, None] * (stats[:, 3:].view(-1, 3, 3) + stats[:, :3, None] * stats[:, None, :3])).sum(0)
    return torch.cat([mean, (second - torch.outer(mean, mean)).flatten()])


def sqrt_psd(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """The symmetric square root of a covariance, or of its inverse with its eigenvalues floored at EPS."""
    vals, vecs = torch.linalg.eigh(cov)
    vals = vals.clamp_min(EPS if inverse else 0.0)
    return vecs @ torch.diag(vals.rsqrt() if inverse else vals.sqrt()) @ vecs.T


def match(out: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    """`out` (B, 3, H, W) with each image's RGB statistics moved to `target`'s (12,), unclamped (the
    8-bit step clamps): mean-std per channel, covariance by whitening then colouring (symmetric roots,
    so a colour is moved as little as the statistics allow: no channel rotation that the covariance
    does not ask for)."""
    if mode == "off":
        return out
    src = moments(out)
    t_mean, t_cov = target[:3].double(), target[3:].double().view(3, 3)
    rows = []
    for b in range(out.shape[0]):
        s_mean, s_cov = src[b, :3], src[b, 3:].view(3, 3)
        if mode == "mean-std":
            a = torch.diag((t_cov.diagonal().clamp_min(0) / s_cov.diagonal().clamp_min(EPS)).sqrt())
        else:
            a = sqrt_psd(t_cov) @ sqrt_psd(s_cov, inverse=True)
        shift = t_mean - a @ s_mean
        img = out[b].flatten(1)
        rows.append((a.to(out.dtype) @ img + shift.to(out.dtype)[:, None]).view_as(out[b]))
    return torch.stack(rows)


class ColourMatch:
    """The paintings' moments and the mode: `apply(out, weights)` matches a batch to the painting (or
    the --mix blend) that `weights` name."""

    def __init__(self, mode: str, stats: torch.Tensor):
        if mode not in MODES:
            raise FstError(f"--color-match must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.stats = mode, stats

    def apply(self, out: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "off":
            return out
        w = torch.ones(1) if weights is None else weights.detach().cpu().double().flatten()
        return match(out, mixed(self.stats, w).to(out.device), self.mode)


def for_run(mode: str, universal: bool, paintings: list[Path] | None, size: int, min_side: int) -> ColourMatch:
    """--color-match's step for this run, or the one-line reason it has no painting to match."""
    if not universal or not paintings:
        raise FstError("--color-match takes the painting's colours from --style-image: it is for a universal "
                       "network given --style-image (a per-painting network or a baked painting has no image to read)")
    return ColourMatch(mode, painting_moments(paintings, size, min_side))
