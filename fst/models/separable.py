"""The depthwise-separable convolution of the lighter transformer (``net: mobile``).

A k x k conv from c_in to c_out channels costs k² · c_in · c_out multiply-adds a pixel; as a
depthwise k x k conv (one filter per channel) followed by a pointwise 1 x 1 conv it costs
k² · c_in + c_in · c_out (Howard et al. 2017, MobileNets). In the residual blocks of the default
network (128 channels, 3x3) that is 8.4 times fewer: the blocks are about 60% of the default
network's multiply-adds, which drop about twofold (docs/benchmarks.md measures time and quality).
The receptive field is the k x k conv's, so tiling's overlap (fst/models/tiling.py) is unchanged.

Both convs keep a bias, though the instance norm after them cancels it: every conv of fst's
networks is then (weight, bias), the form the artefact readers expect (fst/artefacts/exported.py
reads an ONNX graph's Conv nodes as (weight, bias) pairs in module order: depthwise, then pointwise).
"""

from __future__ import annotations

import torch
from torch import nn


class SeparableConv2d(nn.Module):
    """Depthwise k x k conv (groups = c_in), then pointwise 1 x 1 conv: a drop-in for nn.Conv2d(c_in, c_out, k, stride)
    after a reflection pad."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, stride, groups=c_in)
        self.pointwise = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))
