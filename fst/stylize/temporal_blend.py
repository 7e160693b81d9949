"""`fst stylize clip --temporal [W]`: less flicker from any network, with no retraining.

Each output frame is the network's frame blended with the previous *output* frame moved along the
input clip's own motion:

    out_t = (1 − W·m) · s_t + W·m · warp(out_{t−1})

s_t is the stylised frame, warp follows the optical flow from input frame t to t−1 (OpenCV DIS,
`fst.metrics.flow`, estimated on the *input* frames: the network's strokes would mislead it), and m
is a per-pixel confidence in [0, 1] (Lai et al. 2018 learn such a post-process; this is a plain
confidence-weighted blend, a recursive average along the motion):

- 0 where the motion cannot be trusted: the forward-backward check fails (occluded, or the point was
  outside the previous frame: what appears takes the new frame), softened over 3×3 so the blend has
  no hard seams (eroding it by a pixel first measured more flicker: docs/video.md);
- times exp(−e/ERROR_SCALE), e the input frames' own error under that motion (‖I_t − warp(I_{t−1})‖²
  over RGB): where the moved previous input does not match the new one (a flow error, a shadow, a
  change of light), the previous output would be a ghost, so the new frame wins;
- 0 everywhere after a cut (under MIN_MATCHED of the pixels pass the check): the blend starts afresh.

Flow is estimated on frames whose long side is at most FLOW_SIDE (smaller frames as they are), then
upsampled with the confidence: big frames cost no more flow than a 640 px one. The state is
one float frame per output and the previous input frame at the flow's size, so memory does not grow
with the clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fst.core.errors import FstError
from fst.core.threads import one_thread
from fst.metrics.flow import MIN_MATCHED, estimate_gray, gray_u8, occlusion_mask
from fst.metrics.warping import warp

DEFAULT_WEIGHT = 0.7  # W when --temporal is given alone: chosen by measurement (docs/video.md)
FLOW_SIDE = 640  # long side the flow is estimated at, px
ERODE = 0  # px the consistent region is shrunk by (1 measured more flicker)
ERROR_SCALE = 0.05  # input frames' warp error (RGB, [0, 1] units, summed) where confidence falls to 1/e


def check_weight(weight: float) -> float:
    """W, or a one-line error: 0 (off) up to, not including, 1 (1 would never let a new frame in)."""
    if not (isinstance(weight, (int, float)) and math.isfinite(weight) and 0.0 <= weight < 1.0):
        raise FstError(f"--temporal must be a weight in [0, 1), got {weight}")
    return float(weight)


@dataclass
class Motion:
    """How frame t's pixels map to frame t−1, at the frame's size."""

    flow: torch.Tensor  # (1, 2, H, W): pixel x of frame t is at x + flow(x) in frame t−1
    confidence: torch.Tensor  # (1, 1, H, W) in [0, 1]: how much the previous output may be trusted there


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float().div(255)


def to_u8(frame: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return frame[0].mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def flow_size(h: int, w: int, side: int = FLOW_SIDE) -> tuple[int, int]:
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def soften(mask: torch.Tensor, erode: int = ERODE) -> torch.Tensor:
    """A bool mask (1, 1, h, w) eroded by `erode` pixels (flow is least sure at an occlusion's edge)
    then averaged over 3×3, so the blend fades in instead of drawing a seam."""
    m = mask.float()
    if erode:
        m = -F.max_pool2d(-m, 2 * erode + 1, stride=1, padding=erode)
    return F.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=False)


def pair_motion(small: torch.Tensor, gray: np.ndarray, prev_small: torch.Tensor, prev_gray: np.ndarray,
                size: tuple[int, int], method: str = "dis", error_scale: float = ERROR_SCALE,
                erode: int = ERODE) -> Motion | None:
    """The motion from frame t to t−1, given each at the flow's size ((1, 3, h, w) and its luma),
    brought to `size` (H, W); None across a cut."""
    back = estimate_gray(gray, prev_gray, method)[None]  # t -> t−1
    fore = estimate_gray(prev_gray, gray, method)[None]  # t−1 -> t
    ok = occlusion_mask(back, fore)  # pixels of t seen in t−1, inside it
    if ok.float().mean() < MIN_MATCHED:
        return None
    error = (small - warp(prev_small, back)).square().sum(1, keepdim=True)
    confidence = soften(ok, erode) * torch.exp(-error / error_scale)
    h, w = back.shape[-2:]
    if (h, w) != size:
        back = F.interpolate(back, size=size, mode="bilinear", align_corners=True)
        back = back * torch.tensor([(size[1] - 1) / max(w - 1, 1), (size[0] - 1) / max(h - 1, 1)]).view(1, 2, 1, 1)
        confidence = F.interpolate(confidence, size=size, mode="bilinear", align_corners=True).clamp(0, 1)
    return Motion(back, confidence)


class InputMotion:
    """The input clip's motion, fed one frame at a time: `next(frame)` is the motion from that frame
    to the one before it (None for the first frame and after a cut)."""

    def __init__(self, method: str = "dis", side: int = FLOW_SIDE, error_scale: float = ERROR_SCALE,
                 erode: int = ERODE):
        self.method, self.side, self.error_scale, self.erode = method, side, error_scale, erode
        self.prev: tuple[torch.Tensor, np.ndarray] | None = None

    def next(self, frame: np.ndarray) -> Motion | None:
        h, w = frame.shape[:2]
        small = to_tensor(frame)
        if (fs := flow_size(h, w, self.side)) != (h, w):
            small = F.interpolate(small, size=fs, mode="bilinear", antialias=True).clamp(0, 1)
        gray = gray_u8(small[0])
        motion = None if self.prev is None else pair_motion(small, gray, *self.prev, (h, w), self.method,
                                                                  self.error_scale, self.erode)
        self.prev = small, gray
        return motion


def blend(styled: torch.Tensor, previous: torch.Tensor | None, motion: Motion | None, weight: float) -> torch.Tensor:
    """(1, 3, H, W): the stylised frame blended with the previous output moved along `motion`, each
    pixel by weight × its confidence; the stylised frame itself with no previous output or motion."""
    if previous is None or motion is None or weight == 0:
        return styled
    a = weight * motion.confidence
    return (1 - a) * styled + a * warp(previous, motion.flow)


class ClipBlend:
    """The lever for one clip and its outputs (one per style): motion estimated once per frame, each
    output blended with its own previous frame (kept in float, so rounding does not accumulate)."""

    def __init__(self, weight: float, outputs: int, method: str = "dis", side: int = FLOW_SIDE,
                 error_scale: float = ERROR_SCALE, erode: int = ERODE):
        self.weight = check_weight(weight)
        self.motion = InputMotion(method, side, error_scale, erode)
        self.previous: list[torch.Tensor | None] = [None] * outputs
        self.cuts = 0

    def __call__(self, frames: list[np.ndarray], styled: list[np.ndarray]) -> list[np.ndarray]:
        """Input frames (each (H, W, 3) uint8) in order, and per output their stylised batch (B, H,
        W, 3) uint8 -> per output the blended batch."""
        out = [s.copy() for s in styled]
        with one_thread():
            self._blend(frames, out)
        return out

    def _blend(self, frames: list[np.ndarray], out: list[np.ndarray]) -> None:
        for i, frame in enumerate(frames):
            first = self.motion.prev is None
            motion = self.motion.next(frame)
            self.cuts += motion is None and not first
            for k, batch in enumerate(out):
                y = blend(to_tensor(batch[i]), self.previous[k], motion, self.weight)
                self.previous[k] = y
                batch[i] = to_u8(y)
