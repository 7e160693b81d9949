"""--stroke-scale: the network at a smaller working size, the result brought back to full size with the
photo's own detail: sharper than a plain resize of the same small result, and exactly the old path at 1."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from fst.io.images import open_rgb
from fst.stylize.stroke_scale import at_stroke_scale, detail_upsample, working_size
from runs import ROOT, fst_env

PHOTO = ROOT / "fst" / "assets" / "photos" / "brandenburg_gate.jpg"
CKPT = ROOT / "tests" / "fixtures" / "checkpoint_2026-12-04_5ef50f6.ckpt"


def photo() -> torch.Tensor:
    return TF.to_tensor(open_rgb(PHOTO))[None]


def test_detail_upsampling_keeps_the_photos_edges():
    # An identity "network" at a quarter of the size: brought back with the detail, the photo comes back far closer to
    # itself than a bilinear resize of the same small image does.
    x = photo()
    small = F.interpolate(x, scale_factor=0.25, mode="bilinear", antialias=True, align_corners=False)
    back = detail_upsample(small, small, x)
    plain = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert back.shape == x.shape
    assert (back - x).abs().mean() < 0.6 * (plain - x).abs().mean()


def test_scale_one_is_the_network_itself_and_larger_scales_run_smaller():
    x = photo()
    seen = []

    def run(t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(t.shape[-2:]))
        return 1 - t

    assert torch.equal(at_stroke_scale(run, x, 1, 8), 1 - x)
    out = at_stroke_scale(run, x, 3, 8)
    assert out.shape == x.shape and seen[-1] == working_size(*x.shape[-2:], 3, 8)
    assert working_size(20, 30, 16, 8) == (8, 8)  # never below the network's smallest side


def test_stroke_scale_from_the_command_line(tmp_path):
    outs = {}
    for s in ("1", "3"):
        outs[s] = tmp_path / f"s{s}.png"
        done = subprocess.run([sys.executable, "-m", "fst.cli", "stylize", str(PHOTO), "--model", str(CKPT),
                               "--stroke-scale", s, "--dtype", "fp32", "--out", str(outs[s])],
                              cwd=ROOT, env=fst_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    a, b = (np.asarray(Image.open(outs[s])).astype(float) for s in ("1", "3"))
    assert a.shape == b.shape == np.asarray(open_rgb(PHOTO)).shape
    assert np.abs(a - b).mean() > 1, "a larger stroke scale changed nothing"
    done = subprocess.run([sys.executable, "-m", "fst.cli", "stylize", str(PHOTO), "--model", str(CKPT),
                           "--stroke-scale", "0.5", "--out", str(tmp_path / "x.png")],
                          cwd=ROOT, env=fst_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "--stroke-scale" in done.stderr
