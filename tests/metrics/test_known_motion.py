"""Clips of known motion: frames that really are the views the exact flows say, and an input
warping error that is zero for a whole-pixel pan and small for zoom and roll."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fst.assets import sample_photos_dir
from fst.core.errors import FstError
from fst.io.images import open_rgb
from fst.metrics.known_motion import affine_clip, pan, zoom
from fst.metrics.warping import warping_error


def photo(name: str = "arc_de_triomphe.jpg", short: int = 128) -> torch.Tensor:
    """A sample photo (3, H, W) in [0, 1], resized (antialiased) to a short side of `short` px."""
    x = torch.from_numpy(np.array(open_rgb(sample_photos_dir() / name))).permute(2, 0, 1).float() / 255
    h, w = x.shape[-2:]
    size = (round(h * short / min(h, w)), round(w * short / min(h, w)))
    return F.interpolate(x[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)


def test_a_pan_is_crops_moving_by_the_step_with_a_constant_flow_and_the_left_strip_masked():
    clip = pan(photo(), 5, 64, 3)
    assert clip.frames.shape == (5, 3, 64, 64) and clip.flows.shape == (4, 2, 64, 64)
    assert clip.masks.shape == (4, 1, 64, 64) and clip.masks.dtype == torch.bool
    assert torch.equal(clip.frames[1:, ..., :-3], clip.frames[:-1, ..., 3:])  # the scene moves 3 px left
    assert torch.equal(clip.flows[:, 0], torch.full((4, 64, 64), -3.0)) and not clip.flows[:, 1].any()
    assert not clip.masks[..., :3].any() and clip.masks[..., 3:].all()


def test_a_diagonal_pan_and_its_frames_agree():
    clip = pan(photo(), 4, 48, (2, -3))
    assert torch.equal(clip.frames[1:, :, 3:, :-2], clip.frames[:-1, :, :-3, 2:])
    assert torch.equal(clip.flows[0, :, 0, 0], torch.tensor([-2.0, 3.0]))
    assert clip.masks[0, 0, :-3, 2:].all() and not clip.masks[0, 0, -3:].any() and not clip.masks[0, 0, :, :2].any()


def test_the_input_warping_error_under_the_exact_flow_is_zero_for_a_pan():
    assert warping_error(*pan(photo(), 8, 96, 3)) < 1e-20  # measured ~1e-31: float64 rounding only


@pytest.mark.parametrize("clip", [lambda p: zoom(p, 8, 96, 1.02), lambda p: zoom(p, 8, 96, 0.98),
                                  lambda p: affine_clip(p, 8, 96, angle=1.0)], ids=["zoom_in", "zoom_out", "roll"])
def test_zoom_and_roll_are_small_under_the_exact_flow_and_large_without_it(clip):
    frames, flows, masks = clip(photo())
    exact = warping_error(frames, flows, masks)
    assert 0 < exact < 3e-3  # bilinear resampling twice: measured 0.8-1.5e-3 on this photo
    assert warping_error(frames, torch.zeros_like(flows), masks) > 5 * exact


def test_a_zoom_flows_outward_from_the_centre_and_masks_the_border_that_leaves():
    clip = zoom(photo(), 3, 65, 1.1)
    assert clip.flows[:, :, 32, 32].abs().max() < 1e-6  # the centre stays
    torch.testing.assert_close(clip.flows[0, :, 0, 0], torch.tensor([-3.2, -3.2]))  # 32 px out: 10 % further
    assert not clip.masks[0, 0, 0].any() and clip.masks[0, 0, 4:-4, 4:-4].all()
    out = zoom(photo(), 3, 65, 1 / 1.1)  # zooming out brings the whole frame into the next one
    assert out.masks.all()


def test_motion_that_leaves_the_photo_or_is_not_whole_pixels_is_refused():
    with pytest.raises(FstError, match="leaves the"):
        pan(photo(), 20, 96, 5)
    with pytest.raises(FstError, match="whole pixels"):
        pan(photo(), 3, 32, (1.5, 0))  # type: ignore[arg-type]
    with pytest.raises(FstError, match="leaves the"):
        affine_clip(photo(), 2, 128, angle=10)
