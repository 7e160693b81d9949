"""8-bit RGB images and float tensors in [0, 1], both ways, with numpy alone.

`fst stylize` needs nothing more of torchvision than these two conversions, and importing
torchvision.transforms imports torch._dynamo with it (through torchvision.ops): about as long as
importing torch itself. The formulas are torchvision's, so outputs are the same to the bit: 8 bits
to [0, 1] divides by 255; back, a float is multiplied by 255 and truncated (not rounded), and 8-bit
values are taken as they are.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB image as a (3, H, W) float32 tensor in [0, 1], a channels-last view of the pixels (the
    layout the CPU pass runs in; `.contiguous()` gives the planar one)."""
    pixels = torch.from_numpy(np.array(img.convert("RGB"), dtype=np.uint8))
    return pixels.permute(2, 0, 1).float().div_(255)


def to_image(x: torch.Tensor) -> Image.Image:
    """A (3, H, W) tensor as an 8-bit RGB image: uint8 values as they are, floats in [0, 1] times 255,
    truncated."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(x.shape)}")
    pixels = x.detach().cpu()
    if pixels.dtype != torch.uint8:
        pixels = pixels.float().mul(255).to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()), "RGB")
