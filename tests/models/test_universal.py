"""The universal network: its two style transforms do what their formulas say, any image size works,
tiles match a whole pass, and a blend of one painting is that painting."""

from __future__ import annotations

import pytest
import torch

from fst.core.errors import FstError
from fst.models import style_transforms, tiling
from fst.models.universal import BoundStyles, UniversalNet, min_side

torch.manual_seed(0)


def _features(c: int = 16, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g)  # correlated channels, as real features are
    return (mix @ torch.randn(1, c, h * w, generator=g)).reshape(1, c, h, w) + torch.randn(c, 1, 1, generator=g)


def test_intra_gives_each_channel_the_paintings_mean_and_std():
    f, s = _features(seed=1), _features(seed=2) * 3
    intra = style_transforms.Intra(16)
    t = intra(f, intra.stats(s))
    var, mean = torch.var_mean(t.flatten(2), -1, correction=0)
    svar, smean = torch.var_mean(s.flatten(2), -1, correction=0)
    torch.testing.assert_close(mean, smean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(var.sqrt(), svar.sqrt(), atol=1e-2, rtol=1e-3)


def test_inter_gives_the_features_the_paintings_covariance():
    f, s = _features(h=20, w=20, seed=3), _features(h=16, w=16, seed=4)
    inter = style_transforms.Inter(16)
    t = inter(f, inter.stats(s))
    cov_t = torch.cov(t.flatten(2)[0])
    cov_s = torch.cov(s.flatten(2)[0])
    torch.testing.assert_close(cov_t, cov_s, atol=1e-2 * cov_s.abs().max().item(), rtol=1e-2)
    torch.testing.assert_close(t.flatten(2)[0].mean(-1), s.flatten(2)[0].mean(-1), atol=1e-3, rtol=1e-3)


def test_the_families_differ_as_their_losses_do():
    # Shuffling positions independently in every channel keeps each channel's distribution and breaks every
    # relation between channels: the intra statistics stay, the inter ones change.
    s = _features(h=24, w=24, seed=5)
    flat = s.flatten(2)
    shuffled = torch.stack([row[torch.randperm(row.numel())] for row in flat[0]])[None].reshape_as(s)
    intra, inter = style_transforms.Intra(16), style_transforms.Inter(16)
    torch.testing.assert_close(intra.stats(shuffled), intra.stats(s), atol=1e-5, rtol=1e-5)
    assert (inter.stats(shuffled)[1:] - inter.stats(s)[1:]).abs().max() > 0.1


def test_statistics_rows_are_what_artefacts_check():
    for name in style_transforms.TRANSFORMS:
        t = style_transforms.get(name, 16)
        assert t.stats(_features()).shape == (style_transforms.stats_rows(name, 16), 16)
    with pytest.raises(FstError, match="unknown style transform"):
        style_transforms.get("gram", 16)


@pytest.mark.parametrize("layer", ["relu2_1", "relu3_1"])
def test_any_size_comes_back_the_same_size(layer):
    net = UniversalNet("intra", layer).eval()
    stats = net.style_stats(torch.rand(1, 3, 40, 40))
    for h, w in [(min_side(layer), 13), (67, 91), (33, 32)]:
        assert net(torch.rand(1, 3, h, w), stats).shape == (1, 3, h, w)
    with pytest.raises(FstError, match="too small"):
        net.style_stats(torch.rand(1, 3, min_side(layer) - 1, 40))


def test_a_blend_of_one_painting_is_that_painting():
    net = UniversalNet("inter").eval()
    a, b = net.style_stats(torch.rand(1, 3, 48, 48)), net.style_stats(torch.rand(1, 3, 48, 48) ** 3)
    x = torch.rand(2, 3, 36, 44)
    bound = BoundStyles(net, torch.stack([a, b]))
    torch.testing.assert_close(bound(x, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))[0], net(x, a)[0])
    torch.testing.assert_close(bound(x, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))[1], net(x, b)[1])
    half = bound(x, torch.full((2, 2), 0.5))
    assert not torch.allclose(half, net(x, a)) and not torch.allclose(half, net(x, b))


@pytest.mark.parametrize("transform", ["intra", "inter"])
def test_tiles_match_one_pass(transform):
    # Tiles take the whole image's statistics (channel means and variances for intra, whitening for inter), so they
    # give what one pass gives up to the blending of their overlaps.
    torch.manual_seed(1)
    net = UniversalNet(transform, "relu2_1").eval()
    bound = BoundStyles(net, net.style_stats(torch.rand(1, 3, 64, 64))[None])
    x = torch.rand(1, 3, 152, 192)  # on the stride grid: no reflect-padding at the image's edge
    x[..., :80, :] *= 0.3  # two halves of other statistics: a tile of its own statistics shows it
    with torch.no_grad():
        whole = bound(x)
        tiled = tiling.stylize_tiled(bound, x, tile=96, overlap=40, stats_side=4096)
        naive = tiling.run_tiled(bound, x, 96, 40)  # each tile's own statistics
    assert (tiled - whole).abs().max() < 1e-4 < 1e-3 < (naive - whole).abs().max()
    assert net.transform.frozen is None if transform == "inter" else True  # nothing left frozen after tiling
