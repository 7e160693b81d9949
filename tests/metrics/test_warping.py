"""The warping error (Lai et al. 2018): the backward warp, its validity mask, and the error's size on
clips whose motion and flicker are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fst.assets import sample_photos_dir
from fst.core.errors import FstError
from fst.io.images import open_rgb
from fst.metrics.known_motion import pan
from fst.metrics.warping import flicker_ratio, inside, warp, warping_error

SIGMA = 0.02  # per-frame noise std: flicker of about 5/255


def photo(name: str = "ajanta_cave.jpg", short: int = 128) -> torch.Tensor:
    """A sample photo (3, H, W) in [0, 1], resized (antialiased) to a short side of `short` px."""
    x = torch.from_numpy(np.array(open_rgb(sample_photos_dir() / name))).permute(2, 0, 1).float() / 255
    h, w = x.shape[-2:]
    size = (round(h * short / min(h, w)), round(w * short / min(h, w)))
    return F.interpolate(x[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)


def constant_flow(n: int, h: int, w: int, dx: float, dy: float) -> torch.Tensor:
    return torch.tensor([dx, dy]).view(1, 2, 1, 1).expand(n, 2, h, w).clone()


def test_zero_flow_is_the_identity_and_every_sample_is_inside():
    image = photo()[None, :, :64, :80]
    flow = torch.zeros(1, 2, 64, 80)
    torch.testing.assert_close(warp(image, flow), image, atol=1e-6, rtol=0)
    assert inside(flow).all()


@pytest.mark.parametrize(("dx", "dy"), [(3, -2), (-5, 4), (0, 7)])
def test_integer_shift_is_a_roll_and_the_mask_is_where_the_roll_did_not_wrap(dx: int, dy: int):
    image = photo()[None, :, :64, :80]
    moved, mask = warp(image, constant_flow(1, 64, 80, dx, dy)), inside(constant_flow(1, 64, 80, dx, dy))
    rolled = torch.roll(image, shifts=(-dy, -dx), dims=(2, 3))  # rolled(x) = image(x + d), wrapping
    y, x = torch.meshgrid(torch.arange(64), torch.arange(80), indexing="ij")
    expected = (x + dx >= 0) & (x + dx <= 79) & (y + dy >= 0) & (y + dy <= 63)
    assert torch.equal(mask[0, 0], expected)
    torch.testing.assert_close(moved[..., expected], rolled[..., expected], atol=1e-5, rtol=0)


def test_half_pixel_shift_averages_neighbours_and_just_outside_is_masked():
    image = photo()[None, :, :32, :32]
    half = warp(image, constant_flow(1, 32, 32, 0.5, 0))
    torch.testing.assert_close(half[..., :-1], (image[..., :-1] + image[..., 1:]) / 2, atol=1e-5, rtol=0)
    mask = inside(constant_flow(1, 32, 32, 0.01, 0))[0, 0]
    assert not mask[:, -1].any() and mask[:, :-1].all()  # x = 31.01 is past the last pixel centre


def test_a_static_clip_has_warping_error_zero_and_flicker_ratio_one():
    frames = photo()[None, :, :48, :48].repeat(4, 1, 1, 1)
    flows, masks = torch.zeros(3, 2, 48, 48), torch.ones(3, 1, 48, 48, dtype=torch.bool)
    assert warping_error(frames, flows, masks) < 1e-20  # float64 rounding of the sample grid: ~1e-32
    assert flicker_ratio(frames, frames, flows, masks) == pytest.approx(1, abs=1e-12)


def test_a_pan_under_its_exact_flow_has_no_error_and_noise_adds_six_sigma_squared():
    clip = pan(photo(), 8, 96, 3)
    assert warping_error(*clip) < 1e-20  # crops warped by whole pixels: measured ~1e-31
    noisy = clip.frames + SIGMA * torch.randn_like(clip.frames)
    # E‖n_t − n_{t+1}‖² = 2 frames x 3 channels x σ²
    assert warping_error(noisy, clip.flows, clip.masks) == pytest.approx(6 * SIGMA**2, rel=0.1)


def test_a_pixelwise_stylization_keeps_a_pan_stable_and_per_frame_noise_does_not():
    clip = pan(photo("colosseum.jpg"), 6, 96, (2, 1))
    curved = clip.frames ** 0.6  # the same function of each pixel in every frame: moves with the scene
    assert warping_error(curved, clip.flows, clip.masks) < 1e-20
    flickering = curved + SIGMA * torch.randn_like(curved)
    assert warping_error(flickering, clip.flows, clip.masks) > 0.9 * 6 * SIGMA**2
    assert flicker_ratio(flickering, clip.frames, clip.flows, clip.masks) > 2


def test_masked_pixels_do_not_count():
    clip = pan(photo(), 3, 64, 4)
    garbage = clip.frames.clone()
    garbage[0, :, :, :4] = 1.0  # the strip of frame 0 that leaves frame 1: masked
    assert warping_error(garbage, clip.flows, clip.masks) < 1e-20
    assert warping_error(garbage, clip.flows, torch.ones_like(clip.masks)) < 1e-20  # out-of-frame: still left out
    garbage[0, :, :, 4:8] = 1.0  # visible in frame 1
    assert warping_error(garbage, clip.flows, clip.masks) > 1e-3


def test_wrong_shapes_and_empty_masks_are_errors():
    frames, flows = torch.zeros(3, 3, 8, 8), torch.zeros(2, 2, 8, 8)
    with pytest.raises(FstError, match="T ≥ 2 frames"):
        warping_error(frames, flows[:1], torch.ones(1, 1, 8, 8))
    with pytest.raises(FstError, match="no pixel"):
        warping_error(frames, flows, torch.zeros(2, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(FstError, match="differ in shape"):
        flicker_ratio(frames[:, :, :4], frames, flows, torch.ones(2, 1, 8, 8))
