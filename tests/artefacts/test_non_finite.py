"""NaN and infinity never pass for an image: weights that hold them are refused when they are read,
in every format, and a pass that overflows (fp16's range ends at 65504) writes nothing.

Before: a checkpoint of a diverged run (one NaN weight) went through `fst stylize` as an all-black
image with exit 0, and `fst export` wrote the NaN model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fst.artefacts import checkpoint, exported
from fst.artefacts.checkpoint import payload
from fst.artefacts.export import export_model
from fst.artefacts.exported import FORMATS, SUFFIXES
from fst.cli import main as cli

from crafted import one_line_error, stylize_refused
from nets import make_net

pytestmark = pytest.mark.usefixtures("one_thread")


def save_net(path: Path, change: dict[str, float] | None = None, scale: float = 1.0) -> Path:
    """`make_net()` as a checkpoint, with one element of some weights set to a value, or the first
    conv's weights scaled (finite, but large enough to overflow a pass)."""
    net = make_net()
    with torch.no_grad():
        for name, value in (change or {}).items():
            net.state_dict()[name].view(-1)[1] = value
        net.conv_in[1].weight.mul_(scale)
    torch.save(payload(net, style_name="diverged", style_loss="gram", global_step=9), path)
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    return tmp_path / "in.png"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_checkpoint_with_a_non_finite_weight_is_refused_by_stylize_and_export(
        value: float, image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = save_net(tmp_path / "diverged.ckpt", {"residual.0.body.1.1.weight": value})
    err = stylize_refused(ckpt, image, capsys)
    assert "diverged.ckpt: refused: weight residual.0.body.1.1.weight holds 1 NaN or infinite values of" in err, err
    out = tmp_path / "m.pt"
    err = one_line_error(["export", str(ckpt), "--out", str(out)], capsys)
    assert "diverged.ckpt: refused: weight residual.0.body.1.1.weight holds 1 NaN" in err, err
    assert not out.exists() and not list(tmp_path.glob(".m*"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_artefact_with_a_non_finite_weight_is_refused(fmt: str, image: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """An artefact as an fst without the check (or another tool) wrote it: NaN weights, their digest true."""
    ckpt = save_net(tmp_path / "diverged.ckpt", {"conv_out.1.bias": float("nan")})
    with monkeypatch.context() as m:
        for module in (checkpoint, exported):
            m.setattr(module, "check_finite", lambda state, origin: None)
        model = export_model(ckpt, tmp_path / f"nan{SUFFIXES[fmt]}", fmt)
    err = stylize_refused(model, image, capsys)
    assert f"nan{SUFFIXES[fmt]}: refused: weight conv_out.1.bias holds 1 NaN or infinite values of 3" in err, err


@pytest.mark.parametrize(("scale", "dtype", "tile", "advice"), [
    (1e4, "fp16", [], "the network overflows fp16 on this input; rerun with --dtype fp32"),  # finite in fp32
    (1e4, "fp16", ["--tile", "32"], "the network overflows fp16 on this input; rerun with --dtype fp32"),
    (3e37, "fp32", [], "the model's weights overflow float32 on this input"),
])
def test_a_pass_that_overflows_writes_nothing(scale: float, dtype: str, tile: list[str], advice: str, image: Path,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Finite weights whose pass overflows: before, a black image and exit 0. Each file is skipped
    in one line that says what to do; nothing is written."""
    ckpt = save_net(tmp_path / "big.ckpt", scale=scale)
    second = tmp_path / "b.png"
    Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(second)
    out = tmp_path / "out"
    code = cli(["stylize", str(image), str(second), "--model", str(ckpt), "--out", str(out), "--device", "cpu",
                "--dtype", dtype, *tile, "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    skipped = [line for line in err.splitlines() if line.startswith("fst stylize: skipped")]
    assert len(skipped) == 2 and all(advice in line for line in skipped), err
    assert "in.png: the stylized result holds" in skipped[0] and "b.png: the stylized result holds" in skipped[1], err
    assert not out.exists() or not list(out.iterdir())
    if dtype == "fp16":  # the same model in fp32 is fine
        assert cli(["stylize", str(image), "--model", str(ckpt), "--out", str(out), "--device", "cpu",
                    "--dtype", "fp32", "--quiet"]) == 0
        assert np.asarray(Image.open(out / "in.png")).std() > 10
