"""Style transforms: how a universal network carries a painting it was never trained on.

Take the encoder's features of the photo as a C x N matrix f (C channels, N = H·W positions) and
those of the painting as s. A transform maps f to t, features with the painting's statistics and the
photo's layout; a decoder trained on photos turns t into an image. The two families are the two
families of style loss (fst/losses/style.py), applied in feature space instead of measured:

- ``intra`` (AdaIN, Huang & Belongie 2017): each channel on its own,
  t_c = σ(s_c) · (f_c − μ(f_c)) / σ(f_c) + μ(s_c). The painting's statistics are 2·C numbers.
- ``inter`` (WCT, Li et al. 2017): the relations between channels. With Σ_f, Σ_s the channel
  covariances, t = Σ_s^{1/2} Σ_f^{-1/2} (f − μ_f) + μ_s: whitening removes the photo's channel
  correlations, colouring puts the painting's in. The painting's statistics are C + C² numbers
  (its mean and the colouring matrix Σ_s^{1/2}).

Each transform's statistics are one (K, C) tensor (`stats`), so that artefacts take a painting as one
input of fixed shape and blends work on any transform: `blend` mixes the transformed features.
"""

from __future__ import annotations


import torch
from torch import nn

from fst.core.errors import FstError
from fst.core.threads import one_thread

EPS = 1e-5
# Whitening divides by the square root of each eigenvalue of the photo's covariance; directions with
# almost no variance would be blown up into noise. Eigenvalues are floored at this share of their
# mean (Li et al. drop those below 1e-5 absolute; a relative floor works at any feature scale).
EIGEN_FLOOR = 1e-4


def _rows(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C): one row per position. A view of a channels_last tensor (what the
    network runs in on the CPU, fst/models/universal.py); a copy of an NCHW one. Statistics and
    transforms work on rows: on the CPU, an NCHW copy of channels_last features, or a reduction over
    H and W of them, ran ~10x slower than the same work on rows (bf16, 1080p features)."""
    b, c, h, w = f.shape
    return f.transpose(1, 2).transpose(2, 3).reshape(b, h * w, c)  # two transposes: permute, in fewer ops


def _unrows(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """(B, N, C) rows -> (B, C, H, W), a channels_last view: no copy."""
    b, c, h, w = shape
    return t.reshape(b, h, w, c).transpose(2, 3).transpose(1, 2)


def _flat(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C) rows, fp32: statistics in fp32 whatever the network runs in."""
    return _rows(f).float()


def _matrix_power(cov: torch.Tensor, power: float) -> torch.Tensor:
    """cov^power for symmetric positive semi-definite (B, C, C) matrices, eigenvalues floored."""
    # one thread: MKL's threaded eigh of a 256x256 matrix was 5x slower on 2 cores (fst.core.threads)
    with one_thread(cov.device.type == "cpu" and not torch.compiler.is_compiling()):
        values, vectors = torch.linalg.eigh(cov.double())
    floor = EIGEN_FLOOR * values.mean(-1, keepdim=True).clamp_min(EPS) + EPS
    values = values.clamp_min(floor) ** power
    return ((vectors * values.unsqueeze(-2)) @ vectors.transpose(-1, -2)).to(cov.dtype)


def _covariance(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B, 1, C) and covariance (B, C, C) of (B, N, C) rows."""
    mean = x.mean(1, keepdim=True)
    centred = x - mean
    return mean, centred.transpose(-1, -2) @ centred / max(x.shape[1] - 1, 1)


def _affine(f: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """f · scale + shift per channel (scale, shift (B, 1, C) fp32), computed in fp32, in f's dtype and layout."""
    return _unrows((_flat(f) * scale + shift).to(f.dtype), f.shape)


class Intra(nn.Module):
    """AdaIN: t_c = σ(s_c) · (f_c − μ(f_c)) / σ(f_c) + μ(s_c); stats rows: μ(s), σ(s).

    The photo's μ(f), σ(f) are what tiled inference (fst/models/tiling.py) freezes (`image_stats`,
    `frozen`), so every tile gets the whole image's, as the transformer's instance norms do. Applied
    as one affine map per channel (σ(s)/σ(f), then the shift), in fp32."""

    name = "intra"

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        # Set by tiled inference: the whole image's (mean, biased variance), each (B, 1, C) fp32.
        self.frozen: tuple[torch.Tensor, torch.Tensor] | None = None

    def stats(self, s: torch.Tensor) -> torch.Tensor:
        """(2, C): the painting's per-channel mean and standard deviation."""
        mean, var = self.image_stats(s[:1])
        return torch.cat([mean[0], (var[0] + EPS).sqrt()])

    def image_stats(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features' per-channel mean and biased variance, each (B, 1, C) fp32 (two passes: no
        cancellation where the mean is large against the spread)."""
        x = _flat(f)
        mean = x.mean(1, keepdim=True)
        return mean, (x - mean).pow(2).mean(1, keepdim=True)

    def forward(self, f: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        mean, var = self.frozen if self.frozen is not None else self.image_stats(f)
        scale = stats[1].float() * (var + EPS).pow(-0.5)
        return _affine(f, scale, stats[0].float() - mean * scale)


class Inter(nn.Module):
    """WCT: t = Σ_s^{1/2} Σ_f^{-1/2} (f − μ_f) + μ_s; stats rows: μ_s, then the C rows of Σ_s^{1/2}.

    Applied as one matrix M = Σ_s^{1/2} Σ_f^{-1/2} (C x C, formed in fp64) and one shift μ_s − M μ_f:
    one product with the features instead of two."""

    name = "inter"

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        # Set by tiled inference: the whole image's (mean, Σ_f^{-1/2}) for every tile.
        self.frozen: tuple[torch.Tensor, torch.Tensor] | None = None

    def stats(self, s: torch.Tensor) -> torch.Tensor:
        """(1 + C, C): the painting's mean, then its colouring matrix Σ_s^{1/2}."""
        mean, cov = _covariance(_flat(s)[:1])
        return torch.cat([mean[0], _matrix_power(cov, 0.5)[0]])

    def image_stats(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What tiled inference freezes: the whole image's whitening (fst/models/tiling.py)."""
        return self.whitening(f)

    def whitening(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The photo's mean (B, 1, C) and whitening matrix Σ_f^{-1/2} (B, C, C)."""
        mean, cov = _covariance(_flat(f))
        return mean, _matrix_power(cov, -0.5)

    def forward(self, f: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        mean, whiten = self.frozen if self.frozen is not None else self.whitening(f)
        m = (stats[1:].double() @ whiten.double()).float()  # (B, C, C)
        shift = stats[0].float() - mean @ m.transpose(-1, -2)  # (B, 1, C)
        t = _flat(f) @ m.transpose(-1, -2) + shift
        return _unrows(t.to(f.dtype), f.shape)


TRANSFORMS: dict[str, type[nn.Module]] = {"intra": Intra, "inter": Inter}


def get(name: str, channels: int) -> nn.Module:
    if name not in TRANSFORMS:
        raise FstError(f"unknown style transform {name!r} (choose from {', '.join(TRANSFORMS)})")
    return TRANSFORMS[name](channels)


def stats_rows(name: str, channels: int) -> int:
    """Rows of a painting's statistics tensor for transform `name`: what artefacts check a style input by."""
    return 2 if name == "intra" else 1 + channels


def blend(transform: nn.Module, f: torch.Tensor, stats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_k w_k · T(f, s_k): a convex mix of the features each painting alone gives (Huang & Belongie's
    interpolation), for one weight row per image (B, N)."""
    out = torch.zeros_like(f)
    for k in range(stats.shape[0]):
        wk = weights[:, k].to(f.dtype)[:, None, None, None]
        if bool((wk != 0).any()):
            out = out + wk * transform(f, stats[k])
    return out
