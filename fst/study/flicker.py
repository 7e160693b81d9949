"""Flicker in `fst compare`: the warping error (fst.metrics.warping) of each run's stylized frames on

- known-motion clips, ``warp_pan`` and ``warp_zoom``: a camera pan and a zoom over the first
  evaluation photo, whose motion is exact (fst.metrics.known_motion), so no flow estimate is
  involved. Reported as the warping error itself: the input's is ~0 for the pan (whole-pixel crops)
  and ~4e-4 for the zoom (bilinear sampling), so a ratio to it would measure rounding;
- real clips (``--clips``), ``flicker_<clip>``: their motion estimated on the input frames by
  OpenCV (fst.metrics.flow), occluded pixels masked; reported as the ratio to the input frames' own
  warping error (1.0: as stable as the input clip, whose error is the flow's and the sampling's).

Pairs of frames whose motion cannot be followed (a cut, a flash: under MIN_MATCHED of the pixels pass
the forward-backward check) say nothing about flicker: their masks are emptied, so the warping error
leaves them out of its mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fst.core.errors import FstError
from fst.io.clips import read_frames
from fst.io.images import open_rgb
from fst.metrics import flow, known_motion
from fst.metrics.flow import MIN_MATCHED
from fst.metrics.warping import RATIO_FLOOR, warping_error
from fst.study.sample_clips import resolve_clip

KNOWN_FRAMES = 12  # frames of each known-motion clip
PAN_STEP = 2  # px per frame
ZOOM_FACTOR = 1.01  # per frame
PHOTO_MARGIN = 1.25  # room for the pan and the zoom around the first frame


@dataclass
class EvalClip:
    name: str
    frames: torch.Tensor  # (T, 3, H, W) in [0, 1], CPU
    flows: torch.Tensor  # (T-1, 2, H, W): frame t to t+1
    masks: torch.Tensor  # (T-1, 1, H, W): true where the motion is known; all false for a pair left out
    exact: bool = False  # known motion: reported as the warping error itself (the input's is ~0)

    @property
    def keep(self) -> torch.Tensor:
        """(T-1,) bool: the pairs of frames measured."""
        return self.masks.flatten(1).any(1)

    def error(self, frames: torch.Tensor) -> float:
        """The warping error of `frames` (these input frames, or their stylized versions) under the
        input's motion."""
        return warping_error(frames, self.flows, self.masks)

    @cached_property
    def input_error(self) -> float:
        return self.error(self.frames)

    def ratio(self, stylized: torch.Tensor) -> float:
        """The stylized frames' warping error over the input's (`flicker_ratio`'s floor keeps a still clip at 1)."""
        return (self.error(stylized) + RATIO_FLOOR) / (self.input_error + RATIO_FLOOR)


def as_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 to (T, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float() / 255


def known_clips(photo: Path, size: int) -> list[EvalClip]:
    """A pan and a zoom over `photo` (its short side first scaled to `size` x PHOTO_MARGIN, so the
    frames show most of it), `size`² frames, every pair measured."""
    img = open_rgb(photo)
    scale = size * PHOTO_MARGIN / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    image = as_tensor(np.asarray(img)[None])[0]
    clips = {"pan": known_motion.pan(image, KNOWN_FRAMES, size, PAN_STEP),
             "zoom": known_motion.zoom(image, KNOWN_FRAMES, size, ZOOM_FACTOR)}
    return [EvalClip(name, f, fl, m, exact=True) for name, (f, fl, m) in clips.items()]


def real_clip(spec: str, count: int, max_side: int, skip: int = 0, method: str = "dis") -> EvalClip:
    """`count` frames of a clip (a path or sample:NAME) after `skip`, long side `max_side`, the motion
    estimated on them (by `method`, fst.metrics.flow.METHODS); pairs with under MIN_MATCHED of their
    pixels matched are left out."""
    path = resolve_clip(spec)
    frames = as_tensor(read_frames(path, count, max_side, skip))
    if frames.shape[0] < 2:
        raise FstError(f"{path}: fewer than 2 frames to compare after skipping {skip}")
    return motion_clip(path.stem, frames, method, str(path))


def motion_clip(name: str, frames: torch.Tensor, method: str = "dis", where: str | None = None) -> EvalClip:
    """Input frames (T, 3, H, W) in [0, 1] with their motion estimated by `method`; pairs across a cut
    (under MIN_MATCHED of the pixels matched by DIS) left out. `where` names the clip in errors."""
    where = where or name
    if frames.shape[0] < 2:
        raise FstError(f"{where}: fewer than 2 frames to compare")
    flows, masks = flow.clip_motion(frames, method)
    # Cuts are found by DIS's check whatever the method: Farnebäck's smooth polynomial flow passes the
    # forward-backward check across a cut (measured: all 11 pairs of a two-shot clip "followed").
    cut_check = masks if method == "dis" else flow.clip_motion(frames, "dis")[1]
    followed = cut_check.flatten(1).float().mean(1) >= MIN_MATCHED
    if not followed.any():
        raise FstError(f"{where}: no two consecutive frames whose motion can be followed")
    return EvalClip(name, frames, flows, masks & followed.view(-1, 1, 1, 1))


def column(clip: EvalClip) -> str:
    return f"warp_{clip.name}" if clip.exact else f"flicker_{clip.name}"


def reference(clips: list[EvalClip]) -> dict[str, float]:
    """The input clips' own values: their warping error (known motion), 1 (real clips)."""
    return {column(c): c.input_error if c.exact else 1.0 for c in clips}


def flicker(stylize: Callable[[torch.Tensor], torch.Tensor], clips: list[EvalClip]) -> dict[str, float]:
    """For each clip, of its stylized frames: ``warp_<clip>``, the warping error (known motion), or
    ``flicker_<clip>``, the warping error over the input frames' (real clips)."""
    out = {}
    for c in clips:
        y = stylize(c.frames)
        out[column(c)] = c.error(y) if c.exact else c.ratio(y)
    return out
