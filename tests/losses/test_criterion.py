"""The perceptual criterion: how its terms add up, with the default style-layer weights."""

from __future__ import annotations

import pytest
import torch

from fst import losses
from fst.losses.criterion import PerceptualLoss


@pytest.mark.parametrize("style_layers,expected", [
    (None, {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 0.1}),  # the deepest would rule
    (["relu1_2", "relu4_3"], {"relu1_2": 1.0, "relu4_3": 1.0}),  # layers of one's own: equal weights
])
def test_style_is_the_layer_weighted_sum_of_the_per_layer_terms(vgg16_weights, style_layers, expected) -> None:
    criterion = PerceptualLoss("mean_std", "vgg16", style_layers=style_layers, vgg_weights=vgg16_weights)
    assert criterion.layer_weights == expected
    torch.manual_seed(0)
    criterion.add_style(torch.rand(1, 3, 48, 40))
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = criterion(y, x)
    weighted = sum(w * out[f"style/{layer}"] for layer, w in expected.items())
    assert out["style"].item() == pytest.approx(losses.get("mean_std").weight * weighted.item(), rel=1e-5)
    assert out["total"].item() == pytest.approx(
        (out["content"] + out["style"] + criterion.tv_weight * out["tv"]).item(), rel=1e-5)


def test_classic_content_is_the_feature_mse(vgg16_weights) -> None:
    criterion = PerceptualLoss("gram_mse", "vgg16", content_loss="mse", content_weight=1e5, style_weight=1e10,
                               tv_weight=0.0, style_layer_weights=[1.0] * 4, vgg_weights=vgg16_weights)
    criterion.add_style(torch.rand(1, 3, 40, 40))
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    out = criterion(y, x)
    with torch.no_grad():
        fy, fx = criterion.vgg(y)["relu2_2"], criterion.vgg(x)["relu2_2"]
    assert out["content"].item() == pytest.approx(torch.nn.functional.mse_loss(fy, fx).item(), rel=1e-5)
    assert out["total"].item() == pytest.approx((1e5 * out["content"] + 1e10 * out["style"]).item(), rel=1e-5)
