"""Style losses, in two families (Cui et al. 2018, "The Intra-Class and Inter-Class Relationships in
Style Transfer"):

- **inter**: relations *between* feature channels of a layer (Gram matrix, covariance, kernel MMD over
  C-dim feature vectors, sliced Wasserstein along random directions in channel space);
- **intra**: each channel on its own (per-channel mean, mean and std, per-channel 1-D distributions).

Notation: F is one image's features at one layer, reshaped to C x N (C channels, N = H*W
positions); S is the style image's features at that layer (C x M; M may differ from N).
Each loss is one *distance* function ``(F: (B, C, N), target) -> (B,)`` plus one registry line (the
decorator) naming its family, its cost and how its *target statistics* are computed once from S.
Those statistics become buffers of the criterion, so a checkpoint carries them.

Normalisation (why one style weight fits every loss): each distance is divided by the size of the
style's own statistic (a relative error), which makes it dimensionless, comparable across layers,
across VGG input conventions (Caffe 0-255 vs torchvision) and across losses. On top of that, each
registry entry has a ``weight`` that a calibration sets by measurement (``fst compare --calibrate``):
the factor that brings every loss to a comparable style strength at a comparable content distance.
The exception is the classic recipe's ``gram_mse`` (``absolute``): the mean squared Gram error of
Johnson et al. / pytorch/examples, whose size depends on the layer and the input convention and is
balanced by absolute weights (content 1e5, style 1e10: configs/classic.yaml). It is there as the
baseline every fst loss is compared with, not as a loss to tune.
Everything here is computed in fp32, even under autocast (an fp16 Gram overflows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from fst.core.arguments import ArgumentParser
from fst.core.errors import FstError

Stats = dict[str, torch.Tensor]

__all__ = [  # what `from fst.losses import X` reaches
    "Stats", "EPS", "MAX_SAMPLES", "SW_DIRECTIONS", "StyleLoss", "REGISTRY", "FAMILY_DEFAULT", "register",
    "list_losses", "get", "gram_matrix", "covariance", "mean_and_std", "quantiles", "subsample", "rel",
    "gram", "gram_mse", "covariance_loss", "mmd_gaussian", "sliced_wasserstein", "mean", "mean_std",
    "channel_wasserstein", "content_loss", "content_mse", "CONTENT_LOSSES", "get_content", "tv_loss",
    "main",
]
EPS = 1e-8
MAX_SAMPLES = 16384  # cap on stored style positions / quantiles per layer (keeps checkpoints small)
SW_DIRECTIONS = 64  # random projections per step for sliced Wasserstein


@dataclass(frozen=True)
class StyleLoss:
    name: str
    family: str  # "inter" or "intra"
    cost: str  # per image and layer, C channels, N positions
    target: Callable[[torch.Tensor], Stats]  # style features (C, M) -> statistics, once
    distance: Callable[[torch.Tensor, Stats], torch.Tensor]  # (B, C, N), statistics -> (B,)
    weight: float = 1.0  # calibrated default multiplier (see module docstring)
    absolute: bool = False  # not normalised: its style weight is the recipe's own (gram_mse)

    def __call__(self, f: torch.Tensor, t: Stats) -> torch.Tensor:
        """The distance in fp32 with autocast off, whatever precision the network ran in."""
        with torch.autocast(f.device.type, enabled=False):
            return self.distance(f.float(), t)

    def stats(self, s: torch.Tensor) -> Stats:
        with torch.autocast(s.device.type, enabled=False):
            return self.target(s.float())

    @property
    def formula(self) -> str:
        return (self.distance.__doc__ or "").strip().splitlines()[0]


REGISTRY: dict[str, StyleLoss] = {}
FAMILY_DEFAULT = {"inter": "gram", "intra": "mean_std"}


def register(name: str, family: str, cost: str, target: Callable[[torch.Tensor], Stats], weight: float = 1.0,
             absolute: bool = False):
    """Decorator: the one registry line that makes a distance function a selectable style loss."""
    assert family in ("inter", "intra"), family

    def add(distance: Callable[[torch.Tensor, Stats], torch.Tensor]):
        REGISTRY[name] = StyleLoss(name, family, cost, target, distance, weight, absolute)
        return distance

    return add


def list_losses(family: str | None = None, absolute: bool | None = None) -> list[str]:
    """Registered loss names in registry order, optionally of one family (``inter``/``intra``) and
    only absolute (or only relative) ones: the registry's public face, as timm's `list_models`."""
    if family not in (None, *FAMILY_DEFAULT):
        raise FstError(f"unknown loss family {family!r} (choose from {', '.join(FAMILY_DEFAULT)})")
    return [n for n, v in REGISTRY.items()
            if (family is None or v.family == family) and (absolute is None or v.absolute == absolute)]


def get(name: str) -> StyleLoss:
    """A loss by registered name, or by family (`inter` / `intra` pick that family's default)."""
    name = FAMILY_DEFAULT.get(name, name)
    if name not in REGISTRY:
        choices = ", ".join([*FAMILY_DEFAULT, *REGISTRY])
        raise FstError(f"unknown style loss {name!r} (choose from {choices})")
    return REGISTRY[name]


# --- statistics ----------------------------------------------------------------------------------

def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ / (C·N) for F of shape (..., C, N)."""
    c, n = f.shape[-2:]
    return f @ f.transpose(-1, -2) / (c * n)


def covariance(f: torch.Tensor) -> torch.Tensor:
    """Σ = (F − μ)(F − μ)ᵀ / (C·N): the centred Gram matrix."""
    return gram_matrix(f - f.mean(-1, keepdim=True))


def mean_and_std(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return f.mean(-1), (f.var(-1, unbiased=False) + 1e-5).sqrt()


def quantiles(sorted_values: torch.Tensor, n: int) -> torch.Tensor:
    """Resample sorted samples (..., M) to n evenly spaced quantiles (linear interpolation)."""
    m = sorted_values.shape[-1]
    if m == n:
        return sorted_values
    shape = sorted_values.shape[:-1]
    flat = sorted_values.reshape(1, -1, m)
    return torch.nn.functional.interpolate(flat, size=n, mode="linear", align_corners=True).reshape(*shape, n)


def subsample(s: torch.Tensor, max_n: int = MAX_SAMPLES, seed: int = 0) -> torch.Tensor:
    """At most max_n positions of S (C, M), a fixed random subset: a sample of the same distribution."""
    if s.shape[-1] <= max_n:
        return s
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(s.shape[-1], generator=g)[:max_n].sort().values
    return s[:, idx.to(s.device)]


def rel(err: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Squared error relative to the squared size of the reference: ‖err‖² / ‖ref‖², per batch item."""
    dims = tuple(range(1, err.dim()))
    return err.pow(2).sum(dims) / (ref.pow(2).sum() + EPS)


# --- inter-class: relations between channels ----------------------------------------------------

@register("gram", "inter", "O(C²·N)", lambda s: {"gram": gram_matrix(s)}, weight=0.27)
def gram(f: torch.Tensor, t: Stats) -> torch.Tensor:
    """L = ‖G(F) − G(S)‖²_F / ‖G(S)‖²_F,  G(X) = X Xᵀ / (C·N)  (Johnson et al. 2016)."""
    return rel(gram_matrix(f) - t["gram"], t["gram"])


@register("gram_mse", "inter", "O(C²·N)", lambda s: {"gram": gram_matrix(s)}, absolute=True)
def gram_mse(f: torch.Tensor, t: Stats) -> torch.Tensor:
    """L = mean_ij (G(F) − G(S))²_ij,  G(X) = X Xᵀ / (C·N): absolute, the classic recipe's (style weight ~1e10)."""
    return (gram_matrix(f) - t["gram"]).pow(2).mean((-2, -1))


@register("covariance", "inter", "O(C²·N)", lambda s: {"cov": covariance(s)}, weight=0.19)
def covariance_loss(f: torch.Tensor, t: Stats) -> torch.Tensor:
    """L = ‖Σ(F) − Σ(S)‖²_F / ‖Σ(S)‖²_F,  Σ(X) = (X − μ)(X − μ)ᵀ / (C·N)  (centred Gram)."""
    return rel(covariance(f) - t["cov"], t["cov"])


def _mmd_target(s: torch.Tensor) -> Stats:
    y = subsample(s)
    half = y.shape[-1] // 2
    d2 = (y[:, :half] - y[:, half:2 * half]).pow(2).sum(0)
    return {"samples": y, "bandwidth2": d2.median().clamp_min(EPS).reshape(1)}  # median heuristic


@register("mmd_gaussian", "inter", "O(C·N)", _mmd_target, weight=1.6)
def mmd_gaussian(f: torch.Tensor, t: Stats) -> torch.Tensor:
    """L = MMD²_lin(F, S) = mean_i k(x_i, x'_i) + k(y_i, y'_i) − k(x_i, y'_i) − k(x'_i, y_i),
    k(a, b) = exp(−‖a − b‖² / h²), h² = median pairwise ‖y − y'‖² of S; (x, x') and (y, y') are
    disjoint pairs of C-dim feature vectors of F and S (Gretton et al. 2012 linear-time estimator,
    Li et al. 2017). Already dimensionless: k is in [0, 1]."""
    y, h2 = t["samples"], t["bandwidth2"]
    n, m = f.shape[-1], y.shape[-1]
    k = min(n, m) // 2 * 2
    if n == m:  # same positions on both sides: identical features give exactly 0
        ix = iy = torch.randperm(n, device=f.device)[:k]
    else:
        ix, iy = torch.randperm(n, device=f.device)[:k], torch.randperm(m, device=f.device)[:k]
    x, y = f[..., ix], y[:, iy.to(y.device)].to(f.device)
    x1, x2, y1, y2 = x[..., 0::2], x[..., 1::2], y[:, 0::2], y[:, 1::2]

    def kern(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(a - b).pow(2).sum(-2) / h2.to(f.device))

    return (kern(x1, x2) + kern(y1, y2) - kern(x1, y2) - kern(x2, y1)).mean(-1)


@register("sliced_wasserstein", "inter", "O(K·C·N + K·N log N)", lambda s: {"samples": subsample(s)}, weight=0.71)
def sliced_wasserstein(f: torch.Tensor, t: Stats) -> torch.Tensor:
    """L = mean_k W₂²(vₖᵀF, vₖᵀS) / mean_k E[(vₖᵀS)²], K random unit vₖ in channel space, fresh each
    call; W₂² of 1-D samples = mean squared difference of their sorted values (quantile functions)."""
    y = t["samples"].to(f.device, f.dtype)
    v = torch.randn(SW_DIRECTIONS, f.shape[-2], device=f.device, dtype=f.dtype)
    v = v / v.norm(dim=1, keepdim=True)
    pf = (v @ f).sort(-1).values  # (B, K, N)
    ps = quantiles((v @ y).sort(-1).values, f.shape[-1])  # (K, N)
    return rel(pf - ps, ps)


# --- intra-class: each channel on its own --------------------------------------------------------

@register("mean", "intra", "O(C·N)", lambda s: {"mean": s.mean(-1)}, weight=0.3)
def mean(f: torch.Tensor, t: Stats) -> torch.Tensor:
    """L = ‖μ(F) − μ(S)‖² / ‖μ(S)‖²,  μ = per-channel mean (= MMD with a linear kernel, Li et al. 2017)."""
    return rel(f.mean(-1) - t["mean"], t["mean"])


def _mean_std_target(s: torch.Tensor) -> Stats:
    mu, sigma = mean_and_std(s)
    return {"mean": mu, "std": sigma}


@register("mean_std", "intra", "O(C·N)", _mean_std_target, weight=0.65)
def mean_std(f: torch.Tensor, t: Stats) -> torch.Tensor:
    """L = (‖μ(F) − μ(S)‖² + ‖σ(F) − σ(S)‖²) / (‖μ(S)‖² + ‖σ(S)‖²),  per-channel mean and std
    (the BN-statistics loss of Li et al. 2017)."""
    mu, sigma = mean_and_std(f)
    err = torch.cat([mu - t["mean"], sigma - t["std"]], dim=-1)
    return rel(err, torch.cat([t["mean"], t["std"]]))


@register("channel_wasserstein", "intra", "O(C·N log N)",
          lambda s: {"quantiles": quantiles(s.sort(-1).values, min(s.shape[-1], MAX_SAMPLES))}, weight=0.51)
def channel_wasserstein(f: torch.Tensor, t: Stats) -> torch.Tensor:
    """L = Σ_c W₂²(F_c, S_c) / Σ_c E[S_c²]: per channel, the mean squared difference of sorted values
    (1-D optimal transport = histogram matching), style quantiles resampled to N."""
    q = quantiles(t["quantiles"].to(f.device), f.shape[-1])
    return rel(f.sort(-1).values - q, q)


# --- content and smoothness ----------------------------------------------------------------------

def content_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L = ‖φ(y) − φ(x)‖² / ‖φ(x)‖², features of output y and photo x at the content layer."""
    y, x = y.float(), x.float()
    return (y - x).pow(2).sum() / (x.pow(2).sum() + EPS)


def content_mse(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L = mean (φ(y) − φ(x))²: absolute, the classic recipe's (content weight ~1e5)."""
    return (y.float() - x.float()).pow(2).mean()


CONTENT_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "relative": content_loss, "mse": content_mse}


def get_content(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name not in CONTENT_LOSSES:
        raise FstError(f"unknown content loss {name!r} (choose from {', '.join(CONTENT_LOSSES)})")
    return CONTENT_LOSSES[name]


def tv_loss(y: torch.Tensor) -> torch.Tensor:
    """L = mean (y[i+1, j] − y[i, j])² + mean (y[i, j+1] − y[i, j])²: total variation, for smoothness."""
    y = y.float()
    return (y[..., 1:, :] - y[..., :-1, :]).pow(2).mean() + (y[..., :, 1:] - y[..., :, :-1]).pow(2).mean()


def main(argv: list[str]) -> int:
    ArgumentParser(prog="fst losses", description="List the registered style losses.").parse_args(argv)
    print(f"{'name':<20} {'family':<6} {'weight':>8}  {'cost':<22} formula")
    for loss in REGISTRY.values():
        weight = "absolute" if loss.absolute else f"{loss.weight:.3g}"
        print(f"{loss.name:<20} {loss.family:<6} {weight:>8}  {loss.cost:<22} {loss.formula}")
    print(f"\nfamily defaults: inter -> {FAMILY_DEFAULT['inter']}, intra -> {FAMILY_DEFAULT['intra']}")
    return 0
