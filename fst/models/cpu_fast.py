"""CPU inference fast paths shared by fst's networks: channels_last layout, oneDNN's fused conv + ReLU,
instance norm without a layout change. Eager CPU inference only: training, autograd and every traced,
compiled or exported graph keep the plain aten ops (portable files; readers check their ops)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cpu_layout(x: torch.Tensor) -> torch.Tensor:
    """`x` in the memory layout a network runs in: channels_last on the CPU, as it is given elsewhere.
    oneDNN's convolutions work in NHWC; an NCHW tensor is reordered into it and back around every conv,
    and those reorders took 2/3 of a bf16 1080p pass (docs/universal.md, Speed). Pads, pools, ReLUs,
    upsampling and the style transforms (fst/models/style_transforms.py) all keep channels_last."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def inference_here(x: torch.Tensor) -> bool:
    """Whether `x` is in eager CPU inference: no autograd, no tracer, compiler or exporter recording."""
    if x.device.type != "cpu" or torch.is_grad_enabled():
        return False
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting())


def fused_ok(x: torch.Tensor) -> bool:
    """Whether a conv + ReLU on `x` may run as oneDNN's fused op: eager CPU inference only (no autograd
    formula; traced, compiled and exported graphs keep plain aten ops, which their readers check), in a
    dtype oneDNN runs natively here (bf16 on an AVX2-only CPU stays on the plain path, fp32 there)."""
    if not torch.backends.mkldnn.is_available() or not inference_here(x):
        return False
    if x.dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return x.dtype == torch.float32


def conv_relu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """ReLU(conv(x)). In eager CPU inference, the conv and ReLU are one oneDNN op (the ReLU applied as
    the conv writes its output: one pass over the largest tensors fewer; equal results)."""
    if fused_ok(x):
        return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, list(conv.padding), list(conv.stride),
                                                       list(conv.dilation), conv.groups, "relu", [None], "")
    return F.relu(conv(x), inplace=True)  # a conv's own output: in place keeps one full-size tensor fewer


def instance_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """Instance norm of `x` (B, C, H, W) with per-image scale and shift `gamma`, `beta` (B or 1, C), in
    x's layout. F.instance_norm copies a channels_last tensor to NCHW first (and returns NCHW), and
    torch.var_mean over H, W of channels_last is slow (0.29 s for 128 x 270 x 480 bf16, 2 cores); batch
    norm over one image is that image's instance norm, and its channels_last kernel takes the statistics
    (in fp32) and applies them in 0.05 s."""
    gamma, beta = gamma.expand(x.shape[0], -1), beta.expand(x.shape[0], -1)
    if x.shape[0] == 1:
        return F.batch_norm(x, None, None, gamma[0], beta[0], True, 0.0, eps)
    return torch.cat([F.batch_norm(x[i : i + 1], None, None, gamma[i], beta[i], True, 0.0, eps) for i in range(x.shape[0])])


# Which rows (or columns) of a 3x3 kernel fall on each of the two low-resolution rows a phase of a 2x
# nearest upsample reads: output row 2i reads rows i-1, i, i (taps -1, 0, +1), row 2i+1 rows i, i, i+1.
_PHASE_TAPS = (torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


def doubles(x: torch.Tensor, size: list[int]) -> bool:
    """Whether `size` is exactly twice x's (H, W): then `upsampled_conv` applies."""
    return list(size) == [2 * x.shape[-2], 2 * x.shape[-1]] and min(x.shape[-2:]) >= 2


def upsampled_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(reflection_pad_1(nearest_upsample_2x(x))) for a 3x3, stride-1 `conv`, computed at x's own
    resolution: each of the four output phases (even/odd row, even/odd column) is a 2x2 conv of x
    (edge-replicated by one: where the upsampled image reflects, its neighbour is the same source
    pixel), with the 3x3 taps that fall on the same source pixel summed. 4 multiply-adds per output
    value instead of 9, and neither the upsampled input (twice the output's channels at full size) nor
    its padded copy is ever made. Eager CPU inference only (the traced and exported graphs keep the
    plain ops)."""
    n, m = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    weight = conv.weight.float()
    out = x.new_empty((x.shape[0], conv.out_channels, 2 * n, 2 * m)).contiguous(memory_format=torch.channels_last)
    for a, rows in enumerate(_PHASE_TAPS):
        for b, cols in enumerate(_PHASE_TAPS):
            kernel = torch.einsum("ry,oiyx,cx->oirc", rows, weight, cols).to(x.dtype)
            phase = F.conv2d(padded, kernel, conv.bias)
            out[:, :, a::2, b::2] = phase[:, :, a : a + n, b : b + m]
            del phase
    return out
