"""The image transformation network (Johnson et al. 2016) with the fixes the field settled on.

    9x9 conv (c) -> 3x3 conv /2 (2c) -> 3x3 conv /2 (4c) -> R residual blocks (4c)
    -> nearest upsample x2 + 3x3 conv (2c) -> nearest upsample x2 + 3x3 conv (c) -> 9x9 conv (3)

- Reflection padding everywhere (no dark borders), affine instance norm (Ulyanov et al.),
  nearest-upsample + conv instead of transposed conv (no checkerboard; Odena et al. 2016).
- Any H x W works: each upsample goes back to the exact size the matching downsample saw,
  so odd sizes come out the same size as they went in.
- Output (`output`): ``linear``, the classic recipe's (Johnson et al., pytorch/examples): the network
  sees the photo in 0-255 and its last conv's raw values are read as 0-255, unbounded while training
  (so the loss sees, and pushes back, values out of range) and clamped in eval mode (so every
  output, exported or not, is a valid image). ``sigmoid`` maps to (0, 1) instead; it is what fst
  used first, and it leaves blobs: a pixel the style loss drives past the range ends with a logit
  far out on the flat of the sigmoid, where no gradient reaches it (starry_night, 400 steps, 20
  held-out photos: every clipped pixel had |logit| > 4, up to 304; clipped pixels 2.6-3.5% with
  white and cyan blobs in the grids, 0.5-1.4% and none with the linear output; docs/loss_study.md).
  ``output_gain`` g reads the last conv's raw value in units of 255/g: the classic recipe's is 1.
  Adam moves each weight by about the learning rate whatever the loss's scale, so at g = 1 the
  output moves 1/255 per unit step, 64 times slower than a sigmoid near its centre (slope 1/4):
  after 100 steps (loss study budget, 16 channels) the pictures were still grey-olive. g = 4
  (the default) moved style vs photo 1.51 -> 1.01 (gram) and 1.32 -> 0.82 (mean_std) on
  starry_night at a lower content distance, with clipped pixels <= 1%; g = 16 gave more style
  but 4% clipped pixels (docs/loss_study.md).
  With ``grey_start`` (the default) the linear output's last bias starts at mid-grey, as a
  sigmoid's output starts at 0.5; PyTorch's default init starts it near black, which the classic
  recipe's absolute losses climb out of in a few steps but fst's relative ones did not within 100
  (starry_night, 16 channels: 11-27% clipped pixels for 6 of 7 losses). The classic recipe keeps
  the default init (``grey_start=False``, ``output_gain=1``).
  Defaults (c=32, R=5) give the classic ~1.68 M parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fst.errors import FstError

# The smallest input side the network takes, found by trying: conv_in's reflection pad of 4 needs
# more than 4 px, and the two stride-2 convs then give 5 -> 3 -> 2, still enough for the 3x3 pads.
MIN_SIDE = 5
OUTPUTS = ("sigmoid", "linear")
# What rebuilds a trained network (`config`, kept in checkpoints and artefacts); grey_start only
# sets an initial value that trained weights replace.
CONFIG_KEYS = ("channels", "n_residual", "output", "output_gain")
PIXEL_SCALE = 255.0  # the linear output's units: 8-bit pixel values, as the classic recipe trains


class ConvLayer(nn.Sequential):
    """Reflection pad + conv (+ instance norm + ReLU)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True):
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(c_in, c_out, kernel, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(c_out, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))) (He et al. 2016, as in Johnson's supplementary)."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(ConvLayer(c, c, 3), ConvLayer(c, c, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Module):
    """Nearest-neighbour upsample to an exact size, then conv: no checkerboard artefacts."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = ConvLayer(c_in, c_out, 3)

    def forward(self, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class TransformerNet(nn.Module):
    """Photo in, stylised photo out; both (B, 3, H, W) RGB in [0, 1]."""

    def __init__(self, channels: int = 32, n_residual: int = 5, output: str = "linear", output_gain: float = 4.0,
                 grey_start: bool = True):
        super().__init__()
        if output not in OUTPUTS:
            raise FstError(f"unknown transformer output {output!r} (choose from {', '.join(OUTPUTS)})")
        c = channels
        if not (isinstance(output_gain, (int, float)) and 0 < output_gain < float("inf")):
            raise FstError(f"output_gain must be a positive number, got {output_gain!r}")
        self.config = {"channels": channels, "n_residual": n_residual, "output": output, "output_gain": float(output_gain)}
        self.linear = output == "linear"
        self.output_unit = PIXEL_SCALE / float(output_gain)  # raw conv value per full range
        self.conv_in = ConvLayer(3, c, 9)
        self.down1 = ConvLayer(c, 2 * c, 3, stride=2)
        self.down2 = ConvLayer(2 * c, 4 * c, 3, stride=2)
        self.residual = nn.Sequential(*[ResidualBlock(4 * c) for _ in range(n_residual)])
        self.up1 = UpsampleConv(4 * c, 2 * c)
        self.up2 = UpsampleConv(2 * c, c)
        self.conv_out = ConvLayer(c, 3, 9, norm=False, relu=False)
        if self.linear and grey_start:  # init only: a checkpoint's weights replace it, so not in config
            nn.init.constant_(self.conv_out[1].bias, self.output_unit / 2)

    @property
    def weight_dtype(self) -> torch.dtype:
        """The dtype the network computes in (every weight shares it)."""
        return self.conv_in[1].weight.dtype

    @property
    def weight_device(self) -> torch.device:
        return self.conv_in[1].weight.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.conv_in(x * PIXEL_SCALE if self.linear else x)
        h1 = self.down1(h0)
        y = self.residual(self.down2(h1))
        y = self.up1(y, h1.shape[-2:])
        y = self.conv_out(self.up2(y, h0.shape[-2:]))
        if not self.linear:
            return torch.sigmoid(y)
        y = y / self.output_unit
        # Unclamped while training: the loss sees (and corrects) values out of range; a clamp
        # there would stop their gradient.
        return y if self.training else y.clamp(0, 1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
