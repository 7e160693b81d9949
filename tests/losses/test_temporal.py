"""The temporal-stability term's parts: motions drawn as asked, moving images, the mask, the loss."""

from __future__ import annotations

import torch

from fst.losses import temporal
from fst.losses.temporal import Motion

STILL = Motion(shift=0, rotation_deg=0, scale=0, warp=0, noise=0)


def photo(n: int = 2, h: int = 24, w: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(1))


def test_no_motion_is_the_identity() -> None:
    x = photo()
    grid = temporal.random_grid(2, 24, 32, STILL)
    assert torch.allclose(temporal.move(x, grid), x, atol=1e-5)
    assert temporal.inside(grid).all()


def test_a_whole_pixel_shift_moves_the_image_by_that_pixel() -> None:
    x = photo(1)
    grid = temporal.random_grid(1, 24, 32, STILL)
    grid[..., 0] += 2 / 32  # read one pixel to the right
    moved, mask = temporal.move(x, grid), temporal.inside(grid)
    assert torch.allclose(moved[..., :-1], x[..., 1:], atol=1e-5)
    assert mask[..., :-1].all() and not mask[..., -1].any()  # the last column comes from outside


def test_motions_stay_within_their_ranges_and_a_seed_fixes_them() -> None:
    m = Motion(shift=0.05, rotation_deg=0, scale=0, warp=0)
    grids = temporal.random_grid(64, 16, 16, m, torch.Generator().manual_seed(0))
    identity = temporal.random_grid(1, 16, 16, STILL)
    offset = (grids - identity).flatten(1, 2)  # a pure shift: the same offset at every pixel
    assert torch.allclose(offset, offset[:, :1], atol=1e-5)
    assert offset.abs().max() <= 0.1 + 1e-6 and offset.abs().max() > 0.05  # ±5 % of the side = ±0.1 normalised
    again = temporal.random_grid(64, 16, 16, m, torch.Generator().manual_seed(0))
    assert torch.equal(grids, again)


def test_rotation_keeps_pixel_distances_on_a_non_square_crop() -> None:
    m = Motion(shift=0, rotation_deg=30, scale=0, warp=0)
    g = temporal.random_grid(1, 20, 40, m, torch.Generator().manual_seed(3))[0]
    px = torch.stack([(g[..., 0] + 1) * 40 / 2, (g[..., 1] + 1) * 20 / 2], -1)  # normalised -> pixels
    step_x = (px[:, 1:] - px[:, :-1]).norm(dim=-1)
    step_y = (px[1:] - px[:-1]).norm(dim=-1)
    assert torch.allclose(step_x, torch.ones_like(step_x), atol=1e-4)  # a rigid motion: 1 px stays 1 px
    assert torch.allclose(step_y, torch.ones_like(step_y), atol=1e-4)


def test_loss_is_zero_for_a_pixelwise_network_and_grows_with_flicker() -> None:
    x = photo()
    grid = temporal.random_grid(2, 24, 32, Motion(noise=0), torch.Generator().manual_seed(2))
    mask = temporal.inside(grid)
    net = lambda t: 0.8 * t.flip(1) + 0.1  # a per-pixel linear map commutes with any (bilinear) motion  # noqa: E731
    assert temporal.temporal_loss(net(temporal.move(x, grid)), temporal.move(net(x), grid), mask).max() < 1e-10
    jitter = net(temporal.move(x, grid)) + 0.1 * torch.randn(2, 3, 24, 32)
    loss = temporal.temporal_loss(jitter, temporal.move(net(x), grid), mask)
    assert loss.shape == (2,) and torch.allclose(loss, torch.full((2,), 0.01), rtol=0.15)  # σ² per channel


def test_noise_has_the_asked_sigma_and_stays_in_range() -> None:
    x = torch.full((1, 3, 64, 64), 0.5)
    noisy = temporal.with_noise(x, 0.02)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert abs((noisy - x).std().item() - 0.02) < 0.002
    fixed = [temporal.with_noise(x, 0.02, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*fixed)
