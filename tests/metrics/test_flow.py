"""Optical flow with OpenCV's DIS, checked on pans whose flow is known, the forward-backward
occlusion mask, and the flicker ratio under estimated motion."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fst.assets import sample_photos_dir
from fst.core.errors import FstError
from fst.io.images import open_rgb
from fst.metrics.flow import clip_motion, estimate, occlusion_mask
from fst.metrics.known_motion import pan
from fst.metrics.warping import flicker_ratio

INTERIOR = (..., slice(16, -16), slice(16, -16))  # away from the border, where DIS extrapolates


def photo(name: str = "aula_palatina.jpg", short: int = 128) -> torch.Tensor:
    """A sample photo (3, H, W) in [0, 1], resized (antialiased) to a short side of `short` px."""
    x = torch.from_numpy(np.array(open_rgb(sample_photos_dir() / name))).permute(2, 0, 1).float() / 255
    h, w = x.shape[-2:]
    size = (round(h * short / min(h, w)), round(w * short / min(h, w)))
    return F.interpolate(x[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)


@pytest.mark.parametrize(("name", "step"), [("aula_palatina.jpg", (3, -2)), ("colosseum.jpg", (-4, 0))])
def test_dis_recovers_a_known_pan(name: str, step: tuple[int, int]):
    clip = pan(photo(name), 2, 96, step)
    flow = estimate(clip.frames[0], clip.frames[1])
    assert flow.shape == (2, 96, 96) and flow.dtype == torch.float32
    median = flow[INTERIOR].flatten(1).median(1).values
    torch.testing.assert_close(median, clip.flows[0, :, 0, 0], atol=0.25, rtol=0)
    assert (flow - clip.flows[0]).norm(dim=0)[clip.masks[0, 0]].mean() < 0.5  # endpoint error, px


def test_occlusion_mask_drops_the_strip_that_leaves_and_keeps_consistent_pixels():
    clip = pan(photo(), 2, 96, 4)
    exact = occlusion_mask(clip.flows, -clip.flows)
    assert torch.equal(exact, clip.masks)  # the exact pan: only the left 4 columns leave
    forward, masks = clip_motion(clip.frames)
    assert not masks[..., :3].any()  # DIS's estimate of the strip points out of the frame
    assert masks.float().mean() > 0.8


def test_an_inconsistent_backward_flow_marks_pixels_occluded():
    forward = torch.full((1, 2, 32, 32), -3.0)
    assert not occlusion_mask(forward, torch.zeros_like(forward)).any()  # |w_f|² = 18 > 0.01·18 + 0.5
    assert occlusion_mask(forward, -forward + 0.3)[..., 8:-8, 8:-8].all()  # 0.3 px off: within the slack


def test_flicker_ratio_under_dis_flow_sees_noise_and_not_a_colour_curve():
    clip = pan(photo(), 5, 96, 3)
    flows, masks = clip_motion(clip.frames)
    noisy = clip.frames + 0.02 * torch.randn_like(clip.frames)
    assert flicker_ratio(noisy, clip.frames, flows, masks) > 5  # measured 8.6 here (σ = 0.02)
    curved = clip.frames ** 0.8  # pixelwise: moves with the scene; changes contrast, hence the margin
    assert 0.7 < flicker_ratio(curved, clip.frames, flows, masks) < 1.3  # measured 0.89 here, 0.80-1.02 on others


def test_without_opencv_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 then raises ImportError
    frame = torch.zeros(3, 16, 16)
    with pytest.raises(FstError, match=r"optical flow needs OpenCV: pip install 'fst\[eval\]'"):
        estimate(frame, frame)


def test_importing_the_metrics_does_not_import_opencv():
    code = "import sys, fst.metrics.flow, fst.metrics.warping, fst.metrics.known_motion; print('cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
