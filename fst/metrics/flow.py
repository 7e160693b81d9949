"""Optical flow of an input clip, for measuring flicker (evaluation only: OpenCV, the ``eval`` extra;
training never imports it).

Estimator: OpenCV's DIS (Kroeger et al. 2016, "Fast Optical Flow using Dense Inverse Search",
preset MEDIUM) on the frames' BT.601 luma in 8 bits. DIS because it is dense (a vector at every
pixel, which the warping error needs) and fast on a CPU (no network, no GPU), and because it ships
with opencv-python. Its errors are what makes an input clip's own warping error non-zero, which is
why `fst.metrics.warping.flicker_ratio` divides by that error.

A second estimator, independent of DIS, checks what DIS-based measures say (a lever that uses DIS's
motion itself, `fst.stylize.temporal_blend`, must not be judged by DIS alone): OpenCV's Farnebäck
(2003, "Two-Frame Motion Estimation Based on Polynomial Expansion"), a global polynomial-expansion
method with nothing in common with DIS's patch search; ``method="farneback"``.

Occlusions: forward-backward consistency (Sundaram et al. 2010, as Ruder et al. 2016 use it for
video style transfer). Where a pixel is visible in both frames, the backward flow at x + w_f(x)
points back: w_f + ŵ_b ≈ 0. A pixel is occluded where |w_f + ŵ_b|² > 0.01 (|w_f|² + |ŵ_b|²) + 0.5,
and left out as well where x + w_f(x) leaves the frame.

The flows are estimated on the *input* frames and the stylized frames are compared under them: a
stylization must not change where things move, and its textures would mislead the estimator.

Measured on this machine (a 2-core AMD EPYC VM, no GPU used; OpenCV 5.1 with its 2 threads): on
pans of 3 px/frame over 256 px views of the first 10 sample photos, where the exact flow is known,
DIS's mean endpoint error is 0.061 px (0.034-0.10 per photo) over the pixels that stay in the frame.
One 640×272 frame pair takes 19 ms (luma and DIS; 17 ms at best), so `clip_motion` (two flows and
the mask per pair) costs about 40 ms a frame, and `warping_error` another 10-15 ms a pair.
"""

from __future__ import annotations

import types

import numpy as np
import torch

from fst.core.color import luminance
from fst.core.errors import FstError
from fst.metrics.warping import inside, warp

# Sundaram et al. 2010: consistent where the round trip misses by less than 1 % of the squared
# lengths plus half a pixel², the slack for the flows' sub-pixel error.
RELATIVE_SLACK = 0.01
ABSOLUTE_SLACK = 0.5
# A pair of frames where under this share of the pixels pass the check has no motion to follow (a
# cut, a flash): the flicker measure leaves it out, the temporal blend starts afresh after it.
MIN_MATCHED = 0.5


METHODS = ("dis", "farneback")
# Farnebäck's parameters: OpenCV's documented example (pyramid halving, 15 px window, 3 iterations,
# polynomial of 5 px, σ 1.2) with 5 pyramid levels, so motions of tens of pixels are followed.
FARNEBACK = dict(pyr_scale=0.5, levels=5, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _cv2() -> types.ModuleType:
    """OpenCV, imported only when a flow is estimated (it is not a dependency of training)."""
    try:
        import cv2
    except ImportError as e:
        raise FstError("optical flow needs OpenCV: pip install 'fst[eval]'") from e
    return cv2


def gray_u8(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) RGB in [0, 1] -> (H, W) uint8 BT.601 luma, what DIS reads."""
    y = luminance(frame[None].float())[0, 0]
    # + 0.5 then truncation rounds; torch's round() was 1-8 ms per small frame on this 2-core machine.
    return (y.clamp(0, 1) * 255 + 0.5).to(torch.uint8).contiguous().numpy()


def require_opencv(what: str) -> None:
    """One line saying how to install OpenCV if `what` (which needs optical flow) cannot import it."""
    try:
        _cv2()
    except FstError:
        raise FstError(f"{what} needs OpenCV for optical flow: pip install 'fst[eval]'") from None


def check_method(method: str) -> None:
    if method not in METHODS:
        raise FstError(f"unknown optical flow method {method!r}: one of {', '.join(METHODS)}")


def estimate_gray(gray_a: np.ndarray, gray_b: np.ndarray, method: str = "dis") -> torch.Tensor:
    """(2, H, W) float32 flow from luma frame a to b ((H, W) uint8): pixel x of a is at x + flow(x) in b."""
    check_method(method)
    cv2 = _cv2()
    if method == "dis":
        flow = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(gray_a, gray_b, None)
    else:
        flow = cv2.calcOpticalFlowFarneback(gray_a, gray_b, None, **FARNEBACK)
    return torch.from_numpy(flow).permute(2, 0, 1).contiguous()  # (H, W, 2) dx, dy -> (2, H, W)


def estimate(frame_a: torch.Tensor, frame_b: torch.Tensor, method: str = "dis") -> torch.Tensor:
    """(2, H, W) float32 flow from frame a to frame b ((3, H, W) RGB in [0, 1]): pixel x of a is at
    x + flow(x) in b. DIS (preset MEDIUM) or Farnebäck."""
    return estimate_gray(gray_u8(frame_a), gray_u8(frame_b), method)


def occlusion_mask(flow_fw: torch.Tensor, flow_bw: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) bool, true where pixel x of frame t is visible in frame t+1, from the forward
    flow w_f (t -> t+1) and backward flow w_b (t+1 -> t), each (N, 2, H, W):
    consistent where |w_f + ŵ_b|² ≤ 0.01 (|w_f|² + |ŵ_b|²) + 0.5 with ŵ_b = w_b(x + w_f(x)),
    and x + w_f(x) inside the frame."""
    back = warp(flow_bw.float(), flow_fw.float())
    fw = flow_fw.float()
    miss = (fw + back).square().sum(1, keepdim=True)
    slack = RELATIVE_SLACK * (fw.square().sum(1, keepdim=True) + back.square().sum(1, keepdim=True)) + ABSOLUTE_SLACK
    return (miss <= slack) & inside(fw)


def clip_motion(frames: torch.Tensor, method: str = "dis") -> tuple[torch.Tensor, torch.Tensor]:
    """For input frames (T, 3, H, W): the T−1 forward flows (T−1, 2, H, W) from frame t to t+1 and
    their occlusion masks (T−1, 1, H, W), what `fst.metrics.warping.warping_error` takes; `method`
    one of METHODS."""
    check_method(method)
    if frames.shape[0] < 2:
        raise FstError(f"motion needs at least 2 frames, got {frames.shape[0]}")
    pairs = list(zip(frames[:-1], frames[1:]))
    forward = torch.stack([estimate(a, b, method) for a, b in pairs])
    backward = torch.stack([estimate(b, a, method) for a, b in pairs])
    return forward, occlusion_mask(forward, backward)
