"""The transformer's two outputs: fst's sigmoid and the classic recipe's linear 0-255 output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fst.artefacts.checkpoint import payload, transformer_from_checkpoint
from fst.artefacts.export import export_model
from fst.artefacts.exported import FORMATS, SUFFIXES, load_exported
from fst.core.errors import FstError
from fst.models.transformer import TransformerNet


def linear_net() -> TransformerNet:
    """A linear-output net whose last conv is pushed well past the valid range at both ends."""
    torch.manual_seed(0)
    net = TransformerNet(8, 1, "linear")
    with torch.no_grad():
        net.conv_out[1].bias.fill_(0.8 * 255)
        net.conv_out[1].weight.mul_(1000)
    return net


def test_linear_output_is_unbounded_in_training_and_clamped_in_eval() -> None:
    net, x = linear_net(), torch.rand(2, 3, 40, 36)
    with torch.no_grad():
        raw = net.train()(x)
        out = net.eval()(x)
    assert raw.max() > 1.2 and raw.min() < -0.2  # training sees the unclamped values
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, raw.clamp(0, 1))  # the clamp is the only difference (instance norm has no running stats)


def test_linear_output_reads_the_photo_in_0_255() -> None:
    """The first conv sees pixel values, as the classic recipe trains: the same weights with a
    sigmoid output see [0, 1]. With the affine norms at their identity init, instance norm
    removes the input scale, so only the (scaled) conv bias tells the two apart."""
    torch.manual_seed(0)
    linear = TransformerNet(8, 1, "linear")
    seen = {}
    linear.conv_in[1].register_forward_hook(lambda m, i, o: seen.update(input=i[0]))
    x = torch.rand(1, 3, 24, 24)
    linear(x)
    assert torch.allclose(seen["input"], torch.nn.functional.pad(x * 255, (4, 4, 4, 4), mode="reflect"))


def test_unknown_output_is_one_line() -> None:
    with pytest.raises(FstError, match="unknown transformer output 'tanh'"):
        TransformerNet(8, 1, "tanh")


def test_checkpoint_keeps_the_output_and_old_checkpoints_read_as_sigmoid() -> None:
    net = linear_net().eval()
    back, meta = transformer_from_checkpoint(payload(net))
    assert meta["net"]["output"] == "linear" and back.linear
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))
    old = payload(TransformerNet(8, 1))
    del old["fst"]["net"]["output"]  # written before the output was a choice
    assert transformer_from_checkpoint(old)[0].config["output"] == "sigmoid"
    bad = payload(TransformerNet(8, 1))
    bad["fst"]["net"]["output"] = "relu"
    with pytest.raises(FstError, match="an output in"):
        transformer_from_checkpoint(bad)


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_linear_net_clamps_like_the_eager_one(fmt: str, tmp_path: Path) -> None:
    net = linear_net().eval()
    ckpt = tmp_path / "classic.ckpt"
    torch.save(payload(net, style_name="classic", style_loss="gram_mse", global_step=1), ckpt)
    model, meta = load_exported(export_model(ckpt, tmp_path / f"classic{SUFFIXES[fmt]}", fmt))
    assert meta["net"]["output"] == "linear"
    x = torch.rand(1, 3, 45, 39)
    with torch.no_grad():
        expected, got = net(x), model(x)
    assert expected.min() == 0 and expected.max() == 1  # the case where the clamp matters
    assert (got - expected).abs().max().item() < 1e-3


def test_linear_output_starts_mid_grey_and_the_classic_init_near_black() -> None:
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(0)
    grey = TransformerNet(8, 1).eval()
    torch.manual_seed(0)
    classic = TransformerNet(8, 1, grey_start=False).eval()
    with torch.no_grad():
        assert abs(grey(x).mean().item() - 0.5) < 0.05
        assert classic(x).mean().item() < 0.05  # PyTorch's default init: the classic recipe's dark start
    differ = [k for k, v in grey.state_dict().items() if not torch.equal(v, classic.state_dict()[k])]
    assert differ == ["conv_out.1.bias"]  # nothing else changes, not even the random draws


def test_output_gain_scales_the_raw_output_and_travels_with_the_checkpoint() -> None:
    torch.manual_seed(0)
    classic = TransformerNet(8, 1, output_gain=1.0, grey_start=False).train()
    fst = TransformerNet(8, 1, output_gain=4.0, grey_start=False).train()
    fst.load_state_dict(classic.state_dict())
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.allclose(fst(x), 4 * classic(x), rtol=1e-6, atol=1e-7)
    back, meta = transformer_from_checkpoint(payload(fst.eval()))
    assert meta["net"]["output_gain"] == 4.0 and back.config == fst.config
    old = payload(classic.eval())
    del old["fst"]["net"]["output_gain"]  # written before the gain was a choice: read at gain 1
    assert transformer_from_checkpoint(old)[0].config["output_gain"] == 1.0
    with pytest.raises(FstError, match="positive output_gain"):
        bad = payload(classic.eval())
        bad["fst"]["net"]["output_gain"] = float("nan")
        transformer_from_checkpoint(bad)


OLD = Path(__file__).resolve().parents[1] / "fixtures"


def test_a_checkpoint_written_before_the_layout_change_still_runs_the_same(tmp_path: Path) -> None:
    """tests/fixtures holds a checkpoint written by the tree of 2026-11-28 (commit ac4956b: linear
    output, before output_gain and the module moves) and that tree's output on a fixed input."""
    ckpt = OLD / "checkpoint_2026-11-28_ac4956b.ckpt"
    recorded = torch.load(OLD / "checkpoint_2026-11-28_ac4956b_output.pt", weights_only=True)
    net, meta = transformer_from_checkpoint(ckpt)
    assert meta["net"] == {"channels": 8, "n_residual": 1, "output": "linear"} and net.config["output_gain"] == 1.0
    with torch.no_grad():  # bit-equal on the CPU that recorded it; another ISA's kernels round otherwise (7e-7 on AVX2)
        assert (net(recorded["x"]) - recorded["y"]).abs().max() < 1e-5
    model, _ = load_exported(export_model(ckpt, tmp_path / "old.pt", "torchscript"))
    with torch.no_grad():
        assert (model(recorded["x"]) - recorded["y"]).abs().max() < 1e-5


def test_channels_last_output_conv_on_the_cpu_changes_no_value_and_returns_nchw() -> None:
    """The CPU runs conv_out in channels_last for speed: same output and gradients as NCHW
    throughout, and the result NCHW again so the VGG after it stays NCHW."""
    torch.manual_seed(0)
    net, x = TransformerNet(8, 1), torch.rand(2, 3, 37, 30)
    seen: list[bool] = []  # whether conv_out's conv got a channels_last input
    net.conv_out[1].register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    results = {}
    for channels_last_out in (True, False):
        net.cpu_channels_last_out = channels_last_out
        net.zero_grad()
        y = net(x)
        y.square().mean().backward()
        results[channels_last_out] = (y.detach(), {n: p.grad.clone() for n, p in net.named_parameters()})
        assert y.is_contiguous()
    assert seen == [True, False]
    (y_cl, g_cl), (y_nchw, g_nchw) = results[True], results[False]
    torch.testing.assert_close(y_cl, y_nchw, rtol=1e-5, atol=1e-5)
    for name in g_nchw:
        torch.testing.assert_close(g_cl[name], g_nchw[name], rtol=1e-4, atol=1e-6)
