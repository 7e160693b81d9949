"""The trace of a painting's Gram matrices: the statistic Gupta et al. (2017, "Characterizing and
Improving Stability in Neural Style Transfer") tie to how much a network trained on that painting
flickers; docs/video.md sets it beside the measured flicker of each painting's networks.

    tr G(F) = Σ_c G_cc = Σ_c Σ_n F_cn² / (C·N) = (1/C) Σ_c (μ_c² + σ_c²)

with G = F Fᵀ / (C·N) as in the Gram loss (fst.losses.style.gram_matrix), μ_c and σ_c the mean and
standard deviation of channel c: the diagonal both loss families match (the Gram loss all of G,
mean_std each channel's μ and σ), so the trace is a property of the painting, not of the loss.
Computed in O(C·N), without forming G.
"""

from __future__ import annotations

import torch


def gram_trace(f: torch.Tensor) -> torch.Tensor:
    """tr G for features of shape (..., C, N) (or (..., C, H, W), flattened): shape (...)."""
    if f.dim() >= 4:
        f = f.flatten(-2)
    return f.pow(2).mean((-2, -1))
