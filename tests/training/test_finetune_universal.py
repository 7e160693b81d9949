"""A one-painting network fine-tuned from a universal network (fst/training/universal_base.py), trained
for real (Lightning, sample shards, VGG16 weights) from a tiny universal base: it starts at `fst
stylize --style-image`'s answer, its decoder learns while its encoder and the bound statistics stay,
it stylizes with no --style-image, it resumes, and bad inputs are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from fst.artefacts.checkpoint import load_checkpoint
from fst.artefacts.resume import read_resumable
from fst.artefacts.universal_checkpoint import STATS, bound_styles, load_universal, payload, universal_from_checkpoint
from fst.core.errors import FstError
from fst.io.images import open_rgb
from fst.models.painting_stats import painting_stats
from fst.models.universal import UniversalNet
from fst.stylize.stylizer import Stylizer
from fst.training.module import StyleTransferModule
from runs import ROOT, TINY, fst_env

STYLES = ROOT / "fst" / "assets" / "styles"
PAINTING = STYLES / "udnie.jpg"
PHOTO = ROOT / "fst" / "assets" / "photos" / "cat.jpg"


def fst(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fst.cli", *map(str, args)], cwd=ROOT, env=fst_env(),
                          capture_output=True, text=True, timeout=600)


def module(base: Path | str, **kw) -> StyleTransferModule:
    return StyleTransferModule(**{"style_image": str(PAINTING), "base_checkpoint": str(base), "style_size": 64, **kw})


@pytest.fixture(scope="module")
def base(tmp_path_factory, vgg16_weights) -> Path:
    """A tiny universal network (relu2_1, a quarter-width decoder) with VGG16's encoder."""
    net = UniversalNet("inter", "relu2_1", 0.25)
    net.encoder.load_vgg(vgg16_weights.state_dict)
    path = tmp_path_factory.mktemp("base") / "universal.ckpt"
    torch.save(payload(net, global_step=7), path)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, base) -> Path:
    root = tmp_path_factory.mktemp("finetune")
    done = fst("fit", "--config", TINY, "--model.style_image", PAINTING, "--model.base_checkpoint", base,
               "--trainer.max_steps", "2", "--trainer.default_root_dir", root)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "checkpoints"


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return TF.to_tensor(open_rgb(PHOTO).resize((64, 48)))[None]


def test_before_the_first_step_it_is_fst_stylize_with_the_painting(photo):
    m = module("sample:universal").eval()
    with torch.no_grad():
        start = m.transformer(photo)
    given = Stylizer("sample:universal", "cpu", "fp32", style_images=[PAINTING]).full(photo)
    torch.testing.assert_close(start, given, atol=1e-6, rtol=0)


def test_the_decoder_learns_the_encoder_and_the_painting_stay(run, base):
    tuned, start = load_universal(run / "last.ckpt"), load_universal(base)
    assert tuned["fst"]["kind"] == "universal" and tuned["fst"]["styles"] == ["udnie"]
    assert tuned["global_step"] == 2
    enc = [k for k in start["state_dict"] if k.startswith("net.encoder.")]
    dec = [k for k in start["state_dict"] if k.startswith("net.decoder.")]
    assert enc and all(torch.equal(tuned["state_dict"][k], start["state_dict"][k]) for k in enc)
    assert any(not torch.equal(tuned["state_dict"][k], start["state_dict"][k]) for k in dec)
    stats, names = bound_styles(tuned)
    expected = painting_stats(universal_from_checkpoint(start)[0], [PAINTING])
    assert names == ["udnie"] and torch.equal(stats, expected)


def test_it_stylizes_without_a_painting_as_with_its_own(run, tmp_path, photo):
    done = fst("stylize", PHOTO, "--model", run / "last.ckpt", "--max-size", "64", "--out", tmp_path / "a.png")
    assert done.returncode == 0, done.stderr
    assert "universal inter" in done.stderr and "udnie" in done.stderr
    bound = Stylizer(run / "last.ckpt", "cpu", "fp32")
    given = Stylizer(run / "last.ckpt", "cpu", "fp32", style_images=[PAINTING])
    other = Stylizer(run / "last.ckpt", "cpu", "fp32", style_images=[STYLES / "great_wave.jpg"])
    x = torch.nn.functional.interpolate(photo, size=(64, 96))
    torch.testing.assert_close(bound(x), given(x), atol=1e-6, rtol=0)
    assert (bound(x) - other(x)).abs().mean() > 1e-3, "another painting gave the same picture"
    assert bound(x, tile=48, overlap=20).shape == x.shape  # tiles as for any network
    written = np.asarray(open_rgb(tmp_path / "a.png"))
    assert max(written.shape[:2]) == 64 and written.std() > 1


def test_a_run_resumes_into_the_same_network(run, base):
    ckpt = read_resumable(run / "last.ckpt")  # checked as a checkpoint to resume from
    saved = ckpt["state_dict"]["net.decoder.out.1.weight"].clone()
    m = module(base)
    m.on_load_checkpoint(ckpt)  # the file's names become the module's
    result = m.load_state_dict(ckpt["state_dict"], strict=False)
    assert not result.unexpected_keys and all(k.startswith("criterion.vgg.") for k in result.missing_keys)
    torch.testing.assert_close(m.transformer.net.decoder.out[1].weight.detach(), saved, atol=0, rtol=0)
    done = fst("fit", "--config", TINY, "--model.style_image", PAINTING, "--model.base_checkpoint", base,
               "--trainer.max_steps", "4", "--trainer.default_root_dir", run.parent, "--ckpt_path", run / "last.ckpt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert load_universal(run / "last.ckpt")["global_step"] == 4


def test_bad_inputs_are_one_line(run, base, tmp_path):
    with pytest.raises(FstError, match="fine-tuned to one painting"):
        StyleTransferModule(style_images=[str(PAINTING), str(STYLES / "great_wave.jpg")], base_checkpoint=str(base))
    with pytest.raises(FstError, match="missing.jpg: style image not found"):
        module(base, style_image=str(tmp_path / "missing.jpg")).check_style_files()
    # Per-painting commands (export, the per-painting readers) say what the file is.
    with pytest.raises(FstError, match="fine-tuned to 'udnie': fst stylize takes it"):
        load_checkpoint(run / "step0000002.ckpt")


def test_it_exports_with_its_painting_baked_in(run, tmp_path, photo):
    from fst.artefacts.universal_export import export_universal

    ft = run / "last.ckpt"
    with pytest.raises(FstError, match="fine-tuned to udnie: export it with --style-image"):
        export_universal(ft, tmp_path / "any.pt", "torchscript")  # its decoder is tuned: not for any painting
    assert not (tmp_path / "any.pt").exists()
    out = export_universal(ft, tmp_path / "ft.pt", "torchscript", style_image=PAINTING)
    x = torch.nn.functional.interpolate(photo, size=(64, 96))
    torch.testing.assert_close(Stylizer(out, "cpu", "fp32")(x), Stylizer(ft, "cpu", "fp32")(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["shape", "names"])
def test_crafted_bound_statistics_are_refused_before_use(run, tmp_path, case):
    ckpt = load_universal(run / "step0000002.ckpt")
    if case == "shape":
        ckpt["state_dict"][STATS] = torch.zeros(100, 3, 3)
    else:
        ckpt["fst"]["styles"] = ["udnie", "other"]
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(FstError, match="bound statistics|names"):
        load_universal(bad)
