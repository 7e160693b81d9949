"""The universal style network: any painting in one pass, no training per painting.

    photo -> VGG16 encoder (ImageNet weights, frozen, up to `layer`) -> f
    painting -> the same encoder -> its statistics s (computed once per painting)
    t = transform(f, s)   (fst/models/style_transforms.py: ``intra`` AdaIN or ``inter`` WCT)
    t -> decoder (mirror of the encoder: reflection-padded 3x3 convs, nearest upsampling) -> image

The decoder learns to invert the encoder. Trained on photos alone (reconstruction: the painting enters
only through t), it serves both transforms and every painting, as WCT's decoders do (Li et al. 2017);
trained with a style loss on paintings, it is AdaIN's (Huang & Belongie 2017). The encoder's weights
are part of the network and of its checkpoints: the decoder is only right for the features it was
trained on, so a file never depends on which VGG weights a machine has cached.

The encoder's depth sets the detail: ``relu3_1`` (two pools) keeps fine structure and costs, at
1080p, about 1.4x the per-painting transformer (0.47 TFLOP encoder + 0.47 decoder, against 0.64);
``relu4_1`` carries larger patterns of the painting at twice the encoder cost.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fst.core.errors import FstError
from fst.models import cpu_fast, style_transforms
from fst.models.cpu_fast import conv_relu, cpu_layout
from fst.models.vgg import Normalize
from fst.models.vgg_arch import CFGS, conv_indices, layer_names

ARCH = "vgg16"  # torchvision's VGG16: the same weights online and offline (fst/models/weights.py)
LAYERS = ("relu2_1", "relu3_1", "relu4_1")
CONFIG_KEYS = ("transform", "layer", "width")
KIND = "universal"  # what checkpoints and artefacts call this network


def _encoder_plan(layer: str) -> list[str]:
    """VGG16's module names up to and including `layer`."""
    names = layer_names(ARCH)
    return names[: names.index(layer) + 1]


def min_side(layer: str) -> int:
    """The smallest input side: each pool halves it, and the decoder's first reflection pad needs 2 px."""
    return 2 * 2 ** sum(name.startswith("pool") for name in _encoder_plan(layer))


def pad_conv_relu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """ReLU(conv(reflection-pad(x, 1))); in eager CPU inference one oneDNN op for conv and ReLU (cpu_fast)."""
    return conv_relu(conv, F.pad(x, (1, 1, 1, 1), mode="reflect"))


class Encoder(nn.Module):
    """VGG16's features up to `layer` (max pools), frozen; returns the features and the size each pool
    saw, so the decoder can go back to exactly that size (odd sizes included). Its convs pad by
    reflection, not with zeros as VGG trained (as AdaIN's encoder does): no dark frame in the features,
    and a tile's border then sees what tiled inference assumes (fst/models/tiling.py)."""

    def __init__(self, layer: str):
        super().__init__()
        self.names = _encoder_plan(layer)
        self.normalize = Normalize("torchvision")
        c_in, convs = 3, []
        widths = iter(int(v) for v in CFGS[ARCH] if v != "M")
        for name in self.names:
            if name.startswith("conv"):
                c_out = next(widths)
                convs.append(nn.Conv2d(c_in, c_out, 3))
                c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.channels = c_in
        self.requires_grad_(False)
        self.eval()  # frozen from the start: a LightningModule then sees it in eval mode at on_fit_start

    def load_vgg(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy the convs from a torchvision VGG16 `features` state dict (fst.models.weights)."""
        for conv, index in zip(self.convs, conv_indices(ARCH)):
            conv.weight.copy_(state_dict[f"{index}.weight"])
            conv.bias.copy_(state_dict[f"{index}.bias"])

    def forward(self, x: torch.Tensor, taps: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[list[int]]]:
        """(features at the last layer, the size each pool saw); each block's first ReLU output
        (relu1_1, relu2_1, ...) is appended to `taps` when given (what reconstruction is scored on)."""
        h, sizes, convs = self.normalize(cpu_layout(x)), [], iter(self.convs)
        for name in self.names:
            if name.startswith("conv"):  # in VGG a ReLU follows every conv: applied with it
                h = pad_conv_relu(next(convs), h)
            elif name.startswith("relu"):
                if taps is not None and name.endswith("_1"):
                    taps.append(h)
            else:
                sizes.append(list(h.shape[-2:]))
                h = F.max_pool2d(h, 2, 2)
        return h, sizes


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3))


class Decoder(nn.Module):
    """The encoder mirrored, as AdaIN's decoder mirrors VGG: per VGG block, deepest first, its convs in
    reverse (the last one narrowing to the block below's width), then a nearest upsample to the size
    that block's pool saw; the first block ends in a 3x3 conv to RGB. `width` scales every width."""

    def __init__(self, encoder: Encoder, width: float = 1.0):
        super().__init__()
        blocks: dict[int, list[int]] = {}
        for name, conv in zip([n for n in encoder.names if n.startswith("conv")], encoder.convs):
            blocks.setdefault(int(name[4]), []).append(conv.out_channels)
        scaled = {b: max(1, round(ws[0] * width)) for b, ws in blocks.items()}
        self.stages = nn.ModuleList()
        c_in = encoder.channels
        for b in sorted(blocks, reverse=True):
            layers = []
            for i in range(len(blocks[b])):
                last = i == len(blocks[b]) - 1
                if last and b == 1:
                    break  # the RGB conv (`out`) ends the first block
                c_out = scaled[b - 1] if last else scaled[b]
                layers.append(_conv(c_in, c_out))
                c_in = c_out
            self.stages.append(nn.ModuleList(layers))
        self.out = _conv(c_in, 3)
        nn.init.constant_(self.out[1].bias, 0.5)  # start at mid-grey, as the transformer's linear output does

    def forward(self, t: torch.Tensor, sizes: list[list[int]]) -> torch.Tensor:
        h, upsample = cpu_layout(t), None  # each upsample waits for the conv after it: together they may
        for stage, size in zip(self.stages, [*reversed(sizes), None]):  # run at the low resolution
            for layer in stage:  # (ReflectionPad2d(1), Conv2d): the parameters keep their names
                if upsample is not None and cpu_fast.inference_here(h) and cpu_fast.doubles(h, upsample):
                    h = cpu_fast.upsampled_conv(layer[1], h).relu_()
                else:
                    if upsample is not None:
                        h = F.interpolate(h, size=upsample, mode="nearest")
                    h = pad_conv_relu(layer[1], h)
                upsample = None
            if upsample is not None:
                h = F.interpolate(h, size=upsample, mode="nearest")
            upsample = size
        y = self.out(h).contiguous()  # NCHW out, whatever the layout inside: 3 channels, a cheap copy
        return y if self.training else y.clamp(0, 1)


class UniversalNet(nn.Module):
    """Photo (B, 3, H, W) in [0, 1] and a painting's statistics (K, C) -> stylized photo in [0, 1].

    `net.style_stats(painting)` computes the statistics once; `net(x, stats)` stylizes; `net(x, stats,
    w)` with stats (N, K, C) and w (B, N) blends N paintings."""

    def __init__(self, transform: str = "intra", layer: str = "relu3_1", width: float = 1.0):
        super().__init__()
        if layer not in LAYERS:
            raise FstError(f"unknown universal layer {layer!r} (choose from {', '.join(LAYERS)})")
        if not (isinstance(width, (int, float)) and 0 < width <= 4):
            raise FstError(f"width must be a number in (0, 4], got {width!r}")
        self.encoder = Encoder(layer)
        self.transform = style_transforms.get(transform, self.encoder.channels)
        self.decoder = Decoder(self.encoder, float(width))
        self.config: dict[str, Any] = {"transform": transform, "layer": layer, "width": float(width)}
        self.min_side = min_side(layer)
        self.tile_align = self.min_side // 2  # 2^pools: a tile must start on the deepest feature's grid

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.decoder.out[1].weight.dtype

    @property
    def weight_device(self) -> torch.device:
        return self.decoder.out[1].weight.device

    def train(self, mode: bool = True) -> "UniversalNet":
        super().train(mode)
        self.encoder.eval()  # frozen: its features are what the decoder learns to invert
        return self

    def with_transform(self, transform: str) -> "UniversalNet":
        """This network with another transform (same encoder and decoder, shared weights)."""
        other = UniversalNet.__new__(UniversalNet)
        nn.Module.__init__(other)
        other.encoder, other.decoder = self.encoder, self.decoder
        other.transform = style_transforms.get(transform, self.encoder.channels).to(self.weight_device)
        other.config = {**self.config, "transform": transform}
        other.min_side, other.tile_align = self.min_side, self.tile_align
        other.train(self.training)
        return other

    def check_side(self, x: torch.Tensor, what: str = "image") -> None:
        if min(x.shape[-2:]) < self.min_side:
            raise FstError(f"{what} too small: {x.shape[-1]}x{x.shape[-2]}; this universal network needs at least "
                           f"{self.min_side} px a side")

    def style_stats(self, painting: torch.Tensor) -> torch.Tensor:
        """The painting's (1, 3, H, W) statistics under this network's transform, fp32 (K, C)."""
        self.check_side(painting, "style image")
        f, _ = self.encoder(painting.to(self.weight_device, self.weight_dtype))
        return self.transform.stats(f)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's attempt at the photo from its own features: what reconstruction training scores."""
        f, sizes = self.encoder(x)
        return self.decoder(f, sizes)

    def forward(self, x: torch.Tensor, stats: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        f, sizes = self.encoder(x)
        if stats.dim() == 2:
            t = self.transform(f, stats)
        else:
            if w is None:
                raise FstError(f"{stats.shape[0]} paintings' statistics need weights w of shape (B, {stats.shape[0]})")
            t = style_transforms.blend(self.transform, f, stats, w)
        return self.decoder(t, sizes)


class BoundStyles(nn.Module):
    """A universal network with N paintings' statistics bound in: `net(x)` for one painting, `net(x, w)`
    (w (B, N)) for a choice or blend, as a per-painting network of N styles is called."""

    def __init__(self, net: UniversalNet, stats: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("stats", stats.float())
        self.n_styles = stats.shape[0]

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_styles == 1:
            return self.net(x, self.stats[0])
        if w is None:
            raise FstError(f"{self.n_styles} paintings are bound: pass style weights w of shape (B, {self.n_styles})")
        return self.net(x, self.stats, w)
