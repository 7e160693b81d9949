"""A universal network trained with a style loss over a style corpus (AdaIN's recipe): a real run
(Lightning, the sample photo and painting shards, VGG16 weights) logs each term, trains the decoder and
writes a checkpoint `fst stylize --style-image` takes; the style term falls on a fixed batch; a run
without its paintings, or with style shards that are not there, stops in one line before it starts."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fst.artefacts.universal_checkpoint import load_universal, universal_from_checkpoint
from fst.assets import resolve_style_path
from fst.core.errors import FstError
from fst.io.images import open_rgb
from fst.models.universal import UniversalNet
from fst.training.style_image import load_style
from fst.training.universal_module import UniversalModule
from fst.training.universal_style import StyleObjective
from runs import ROOT, fst_env

TINY = ROOT / "tests" / "configs" / "universal_style_tiny.yaml"
PER_PAINTING = ROOT / "tests" / "configs" / "tiny.yaml"
PHOTO = ROOT / "fst" / "assets" / "photos" / "cat.jpg"


def fst(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fst.cli", *map(str, args)], cwd=ROOT, env=fst_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("universal_style")
    done = fst("fit", "--config", TINY, "--trainer.default_root_dir", root)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def test_each_term_is_logged_and_finite(run):
    files = sorted(run.rglob("events.out.tfevents.*"))
    assert files, "no TensorBoard log"
    acc = EventAccumulator(str(files[-1].parent), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("loss/style", "loss/content", "loss/total", "loss/style/relu1_2", "loss/style/relu4_3"):
        values = [e.value for e in acc.Scalars(tag)]
        assert len(values) == 4 and all(math.isfinite(v) for v in values), (tag, values)
    assert "loss/pixel" not in tags  # pixel_weight and feature_weight 0: no reconstruction pass


def test_the_decoder_learnt_and_the_checkpoint_stylizes(run, tmp_path):
    ckpt = run / "checkpoints" / "last.ckpt"
    raw = load_universal(ckpt)
    assert all(k.startswith("net.") for k in raw["state_dict"]), "the loss network must stay out of the file"
    net, meta = universal_from_checkpoint(ckpt)
    assert meta["global_step"] == 4 and meta["universal"]["transform"] == "intra"
    assert (net.decoder.out[1].bias - 0.5).abs().max() > 1e-3, "the decoder's output layer never moved"
    out = tmp_path / "cat.jpg"
    done = fst("stylize", PHOTO, "--model", ckpt, "--style-image", resolve_style_path("sample:udnie"),
               "--style-size", "64", "--max-size", "48", "--out", out)
    assert done.returncode == 0, done.stderr
    assert max(np.asarray(open_rgb(out)).shape[:2]) == 48


def test_the_style_term_falls_on_a_fixed_batch(vgg16_weights):
    torch.manual_seed(0)
    net = UniversalNet("intra", "relu2_1", 0.25)
    net.encoder.load_vgg(vgg16_weights.state_dict)
    net.train()
    objective = StyleObjective("intra")
    x = torch.rand(2, 3, 32, 32)
    painting = torch.nn.functional.interpolate(load_style(resolve_style_path("sample:starry_night"), 64), size=(32, 32))
    opt = torch.optim.Adam(net.decoder.parameters(), lr=2e-3)
    styles = []
    for _ in range(6):
        terms = objective.terms(net, x, painting)
        styles.append(float(terms["style"].detach()))
        opt.zero_grad()
        (terms["content"] + terms["style"]).backward()
        opt.step()
    assert styles[-1] < 0.5 * styles[0], styles


def test_paintings_per_photo_are_each_photos_own(vgg16_weights):
    # Two photos with two paintings score as each photo with its own painting alone.
    net = UniversalNet("inter", "relu2_1", 0.25)
    net.encoder.load_vgg(vgg16_weights.state_dict)
    objective = StyleObjective("gram")
    x, p = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        both = objective.terms(net, x, p)["style"]
        alone = [objective.terms(net, x[i:i + 1], p[i:i + 1])["style"] for i in range(2)]
    torch.testing.assert_close(both, sum(alone) / 2, rtol=1e-4, atol=1e-6)


def test_style_weight_needs_its_paintings():
    with pytest.raises(FstError, match="set data.style_shards"):
        UniversalModule(style_weight=1.0).check_paintings(None)
    with pytest.raises(FstError, match="model.style_weight is 0"):
        UniversalModule().check_paintings("sample")
    with pytest.raises(FstError, match="all 0: nothing to train"):
        UniversalModule(pixel_weight=0, feature_weight=0)


@pytest.mark.parametrize("config, extra, message", [
    (TINY, ["--data.style_shards", "{tmp}/nowhere"], "fst fit: error: style_shards: missing shard"),
    (TINY, ["--data.style_shards", "null"], "fst fit: error: model.style_weight > 0 trains on paintings"),
    (PER_PAINTING, ["--data.style_shards", "sample"], "fst fit: error: data.style_shards is for a universal network"),
], ids=["missing shards", "no style shards", "per-painting network"])
def test_a_run_without_its_paintings_stops_in_one_line(tmp_path, config, extra, message):
    done = fst("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "run",
               *[e.format(tmp=tmp_path) for e in extra])
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith(message), done.stderr
    assert not (tmp_path / "run").exists()  # refused before any folder was made
