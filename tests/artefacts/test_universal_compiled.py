"""`fst export --format aoti` of a universal network that takes a painting's statistics: the package
runs `model(x, stats)` like the checkpoint's network, and `fst stylize --trust-compiled` gives the
checkpoint's image. One package (compiling is the slow part); the inter transform compiles too
(torch.linalg.eigh runs as an extern kernel), checked by hand: see docs/universal.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fst.artefacts.export import export_model
from fst.artefacts.exported import load_compiled
from fst.artefacts.universal_checkpoint import payload
from fst.cli import main as cli
from fst.core.errors import FstError
from fst.io.style_images import load_painting
from fst.models.universal import UniversalNet

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not shutil.which("g++") and not shutil.which("c++"), reason="AOTInductor needs a C++ compiler")]

PAINTING = Path(__file__).resolve().parents[2] / "fst" / "assets" / "styles" / "arcimboldo_spring.jpg"


def tiny() -> UniversalNet:
    torch.manual_seed(0)
    return UniversalNet("intra", "relu2_1", 0.25).eval()


def test_a_package_of_a_universal_network_runs_like_its_checkpoint(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(payload(tiny(), global_step=3), tmp_path / "u.ckpt")
    package = export_model(tmp_path / "u.ckpt", tmp_path / "u.pt2", "aoti")
    run, meta = load_compiled(package, trusted=True)
    assert meta["kind"] == "universal" and meta["stats_shape"] == [2, 128] and meta["painting"] is None
    net = tiny()
    with torch.no_grad():
        stats = net.style_stats(load_painting(PAINTING, 64, net.min_side))
        for x in (torch.rand(1, 3, 4, 4), torch.rand(2, 3, 37, 45)):  # the smallest side, odd sizes, a batch
            assert (run(x, stats) - net(x, stats)).abs().max().item() < 1e-4
    with pytest.raises(FstError, match=r"takes one painting's statistics of shape \(2, 128\)"):
        run(x, stats[:1])  # one line, before the compiled code sees it
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    common = ["stylize", str(tmp_path / "in.png"), "--style-image", str(PAINTING), "--style-size", "64", "--device", "cpu",
              "--quiet"]
    assert cli([*common, "--model", str(tmp_path / "u.ckpt"), "--dtype", "fp32", "--out", str(tmp_path / "ckpt.png")]) == 0
    assert cli([*common, "--model", str(package), "--trust-compiled", "--out", str(tmp_path / "aoti.png")]) == 0
    images = [np.asarray(Image.open(tmp_path / name)).astype(int) for name in ("ckpt.png", "aoti.png")]
    assert np.abs(images[0] - images[1]).max() <= 1, capsys.readouterr().err
