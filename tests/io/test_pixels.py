"""8-bit images and float tensors (fst/io/pixels.py): torchvision's formulas to the bit, without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from fst.io.pixels import to_image, to_tensor


def test_both_ways_match_torchvision_to_the_bit() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    assert torch.equal(to_tensor(img), TF.pil_to_tensor(img).float().div(255))
    assert torch.equal(to_tensor(img).contiguous(), TF.to_tensor(img))
    x = torch.rand(3, 37, 53, generator=torch.Generator().manual_seed(0))
    x[0, 0, :3] = torch.tensor([0.0, 1.0, 254.9 / 255])  # the ends, and a value truncation and rounding disagree on
    assert np.array_equal(np.asarray(to_image(x)), np.asarray(TF.to_pil_image(x)))
    levels = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    assert np.array_equal(np.asarray(to_image(levels)), np.asarray(TF.to_pil_image(levels)))  # 8-bit: as they are


def test_a_grey_or_alpha_image_comes_as_rgb() -> None:
    grey = Image.fromarray(np.full((4, 5), 200, np.uint8), "L")
    assert to_tensor(grey).shape == (3, 4, 5) and float(to_tensor(grey).max()) == pytest.approx(200 / 255)
    rgba = Image.new("RGBA", (5, 4), (10, 20, 30, 0))
    assert to_tensor(rgba)[:, 0, 0].mul(255).round().tolist() == [10, 20, 30]


def test_a_tensor_that_is_not_one_rgb_image_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expected a \(3, H, W\) tensor, got \(1, 3, 4, 4\)"):
        to_image(torch.zeros(1, 3, 4, 4))
