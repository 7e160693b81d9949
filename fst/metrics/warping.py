"""Temporal stability of a stylized clip: how much each frame differs from the next one warped back
onto it along the motion of the scene (the warping error of Lai et al. 2018, "Learning Blind Video
Temporal Consistency", ECCV).

A network that stylizes each frame on its own can flicker: the same surface, moved a few pixels,
comes out in another texture or colour. Comparing frame t with frame t+1 *moved back along the
optical flow* removes the motion itself, so what is left is the flicker (plus what the flow gets
wrong, and pixels that are hidden in one of the two frames, which a mask leaves out).

Flows are (N, 2, H, W) in pixels, channel 0 = dx, channel 1 = dy, from frame t to frame t+1: pixel x
of frame t shows the point that is at x + flow(x) in frame t+1. Frames are (T, 3, H, W) RGB in [0, 1].
Masks are (T−1, 1, H, W), true (or 1) where pixel x of frame t is visible in frame t+1.

The error of a clip is not zero even for an input clip under its true motion: bilinear sampling
between pixels blurs, and an estimated flow is off by a fraction of a pixel. So a stylized clip is
judged against its own input clip under the same flows and masks (`flicker_ratio`). Measured on
known motion (`fst.metrics.known_motion`, 8 frames of 96 px from every 5th sample photo resized to
128 px): a pan by whole pixels under its exact flow has an input error of ~1e-31 (float64 rounding
of the sample grid: the samples land on pixels), a zoom of 2 %/frame or a roll of 1°/frame 5e-4 to
8e-4 (median; 3e-5 to 2e-3), and a 3 px pan under DIS flow (`fst.metrics.flow`) 5e-5 (5e-6 to 2e-4).
Independent per-frame noise of std σ adds 6σ² (2 frames × 3 channels): 2.4e-3 for σ = 0.02.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fst.core.errors import FstError

# The floor added to both errors of `flicker_ratio`: below the error that rounding a clip to 8 bits
# alone gives (two frames, three channels of uniform rounding noise: 6·(1/255)²/12 ≈ 7.7e-6), so it
# changes no real ratio and makes the ratio of two motionless, noiseless clips 1, not 0/0.
RATIO_FLOOR = 1e-6


def pixel_grid(h: int, w: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(2, H, W) pixel coordinates: channel 0 the column x, channel 1 the row y."""
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                          indexing="ij")
    return torch.stack([x, y])


def targets(flow: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) where each pixel lands in the other frame: x + flow(x)."""
    return pixel_grid(*flow.shape[-2:], device=flow.device, dtype=flow.dtype) + flow


def inside(flow: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) bool: x + flow(x) lies within the frame, 0 ≤ x ≤ W−1 and 0 ≤ y ≤ H−1 (pixel
    centres, as ``align_corners=True`` places them), so `warp` sampled it from real pixels only."""
    h, w = flow.shape[-2:]
    x, y = targets(flow).unbind(1)
    return ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).unsqueeze(1)


def sample(image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) bilinear samples of image (N, C, H, W) at pixel coordinates points (N, 2, h, w)
    (x, y); points outside the frame repeat the border."""
    h, w = image.shape[-2:]
    x, y = points.to(image.dtype).unbind(1)
    # align_corners=True: −1 and +1 are the centres of the first and last pixels.
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: W(image)(x) = image(x + flow(x)), bilinear, for image (N, C, H, W) and flow
    (N, 2, H, W). Samples outside the frame repeat the border; `inside` says which those are."""
    return sample(image, targets(flow.to(image.dtype)))


def pair_error(frame: torch.Tensor, following: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_i M(i) ‖V_t(i) − W(V_{t+1})(i)‖² / Σ_i M(i) for one pair, (C, H, W) frames, (2, H, W) flow
    and (1, H, W) mask; M also leaves out pixels whose match is outside the frame. NaN if M is empty."""
    flow = flow.unsqueeze(0).to(torch.float64)
    m = (mask.unsqueeze(0).bool() & inside(flow)).to(torch.float64)
    moved = warp(following.unsqueeze(0).to(torch.float64), flow)
    squared = (frame.unsqueeze(0).to(torch.float64) - moved).square().sum(1, keepdim=True)  # summed over channels
    return (m * squared).sum() / m.sum()


def warping_error(frames: torch.Tensor, flows: torch.Tensor, masks: torch.Tensor) -> float:
    """E_warp = 1/(T−1) Σ_t [Σ_i M_t(i) ‖V_t(i) − W(V_{t+1})(i)‖²] / Σ_i M_t(i)  (Lai et al. 2018).

    V_t is frame t (T, C, H, W), W(V_{t+1}) frame t+1 warped back onto frame t by flows[t] (T−1, 2,
    H, W; from frame t to t+1), M_t = masks[t] (T−1, 1, H, W) without the pixels whose match leaves
    the frame. ‖·‖² is the squared difference *summed over the channels* (RGB: up to 3), in [0, 1]
    units: the mean over visible pixels, averaged over the pairs. A pair with no visible pixel is
    left out of the average. Computed in float64, one pair at a time (a long clip fits in memory).
    """
    t = frames.shape[0]
    if t < 2 or flows.shape[0] != t - 1 or masks.shape[0] != t - 1:
        raise FstError(f"a warping error needs T ≥ 2 frames and T−1 flows and masks, got {t} frames, "
                       f"{flows.shape[0]} flows and {masks.shape[0]} masks")
    errors = torch.stack([pair_error(frames[i], frames[i + 1], flows[i], masks[i]) for i in range(t - 1)])
    errors = errors[~errors.isnan()]
    if errors.numel() == 0:
        raise FstError("no pixel of the clip is visible in the frame after it: no warping error to measure")
    return float(errors.mean())


def flicker_ratio(stylized: torch.Tensor, inputs: torch.Tensor, flows: torch.Tensor, masks: torch.Tensor) -> float:
    """(E_warp(stylized) + ε) / (E_warp(inputs) + ε), both under the input clip's flows and masks.

    1.0: the stylized clip is as stable as the input clip under the same motion (whose own error is
    the flow's and the interpolation's); above 1, the stylization flickers. A style that raises the
    contrast raises both its real flicker and its share of the flow's error, so compare ratios of
    one clip across models rather than read one as a flicker amplitude. ε = `RATIO_FLOOR` keeps a
    motionless, noiseless clip (error 0) at ratio 1.
    """
    if stylized.shape != inputs.shape:
        raise FstError(f"stylized frames {tuple(stylized.shape)} and input frames {tuple(inputs.shape)} "
                       "differ in shape")
    return (warping_error(stylized, flows, masks) + RATIO_FLOOR) / (warping_error(inputs, flows, masks) + RATIO_FLOOR)
