"""Evaluation metrics of a stylised image y of a photo x in the style of a painting p (the loss study).

- **style distance** to p, by three statistics (Gram, per-channel mean/std, sliced Wasserstein) on
  an *evaluation* VGG: the architecture the models were not trained with (VGG19 Caffe weights for a
  VGG16-trained model and vice versa), so no loss grades itself on its own features;
- **content distance** to x: relative deep-feature distance at the evaluation network's content
  layer, and SSIM of the luminance (Wang et al. 2004, 11×11 Gaussian window, σ = 1.5);
- **detail**: mean gradient magnitude of the luminance (high-frequency energy), reported relative to
  the photo and to the painting by the study.
- **artefacts**: the percentage of clipped pixels (some channel at 0–2 or 253–255 in 8 bits: the
  saturated blobs a network pinned at its output range leaves), and the **colour distance** to the
  painting: L1 between the per-channel mean and standard deviation of the image and of the
  painting in CIELAB (D65), where equal steps are roughly equally visible; and **off-palette
  pixels**: the percentage of pixels whose colour is farther from the painting's colours (Mahalanobis
  distance to the painting's CIELAB mean and covariance) than 99% of the painting's own pixels are
  (the painting itself scores 1%; a white or saturated blob in a dark-blue painting scores high).

Images are (B, 3, H, W) RGB in [0, 1]; every metric returns one value per image, shape (B,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fst import losses
from fst.core.color import luminance, srgb_to_lab
from fst.losses.criterion import DEFAULT_CONTENT_LAYER, flat
from fst.models.vgg import DEFAULT_LAYERS, VGGFeatures

STYLE_STATS = ("gram", "mean_std", "sliced_wasserstein")  # registry distances used as metrics
OTHER_ARCH = {"vgg16": "vgg19", "vgg19": "vgg16"}
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # (K·L)² for data range L = 1
SW_SEED = 0  # fixed projections: the same images always get the same sliced-Wasserstein score


# --- pixel metrics -------------------------------------------------------------------------------

def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian of `size` taps."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t.pow(2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, 'valid' (no padding: border windows would see invented pixels)."""
    k = g.to(x.device, x.dtype)
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def ssim(x: torch.Tensor, y: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of the luminance of x and y, per image: the mean over windows of
    (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)).

    Only windows inside the image count, as in Wang et al.'s reference code and scikit-image.
    torchmetrics' SSIM pads the image by reflection and averages every pixel's window, border
    windows of mirrored pixels included: on 64x80 noisy pairs it differed by up to 0.0023, and
    by 2e-8 when this function was given the same reflection-padded images (a test checks both),
    so the formula is the same and only the border convention differs. fst keeps the reference
    convention, which every SSIM in docs/ was computed with."""
    a, b = luminance(x.double()), luminance(y.double())  # fp64: E[a²] − μ² cancels badly in fp32
    side = min(a.shape[-2:])
    if side < size:  # small images: the largest odd window that fits
        size = side if side % 2 else side - 1
    g = gaussian_window(size, sigma)
    mu_a, mu_b = _blur(a, g), _blur(b, g)
    var_a = _blur(a * a, g) - mu_a**2
    var_b = _blur(b * b, g) - mu_b**2
    cov = _blur(a * b, g) - mu_a * mu_b
    luminance_term = (2 * mu_a * mu_b + SSIM_C1) / (mu_a**2 + mu_b**2 + SSIM_C1)
    structure_term = (2 * cov + SSIM_C2) / (var_a + var_b + SSIM_C2)
    s = luminance_term * structure_term
    return s.flatten(1).mean(1).float()


def detail(x: torch.Tensor) -> torch.Tensor:
    """Mean gradient magnitude of the luminance, √(∂x² + ∂y²) by forward differences: 0 for a flat
    image, larger for more (and finer) edges and strokes."""
    y = luminance(x.float())
    dx = y[..., :-1, 1:] - y[..., :-1, :-1]
    dy = y[..., 1:, :-1] - y[..., :-1, :-1]
    return (dx.pow(2) + dy.pow(2)).sqrt().flatten(1).mean(1)


def clipped_percent(x: torch.Tensor, low: int = 2, high: int = 253) -> torch.Tensor:
    """Percentage of pixels whose 8-bit value (as saved) is <= `low` or >= `high` in some channel."""
    q = (x.float().clamp(0, 1) * 255).round()
    return ((q <= low) | (q >= high)).any(1).flatten(1).float().mean(1) * 100


def color_stats(x: torch.Tensor) -> torch.Tensor:
    """(B, 6): per-channel mean and standard deviation in CIELAB."""
    lab = srgb_to_lab(x).flatten(2)
    return torch.cat([lab.mean(2), lab.std(2, unbiased=False)], 1)


def color_distance(x: torch.Tensor, painting: torch.Tensor) -> torch.Tensor:
    """L1 distance, per image, between the CIELAB mean/std of each image in x and of the painting."""
    return (color_stats(x) - color_stats(painting)[:1]).abs().sum(1)


OFF_PALETTE_QUANTILE = 0.99


def _lab_pixels(x: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) CIELAB pixels, fp64."""
    return srgb_to_lab(x).double().flatten(2).transpose(1, 2)


def off_palette_percent(x: torch.Tensor, painting: torch.Tensor) -> torch.Tensor:
    """Percentage of pixels of each image in x beyond the painting's own 99th percentile of
    Mahalanobis distance to its CIELAB colour distribution."""
    ref = _lab_pixels(painting[:1])[0]
    mean = ref.mean(0)
    cov = torch.cov(ref.T) + 1e-3 * torch.eye(3, dtype=ref.dtype, device=ref.device)  # flat paintings
    inv = torch.linalg.inv(cov)

    def distance(p: torch.Tensor) -> torch.Tensor:
        d = p - mean
        return torch.einsum("...i,ij,...j->...", d, inv, d)

    limit = torch.quantile(distance(ref), OFF_PALETTE_QUANTILE)
    return (distance(_lab_pixels(x)) > limit).float().mean(1).float() * 100


# --- deep-feature metrics ------------------------------------------------------------------------

Target = dict[str, dict[str, losses.Stats]]  # statistic -> layer -> style statistics


class FeatureMetrics(nn.Module):
    """Style and content distances on one frozen VGG (the evaluation network)."""

    def __init__(self, arch: str, weights: str | None = None):
        super().__init__()
        self.style_layers = DEFAULT_LAYERS[arch]
        self.content_layer = DEFAULT_CONTENT_LAYER[arch]
        self.vgg = VGGFeatures(arch, [*self.style_layers, self.content_layer], "max", weights)

    @torch.no_grad()
    def target(self, painting: torch.Tensor) -> Target:
        """The painting's statistics (1, 3, H, W) for every metric and layer, computed once."""
        feats = self.vgg(painting)
        return {stat: {layer: losses.get(stat).stats(flat(feats[layer])[0]) for layer in self.style_layers}
                for stat in STYLE_STATS}

    @torch.no_grad()
    def distances(self, y: torch.Tensor, x: torch.Tensor, target: Target) -> dict[str, torch.Tensor]:
        """{'style_<stat>': relative style distance of y to the painting, mean over layers,
        'content': ‖φ(y) − φ(x)‖² / ‖φ(x)‖² at the content layer}, each (B,)."""
        fy = self.vgg(y)
        fx = self.vgg(x)[self.content_layer]
        out = {f"style_{stat}": self.style_distance(fy, stat, target[stat]) for stat in STYLE_STATS}
        diff = (fy[self.content_layer] - fx).float()
        out["content"] = diff.pow(2).flatten(1).sum(1) / (fx.float().pow(2).flatten(1).sum(1) + losses.EPS)
        return out

    def style_distance(self, feats: dict[str, torch.Tensor], stat: str,
                       target: dict[str, losses.Stats]) -> torch.Tensor:
        loss = losses.get(stat)
        device = feats[self.style_layers[0]].device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(SW_SEED)  # sliced Wasserstein draws its projections on the features' device
            per_layer = [loss(flat(feats[layer]), target[layer]) for layer in self.style_layers]
        return torch.stack(per_layer).mean(0)
