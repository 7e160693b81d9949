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
- ``net``: ``johnson`` (the above) or ``mobile``, whose residual blocks' convs are depthwise-separable
  (fst/models/separable.py): c=32, R=5 has 0.38 M parameters. Its config says ``net``; a johnson
  network's config leaves the key out, so its files are what they were, and a file without it is johnson.
- Several paintings in one network (``n_styles`` N > 1): conditional instance norm (Dumoulin et al.
  2017). Every instance norm keeps one scale and shift (gamma, beta) per style, all other weights
  are shared; ``net(x, w)`` takes style weights w (B, N) per image, and each norm uses w @ gamma and
  w @ beta, so a one-hot w picks a style and a convex w blends styles. N = 1 is the plain
  affine instance norm, so single-style networks and their files are exactly what they were.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fst.core.errors import FstError
from fst.models import cpu_fast
from fst.models.separable import SeparableConv2d

# The smallest input side the network takes, found by trying: conv_in's reflection pad of 4 needs
# more than 4 px, and the two stride-2 convs then give 5 -> 3 -> 2, still enough for the 3x3 pads.
MIN_SIDE = 5
OUTPUTS = ("sigmoid", "linear")
# What rebuilds a trained network (`config`, kept in checkpoints and artefacts); grey_start only
# sets an initial value that trained weights replace.
CONFIG_KEYS = ("channels", "n_residual", "output", "output_gain", "n_styles")
# The kinds of network (`net`, a config key only when not the default): what a residual block's convs are.
BLOCK_CONVS: dict[str, type[nn.Module]] = {"johnson": nn.Conv2d, "mobile": SeparableConv2d}
NETS = tuple(BLOCK_CONVS)
DEFAULT_NET = "johnson"
PIXEL_SCALE = 255.0  # the linear output's units: 8-bit pixel values, as the classic recipe trains


class ConditionalInstanceNorm(nn.Module):
    """Instance norm with one (gamma, beta) row per style: y = IN(x) · (w @ gamma) + (w @ beta),
    w (B, N) the style weights of each image (Dumoulin et al. 2017)."""

    def __init__(self, channels: int, n_styles: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        # The affine instance norm's init for every style: N = 1 starts as the plain network does.
        self.weight = nn.Parameter(torch.ones(n_styles, channels))
        self.bias = nn.Parameter(torch.zeros(n_styles, channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        w = w.to(self.weight.dtype)
        gamma, beta = w @ self.weight, w @ self.bias
        # unsqueeze, not [:, :, None, None]: the exported graphs then need one op fewer to be read as data
        return self.norm(x) * gamma.unsqueeze(-1).unsqueeze(-1) + beta.unsqueeze(-1).unsqueeze(-1)


def _run(layers: nn.Module, x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Each layer in turn; the conditional norms also get the style weights."""
    for layer in layers:
        x = layer(x, w) if isinstance(layer, (ConditionalInstanceNorm, ConvLayer, ResidualBlock)) else layer(x)
    return x


class ConvLayer(nn.Sequential):
    """Reflection pad + conv (+ instance norm, conditional on the style when n_styles > 1, + ReLU)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True,
                 n_styles: int = 1, conv: type[nn.Module] = nn.Conv2d):
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), conv(c_in, c_out, kernel, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(c_out, affine=True) if n_styles == 1
                          else ConditionalInstanceNorm(c_out, n_styles))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        return _run(self, x, w)


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))) (He et al. 2016, as in Johnson's supplementary)."""

    def __init__(self, c: int, n_styles: int = 1, conv: type[nn.Module] = nn.Conv2d):
        super().__init__()
        self.body = nn.Sequential(ConvLayer(c, c, 3, n_styles=n_styles, conv=conv),
                                  ConvLayer(c, c, 3, relu=False, n_styles=n_styles, conv=conv))

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        return x + _run(self.body, x, w)


class UpsampleConv(nn.Module):
    """Nearest-neighbour upsample to an exact size, then conv: no checkerboard artefacts."""

    def __init__(self, c_in: int, c_out: int, n_styles: int = 1):
        super().__init__()
        self.conv = ConvLayer(c_in, c_out, 3, n_styles=n_styles)

    def forward(self, x: torch.Tensor, size: list[int], w: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"), w)


class TransformerNet(nn.Module):
    """Photo in, stylised photo out; both (B, 3, H, W) RGB in [0, 1]. With n_styles > 1 the style
    weights w (B, N) are a second input (`style_weights` builds them)."""

    # On the CPU, run conv_out in channels_last (_channels_last_conv); False keeps NCHW throughout,
    # as the classic recipe runs (the benchmarks' baseline).
    cpu_channels_last_out: bool = True
    # In eager CPU inference, the fast pass (_fast_forward); False runs the NCHW reference formulas.
    cpu_fast: bool = True

    def __init__(self, channels: int = 32, n_residual: int = 5, output: str = "linear", output_gain: float = 4.0,
                 grey_start: bool = True, n_styles: int = 1, net: str = DEFAULT_NET):
        super().__init__()
        if net not in NETS:
            raise FstError(f"unknown transformer net {net!r} (choose from {', '.join(NETS)})")
        if output not in OUTPUTS:
            raise FstError(f"unknown transformer output {output!r} (choose from {', '.join(OUTPUTS)})")
        c = channels
        if not (isinstance(output_gain, (int, float)) and 0 < output_gain < float("inf")):
            raise FstError(f"output_gain must be a positive number, got {output_gain!r}")
        if type(n_styles) is not int or n_styles < 1:
            raise FstError(f"n_styles must be an integer >= 1, got {n_styles!r}")
        self.config = {"channels": channels, "n_residual": n_residual, "output": output,
                       "output_gain": float(output_gain), "n_styles": n_styles, **({} if net == DEFAULT_NET else {"net": net})}
        self.n_styles = n_styles
        self.linear = output == "linear"
        self.output_unit = PIXEL_SCALE / float(output_gain)  # raw conv value per full range
        n = n_styles
        self.conv_in = ConvLayer(3, c, 9, n_styles=n)
        self.down1 = ConvLayer(c, 2 * c, 3, stride=2, n_styles=n)
        self.down2 = ConvLayer(2 * c, 4 * c, 3, stride=2, n_styles=n)
        self.residual = nn.Sequential(*[ResidualBlock(4 * c, n, BLOCK_CONVS[net]) for _ in range(n_residual)])
        self.up1 = UpsampleConv(4 * c, 2 * c, n)
        self.up2 = UpsampleConv(2 * c, c, n)
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

    def style_norms(self) -> list[ConditionalInstanceNorm]:
        """The per-style parameters' modules (none when n_styles is 1)."""
        return [m for m in self.modules() if isinstance(m, ConditionalInstanceNorm)]

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_styles > 1 and w is None:
            raise FstError(f"this network holds {self.n_styles} styles: pass style weights w of shape (B, {self.n_styles})")
        if self.cpu_fast and cpu_fast.inference_here(x):
            return self._fast_forward(x, w)
        h0 = self.conv_in(x * PIXEL_SCALE if self.linear else x, w)
        h1 = self.down1(h0, w)
        y = _run(self.residual, self.down2(h1, w), w)
        y = self.up1(y, h1.shape[-2:], w)
        y = self.up2(y, h0.shape[-2:], w)
        return self._output(self._conv_out(y))

    def _fast_forward(self, x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        """forward's pass in eager CPU inference: channels_last throughout, norms in that layout (fast_layer),
        ReLUs and residual adds in place, each activation freed as soon as the next exists (the skips keep
        sizes only). No conv fuses its ReLU: an instance norm, which needs the conv's whole output, sits
        between them."""
        y = cpu_fast.cpu_layout(x * PIXEL_SCALE if self.linear else x)
        y = fast_layer(self.conv_in, y, w)
        size0 = list(y.shape[-2:])
        y = fast_layer(self.down1, y, w)
        size1 = list(y.shape[-2:])
        y = fast_layer(self.down2, y, w)
        for block in self.residual:
            y = fast_layer(block.body[1], fast_layer(block.body[0], y, w), w).add_(y)
        y = fast_layer(self.up1.conv, y, w, upsample_to=size1)
        y = fast_layer(self.up2.conv, y, w, upsample_to=size0)
        return self._output(self.conv_out(y).contiguous())  # NCHW out: 3 channels, a cheap copy

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        """conv_out's raw result read as an image."""
        if not self.linear:
            return torch.sigmoid(y)
        y = y / self.output_unit
        # Unclamped while training: the loss sees (and corrects) values out of range; a clamp
        # there would stop their gradient.
        return y if self.training else y.clamp(0, 1)

    def _conv_out(self, y: torch.Tensor) -> torch.Tensor:
        if self.cpu_channels_last_out and y.device.type == "cpu" and not y.is_contiguous(memory_format=torch.channels_last):
            y = _channels_last_conv(self.conv_out, y)
        else:
            y = self.conv_out(y)
        return y


def _channels_last_conv(layer: ConvLayer, x: torch.Tensor) -> torch.Tensor:
    """`layer` (pad + conv) on NCHW `x`, the conv in channels_last, the result NCHW again.

    oneDNN's NCHW kernels serve a conv with few output channels badly: for conv_out (32 -> 3, 9x9,
    256², batch 4, fp32, 2-core Zen 4, AVX2-only emulation) forward took 137 ms against 59 in
    channels_last and forward + backward 871 against 200 (354 against 222 with AVX-512; bf16 177
    against 118; docs/benchmarks.md). Every other layer of the step is as fast or faster in NCHW, so only this one
    changes format; the 3-channel result goes back to NCHW so the VGG's convs stay NCHW.
    """
    pad, conv = layer
    return conv(pad(x).contiguous(memory_format=torch.channels_last)).contiguous()


def fast_layer(layer: ConvLayer, x: torch.Tensor, w: torch.Tensor | None,
               upsample_to: list[int] | None = None) -> torch.Tensor:
    """`layer` on channels_last `x` in eager CPU inference (after a nearest upsample to `upsample_to`,
    when given): a conv + ReLU as one oneDNN op, an instance norm in x's layout (cpu_fast.instance_norm),
    its ReLU in place. An exact 2x upsample and its conv run at the input's resolution
    (cpu_fast.upsampled_conv). A norm that tiling records or freezes (a hook, or a forward of its own:
    fst/models/tiling.py) runs as a module, so tiles keep their meaning."""
    pad, conv, *rest = layer
    relu = bool(rest) and isinstance(rest[-1], nn.ReLU)
    if upsample_to is not None and cpu_fast.doubles(x, upsample_to) and rest:
        y = cpu_fast.upsampled_conv(conv, x)
    else:
        if upsample_to is not None:
            x = F.interpolate(x, size=upsample_to, mode="nearest")
        x = pad(x)  # the unpadded input goes now (the callers keep none)
        if not rest or (relu and len(rest) == 1):
            return cpu_fast.conv_relu(conv, x) if relu else conv(x)
        y = conv(x)
    norm = rest[0]
    del x
    plain = norm.norm if isinstance(norm, ConditionalInstanceNorm) else norm
    if plain._forward_pre_hooks or plain._forward_hooks or "forward" in plain.__dict__:
        y = norm(y, w) if isinstance(norm, ConditionalInstanceNorm) else norm(y)
    elif isinstance(norm, ConditionalInstanceNorm):
        w = w.to(norm.weight.dtype)
        y = cpu_fast.instance_norm(y, w @ norm.weight, w @ norm.bias, plain.eps)
    else:
        y = cpu_fast.instance_norm(y, norm.weight[None], norm.bias[None], norm.eps)
    return y.relu_() if relu else y


class FixedStyle(nn.Module):
    """`net` with its style weights w (N,) fixed: a one-input network of one style or blend (what
    module hooks, as tiling's, need)."""

    def __init__(self, net: TransformerNet, w: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("w", w.reshape(1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.w.expand(x.shape[0], -1))


def with_new_styles(net: TransformerNet, n_new: int) -> TransformerNet:
    """A copy of `net` holding `n_new` more styles after its own: every weight copied, each new
    style's (gamma, beta) starting at the mean of the existing styles' (a blend, nearer a trained
    style than the untrained 1 and 0)."""
    grown = TransformerNet(**{**net.config, "n_styles": net.n_styles + n_new})
    old = net.state_dict()
    state = {}
    for key, like in grown.state_dict().items():
        have = old[key]
        if have.shape != like.shape:  # a norm's (gamma or beta): (C,) for one style, else (N, C)
            rows = have.reshape(-1, like.shape[-1])
            have = torch.cat([rows, rows.mean(0, keepdim=True).expand(n_new, -1)])
        state[key] = have
    grown.load_state_dict(state)
    return grown.to(net.weight_device, net.weight_dtype)


def style_weights(n_styles: int, mix: dict[int, float], batch: int = 1) -> torch.Tensor:
    """(batch, n_styles) style weights: `mix` maps style index -> weight, normalised to sum 1 (a
    convex blend); {k: 1} is style k alone."""
    if not mix or any(not 0 <= k < n_styles for k in mix):
        raise FstError(f"style indices {sorted(mix)} out of range: this network holds styles 0..{n_styles - 1}")
    if any(not (v >= 0 and v < float("inf")) for v in mix.values()) or sum(mix.values()) <= 0:
        raise FstError(f"style weights must be finite, >= 0 and not all 0, got {list(mix.values())}")
    w = torch.zeros(n_styles)
    for k, v in mix.items():
        w[k] = float(v)
    return (w / w.sum()).expand(batch, n_styles).clone()


def sample_inputs(net: TransformerNet, channels_last: bool = False) -> tuple[torch.Tensor, ...]:
    """Inputs for tracing or exporting `net`: batch 2 and odd sizes, so no tracer or exporter can
    specialise on a batch of 1 or on even shapes; with several styles, blended style weights (not
    one-hot, which a constant folder could specialise on)."""
    x = torch.rand(2, 3, 67, 91, dtype=net.weight_dtype, device=net.weight_device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if net.n_styles == 1:
        return (x,)
    return x, torch.softmax(torch.rand(2, net.n_styles, device=net.weight_device), 1)


def export_shapes(net: TransformerNet, image: dict[int, Any]) -> dict[str, Any]:
    """torch.export's dynamic shapes for `net`'s inputs, the image's given: the style weights share
    its batch dimension."""
    return {"x": image} if net.n_styles == 1 else {"x": image, "w": {0: image[0]}}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
