"""The universal network's CPU fast paths (channels_last, oneDNN's fused conv + ReLU, the style
transforms on position rows) give what the plain formulas give, in fp32 and bf16, and stay out of
graphs that are traced for export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fst.models import cpu_fast, style_transforms
from fst.models.universal import BoundStyles, UniversalNet


def _reference_transform(name: str, f: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """The transforms' formulas as written in fst/models/style_transforms.py, NCHW, fp32."""
    x = f.float().flatten(2)
    mean = x.mean(-1, keepdim=True)
    if name == "intra":
        std = (x.var(-1, keepdim=True, correction=0) + style_transforms.EPS).sqrt()
        t = (x - mean) / std * stats[1].float()[:, None] + stats[0].float()[:, None]
    else:
        centred = x - mean
        cov = centred @ centred.transpose(-1, -2) / (x.shape[-1] - 1)
        whiten = style_transforms._matrix_power(cov, -0.5)
        t = stats[1:].float() @ (whiten @ centred) + stats[0].float()[:, None]
    return t.reshape(f.shape)


def _reference_forward(net: UniversalNet, x: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """The network from its own parameters in plain NCHW aten ops: pad, conv, ReLU, pool, upsample."""
    dtype = net.weight_dtype
    h, sizes, convs = net.encoder.normalize(x.to(dtype)), [], iter(net.encoder.convs)
    for name in net.encoder.names:
        if name.startswith("conv"):
            conv = next(convs)
            h = F.conv2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), conv.weight.contiguous(), conv.bias)
        elif name.startswith("relu"):
            h = F.relu(h)
        else:
            sizes.append(list(h.shape[-2:]))
            h = F.max_pool2d(h, 2, 2)
    h = _reference_transform(net.config["transform"], h, stats).to(dtype)
    for stage, size in zip(net.decoder.stages, [*reversed(sizes), None]):
        for layer in stage:
            h = F.relu(F.conv2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), layer[1].weight.contiguous(), layer[1].bias))
        if size is not None:
            h = F.interpolate(h, size=size, mode="nearest")
    out = net.decoder.out[1]
    return F.conv2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), out.weight.contiguous(), out.bias).clamp(0, 1)


def _net(transform: str) -> UniversalNet:
    torch.manual_seed(0)
    net = UniversalNet(transform, "relu2_1").eval()
    for p in net.decoder.parameters():  # a decoder whose output is not all clamped to one value
        p.data.normal_(0, 0.1)
    return net


@pytest.mark.parametrize("transform", ["intra", "inter"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_fast_pass_equals_the_plain_formulas(transform, dtype):
    net = _net(transform)
    g = torch.Generator().manual_seed(1)
    painting, x = torch.rand(1, 3, 40, 48, generator=g), torch.rand(1, 3, 37, 54, generator=g)  # odd sizes
    with torch.inference_mode():
        stats = net.style_stats(painting)
        net = net.to(dtype)
        fast = net(x.to(dtype), stats).float()
        plain = _reference_forward(net, x, stats).float()
    assert fast.shape == plain.shape and fast.is_contiguous()  # NCHW out, as before
    tol = 1e-5 if dtype == torch.float32 else 0.05  # bf16: roundings in another order
    assert (fast - plain).abs().max() < tol
    assert (fast - plain).abs().mean() < tol / 10


def test_the_transforms_give_the_formulas_in_either_layout():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 16, 1, 1) * torch.rand(2, 16, 9, 11, generator=g) + torch.randn(16, 1, 1)
    for name in style_transforms.TRANSFORMS:
        t = style_transforms.get(name, 16)
        stats = t.stats(torch.rand(1, 16, 7, 8, generator=g) * 3)
        want = _reference_transform(name, f, stats)
        for layout in (torch.contiguous_format, torch.channels_last):
            got = t(f.contiguous(memory_format=layout), stats)
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        channels_last = f.contiguous(memory_format=torch.channels_last)
        assert t(channels_last, stats).is_contiguous(memory_format=torch.channels_last)


def test_fused_conv_relu_only_where_it_is_safe(monkeypatch):
    x = torch.rand(1, 8, 6, 6)
    with torch.inference_mode():
        assert cpu_fast.fused_ok(x) == torch.backends.mkldnn.is_available()
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
        assert not cpu_fast.fused_ok(x.bfloat16())  # an AVX2-only CPU emulates bf16: the plain path
        assert not cpu_fast.fused_ok(x.half())
    assert not cpu_fast.fused_ok(x)  # autograd on: the fused op has no backward


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace: what fst export uses
def test_a_traced_graph_holds_plain_ops_only():
    net = BoundStyles(_net("intra"), _net("intra").style_stats(torch.rand(1, 3, 16, 16))[None])
    with torch.no_grad():
        graph = str(torch.jit.trace(net, torch.rand(1, 3, 16, 20)).inlined_graph)
    assert "aten::_convolution" in graph and "mkldnn" not in graph
