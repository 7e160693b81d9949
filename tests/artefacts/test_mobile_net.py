"""The lighter network (``net: mobile``) on every path the default one takes: a training step,
checkpoint, each `fst export` format, stylize (whole, tiled), resume; and files whose config and
weights disagree about the kind of network, refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from fst.artefacts.checkpoint import load_checkpoint, payload, transformer_from_checkpoint
from fst.artefacts.exported import FORMATS, load_exported, transformer_from_exported
from fst.cli import main as cli
from fst.core.errors import FstError
from fst.models.separable import SeparableConv2d
from fst.models.transformer import ConditionalInstanceNorm, TransformerNet

from crafted import member, one_line_error, rewrite_zip
from nets import export_all, make_net
from runs import run_args

pytestmark = pytest.mark.usefixtures("one_thread")
# fp32 artefact (its weights run in fst's network, and its graph in its own runtime) against the
# checkpoint's network: the bound test_export.py uses for the default network.
BOUND = 1e-3


def mobile_net(n_styles: int = 1) -> TransformerNet:
    """A tiny mobile net with random fixed weights, norms off their 1/0 init (as nets.make_net)."""
    torch.manual_seed(0)
    net = TransformerNet(channels=8, n_residual=2, output_gain=1.0, grey_start=False, n_styles=n_styles, net="mobile").eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm2d) and m.affine or isinstance(m, ConditionalInstanceNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        net.conv_out[1].weight.mul_(255 / 4)
        net.conv_out[1].bias.mul_(255 / 4).add_(255 / 2)
    return net


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    return mobile_net()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, net: TransformerNet) -> Path:
    path = tmp_path_factory.mktemp("mobile") / "mobile.ckpt"
    torch.save(payload(net, style_name="scream", style_loss="gram", global_step=7), path)
    return path


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory, ckpt: Path) -> dict[str, Path]:
    return export_all(ckpt, tmp_path_factory.mktemp("exported"))


def test_checkpoint_round_trip(ckpt: Path, net: TransformerNet) -> None:
    back, meta = transformer_from_checkpoint(ckpt)
    assert meta["net"]["net"] == "mobile" and isinstance(back.residual[1].body[1][1], SeparableConv2d)
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_gives_the_checkpoints_output(fmt: str, artefacts: dict[str, Path], net: TransformerNet) -> None:
    from test_export import runtime

    model, meta = load_exported(artefacts[fmt])
    assert meta["net"]["net"] == "mobile"
    x = torch.rand(2, 3, 67, 91)
    with torch.no_grad():
        expected = net(x)
        for run in (model, runtime(artefacts[fmt], fmt)):  # fst's reading, and the file's own runtime
            assert (run(x) - expected).abs().max().item() < BOUND, fmt
    eager, _ = transformer_from_exported(artefacts[fmt])
    for k, v in net.state_dict().items():
        torch.testing.assert_close(eager.state_dict()[k], v, msg=k)


def test_default_network_files_do_not_name_a_net(tmp_path: Path) -> None:
    path = tmp_path / "j.ckpt"
    torch.save(payload(make_net(), style_name="s", style_loss="gram"), path)
    assert "net" not in load_checkpoint(path)["fst"]["net"]
    assert "net" not in load_exported(export_all(path, tmp_path)["onnx"])[1]["net"]


def test_checkpoint_whose_config_and_weights_disagree_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    johnson = payload(make_net(), style_name="s", style_loss="gram")
    said_mobile = {**johnson, "fst": {**johnson["fst"], "net": {**johnson["fst"]["net"], "net": "mobile"}}}
    torch.save(said_mobile, tmp_path / "a.ckpt")
    mobile = payload(mobile_net(), style_name="s", style_loss="gram")
    said_johnson = {**mobile, "fst": {**mobile["fst"], "net": {k: v for k, v in mobile["fst"]["net"].items() if k != "net"}}}
    torch.save(said_johnson, tmp_path / "b.ckpt")
    unknown = {**mobile, "fst": {**mobile["fst"], "net": {**mobile["fst"]["net"], "net": "resnet"}}}
    torch.save(unknown, tmp_path / "c.ckpt")
    for name, message in (("a", "weights do not match its config"), ("b", "weights do not match its config"),
                          ("c", "names net 'resnet'; fst knows johnson, mobile")):
        err = one_line_error(["export", str(tmp_path / f"{name}.ckpt"), "--out", str(tmp_path / f"{name}.onnx")], capsys)
        assert message in err and f"{name}.ckpt" in err
        assert not (tmp_path / f"{name}.onnx").exists()


def test_artefact_whose_config_says_mobile_over_johnson_weights_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "j.ckpt"
    torch.save(payload(make_net(), style_name="s", style_loss="gram"), path)
    exported = export_all(path, tmp_path)["torchscript"]
    name = member(exported, "extra/fst.json")
    import zipfile

    with zipfile.ZipFile(exported) as z:
        meta = json.loads(z.read(name))
    crafted = rewrite_zip(exported, tmp_path / "crafted.pt", {name: json.dumps({**meta, "net": {**meta["net"], "net": "mobile"}}).encode()})
    with pytest.raises(FstError, match=r"crafted\.pt: transformer weights do not match its config"):
        load_exported(crafted)
    Image.new("RGB", (40, 30)).save(tmp_path / "p.png")
    err = one_line_error(["stylize", str(tmp_path / "p.png"), "--model", str(crafted), "--out", str(tmp_path / "o.png")], capsys)
    assert "crafted.pt" in err and not (tmp_path / "o.png").exists()


def test_fit_resume_export_and_stylize_a_mobile_net(tmp_path: Path) -> None:
    assert cli(run_args(tmp_path, "--model.net", "mobile", "--trainer.max_steps", "2")) == 0
    last = tmp_path / "ckpt" / "last.ckpt"
    assert load_checkpoint(last)["fst"]["net"]["net"] == "mobile"
    assert cli(run_args(tmp_path, "--trainer.max_steps", "4", "--ckpt_path", str(last))) == 0  # resume
    ckpt = load_checkpoint(last)
    assert ckpt["global_step"] == 4 and ckpt["fst"]["net"]["net"] == "mobile"
    Image.new("RGB", (70, 50), (90, 140, 200)).save(tmp_path / "p.png")
    for extra in ([], ["--tile", "32", "--overlap", "8"]):
        out = tmp_path / f"o{len(extra)}.png"
        assert cli(["stylize", str(tmp_path / "p.png"), "--model", str(last), "--out", str(out), "--device", "cpu",
                    "--dtype", "fp32", "--quiet", *extra]) == 0
        assert Image.open(out).size == (70, 50)
    assert cli(["export", str(last), "--out", str(tmp_path / "m.pt2")]) == 0
    assert load_exported(tmp_path / "m.pt2")[1]["net"]["net"] == "mobile"


def test_unknown_net_on_the_command_line_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(run_args(tmp_path, "--model.net", "resnet")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fst fit: error:")]  # after the precision note
    assert len(err) == 1 and "unknown transformer net 'resnet' (choose from johnson, mobile)" in err[0]
    assert not (tmp_path / "ckpt").exists()


def test_several_styles_export(tmp_path: Path) -> None:
    net = mobile_net(n_styles=2)
    torch.save(payload(net, styles=["a", "b"], style_name="a+b", style_loss="gram"), tmp_path / "s.ckpt")
    model, meta = load_exported(export_all(tmp_path / "s.ckpt", tmp_path)["onnx"])
    x, w = torch.rand(1, 3, 40, 56), torch.tensor([[0.3, 0.7]])
    with torch.no_grad():
        assert (model(x, w) - net(x, w)).abs().max().item() < BOUND
