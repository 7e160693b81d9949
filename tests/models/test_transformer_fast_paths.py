"""The per-painting network's CPU fast pass (channels_last, oneDNN's fused conv + ReLU, instance norm
in that layout) gives what the NCHW reference pass gives, in fp32 and bf16, for one style and blends,
whole and in tiles, and stays out of graphs that are traced for export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fst.artefacts.checkpoint import transformer_from_checkpoint
from fst.artefacts.export import write_torchscript
from fst.models import cpu_fast, tiling
from fst.models.cpu_fast import upsampled_conv
from fst.models.transformer import FixedStyle, TransformerNet, sample_inputs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _net(n_styles: int = 1, dtype: torch.dtype = torch.float32) -> TransformerNet:
    """A small network whose output is spread over the range (not all clamped to one value)."""
    torch.manual_seed(0)
    net = TransformerNet(8, 2, n_styles=n_styles).eval()
    with torch.no_grad():
        for norm in [m for m in net.modules() if hasattr(m, "weight") and m.weight is not None and m.weight.dim() <= 2]:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
        net.conv_out[1].weight.mul_(30)
    return net.to(dtype)


def _pass(net: TransformerNet, fast: bool, *inputs: torch.Tensor) -> torch.Tensor:
    net.cpu_fast = fast
    try:
        with torch.inference_mode():
            return net(*inputs).float()
    finally:
        del net.cpu_fast


def _ops(net: torch.nn.Module, *inputs: torch.Tensor) -> set[str]:
    with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        net(*inputs)
    return {e.name for e in prof.events()}


@pytest.mark.parametrize("n_styles", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch", [1, 2])
# Odd sizes: the upsamples go back to them (plain upsample + conv). Multiples of 4: each upsample is an
# exact 2x, run at the low resolution (cpu_fast.upsampled_conv), whose sums of taps must not show.
@pytest.mark.parametrize("size", [(37, 54), (36, 52)])
def test_the_fast_pass_equals_the_reference_pass(n_styles, dtype, batch, size, monkeypatch):
    net = _net(n_styles, dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, *size, generator=g).to(dtype)
    w = [torch.softmax(torch.rand(batch, n_styles, generator=g), 1)] if n_styles > 1 else []  # a blend
    low_resolution = []
    monkeypatch.setattr(cpu_fast, "upsampled_conv", lambda *a: low_resolution.append(1) or upsampled_conv(*a))
    fast, plain = _pass(net, True, x, *w), _pass(net, False, x, *w)
    assert len(low_resolution) == (2 if size[0] % 4 == 0 else 0)
    assert fast.shape == plain.shape == (batch, 3, *size) and fast.is_contiguous()  # NCHW out, as before
    assert plain.std() > 0.1 and 0.05 < (plain > 0).float().mean() and (plain < 1).float().mean() > 0.05
    tol = 1e-5 if dtype == torch.float32 else 0.05  # bf16: statistics rounded to bf16 before the norm
    assert (fast - plain).abs().max() < tol
    assert (fast - plain).abs().mean() < tol / 10


def test_the_fast_pass_runs_channels_last_without_instance_norm_copies():
    """Every conv gets a channels_last input (oneDNN's own layout: no reorder around it), and no
    instance norm copies its input to NCHW."""
    net, x = _net().to(memory_format=torch.channels_last), torch.rand(1, 3, 33, 40)
    seen: list[bool] = []
    for conv in [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]:
        conv.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    assert "aten::instance_norm" not in _ops(net, x)
    assert len(seen) == 10 and all(seen)  # 3 in, 2 per block, 2 up, 1 out
    net.cpu_fast, seen[:] = False, []
    assert "aten::instance_norm" in _ops(net, x) and not any(seen[:-1])  # the reference pass, as before


def test_emulated_bf16_gives_the_same_output(monkeypatch):
    """An AVX2-only CPU emulates bf16 in oneDNN (no fused op there): the fast pass still equals the reference."""
    net, x = _net(dtype=torch.bfloat16), torch.rand(1, 3, 29, 31).bfloat16()
    plain = _pass(net, False, x)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert (_pass(net, True, x) - plain).abs().max() < 0.05


@pytest.mark.parametrize("n_styles", [1, 2])
def test_tiles_give_the_reference_tiles(n_styles):
    """Tiling records and freezes every instance norm's statistics through the norm modules: the fast
    pass must keep running them as modules there."""
    net = _net(n_styles)
    if n_styles > 1:
        net = FixedStyle(net, torch.tensor([0.3, 0.7]))
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(3))
    inner = net.net if n_styles > 1 else net
    results = {}
    for fast in (True, False):
        inner.cpu_fast = fast
        with torch.inference_mode():
            results[fast] = tiling.stylize_tiled(net, x, tile=48, overlap=8, stats_side=64)
    whole = _pass(inner, False, x, *([net.w] if n_styles > 1 else []))
    assert (results[False] - whole).abs().max() > 1e-4  # the tiles' statistics really are frozen ones
    assert (results[True] - results[False]).abs().max() < 1e-5


def test_an_old_checkpoint_gives_its_recorded_output():
    recorded = torch.load(FIXTURES / "checkpoint_2026-11-28_ac4956b_output.pt", weights_only=True)
    net, _ = transformer_from_checkpoint(FIXTURES / "checkpoint_2026-11-28_ac4956b.ckpt")
    net = net.to(memory_format=torch.channels_last)  # as the Stylizer keeps it on the CPU
    assert "aten::instance_norm" not in _ops(net, recorded["x"])
    with torch.inference_mode():
        assert (net(recorded["x"]) - recorded["y"]).abs().max() < 1e-5


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace: what fst export uses
@pytest.mark.parametrize("n_styles", [1, 2])
def test_traced_and_exported_graphs_hold_plain_ops_only(n_styles):
    net = _net(n_styles)
    with torch.no_grad():  # the fast pass needs no autograd: a trace without it must still not see it
        graph = str(torch.jit.trace(net, sample_inputs(net)).inlined_graph)
        exported = torch.export.export(net, sample_inputs(net)).graph_module.code
    assert "aten::instance_norm" in graph and "mkldnn" not in graph
    assert "instance_norm" in exported and "mkldnn" not in exported
    import io
    scripted = torch.jit.load(io.BytesIO(write_torchscript(net, {}, channels_last=True)))
    assert "mkldnn" not in str(scripted.inlined_graph)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_the_stylizer_keeps_a_checkpoints_weights_channels_last_and_gives_the_reference(dtype):
    from fst.stylize.stylizer import Stylizer

    stylizer = Stylizer(FIXTURES / "checkpoint_2026-12-04_5ef50f6.ckpt", device="cpu", dtype=dtype)
    net = stylizer.eager
    assert net.conv_in[1].weight.is_contiguous(memory_format=torch.channels_last)  # no reorder per conv
    x = torch.rand(1, 3, 41, 50, generator=torch.Generator().manual_seed(4))
    got = stylizer(x)
    want = _pass(net, False, x.to(net.weight_dtype))
    assert (got - want).abs().max() < (1e-5 if dtype == "fp32" else 0.05)


def test_the_stylizer_runs_an_exported_files_weights_channels_last():
    """fst runs an artefact as its own network with the artefact's weights: the same fast pass."""
    from fst.stylize.stylizer import Stylizer

    stylizer = Stylizer(FIXTURES / "export_2026-12-04_5ef50f6.pt", device="cpu")
    assert stylizer.format == "torchscript"
    assert stylizer.eager.conv_in[1].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 41, 50, generator=torch.Generator().manual_seed(5))
    assert (stylizer(x) - _pass(stylizer.eager, False, x.to(stylizer.eager.weight_dtype))).abs().max() < 0.05

