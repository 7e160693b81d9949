"""A universal network's run started from another universal network's weights
(`model.base_checkpoint`): trained for real (Lightning, sample shards, VGG16) from a tiny base, its
weights start at the base's; a base of another layer or width, or with a second encoder, is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fst.artefacts.universal_checkpoint import load_universal, payload, universal_from_checkpoint
from fst.core.errors import FstError
from fst.models.universal import UniversalNet
from fst.training.universal_module import UniversalModule
from runs import ROOT, fst_env

STYLE_TINY = ROOT / "tests" / "configs" / "universal_style_tiny.yaml"


@pytest.fixture(scope="module")
def base(tmp_path_factory, vgg16_weights) -> Path:
    """A tiny universal network (relu2_1, a quarter-width decoder) whose decoder is not a fresh one."""
    torch.manual_seed(3)
    net = UniversalNet("intra", "relu2_1", 0.25)
    net.encoder.load_vgg(vgg16_weights.state_dict)
    with torch.no_grad():
        for p in net.decoder.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path_factory.mktemp("base") / "universal.ckpt"
    torch.save(payload(net, global_step=9), path)
    return path


def test_the_module_starts_at_the_base(base: Path) -> None:
    want, _ = universal_from_checkpoint(base)
    got = UniversalModule(transform="inter", layer="relu2_1", width=0.25, style_weight=1.0, base_checkpoint=str(base)).net
    assert got.config["transform"] == "inter"  # the run's transform; the base's weights
    for key, value in want.state_dict().items():
        assert torch.equal(got.state_dict()[key], value), key


@pytest.mark.parametrize("kw, words", [
    ({"width": 0.5}, "of width 0.25, this run's model.width is 0.5; set --model.width 0.25"),
    ({"layer": "relu3_1"}, "of layer relu2_1, this run's model.layer is relu3_1"),
    ({"vgg_weights": "x.safetensors"}, "model.base_checkpoint brings its own encoder"),
])
def test_a_base_that_does_not_fit_is_one_line(base: Path, kw: dict, words: str) -> None:
    with pytest.raises(FstError, match=words.replace(".", r"\.").replace("(", r"\(")):
        UniversalModule(**{"layer": "relu2_1", "width": 0.25, **kw, "base_checkpoint": str(base)})


def test_a_missing_base_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(FstError, match="checkpoint not found"):
        UniversalModule(layer="relu2_1", width=0.25, base_checkpoint=str(tmp_path / "none.ckpt"))


def test_fst_fit_trains_on_from_the_base(base: Path, tmp_path: Path) -> None:
    """One real step at an lr so small that Adam's step (about lr per weight) leaves the weights where
    they started: the checkpoint's decoder is the base's, not a fresh one."""
    done = subprocess.run([sys.executable, "-m", "fst.cli", "fit", "--config", str(STYLE_TINY),
                           "--model.base_checkpoint", str(base), "--model.lr", "1e-12", "--trainer.max_steps", "1",
                           "--trainer.default_root_dir", str(tmp_path)], cwd=ROOT, env=fst_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    saved = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    assert saved, done.stdout + done.stderr
    trained, meta = universal_from_checkpoint(load_universal(saved[-1]))
    start, _ = universal_from_checkpoint(base)
    assert meta["global_step"] == 1
    for key, value in start.state_dict().items():
        assert torch.allclose(trained.state_dict()[key], value, atol=1e-9), key
