"""A universal network trained for real (Lightning, sample shards, VGG16 weights), then used as a user
would: `fst stylize --style-image` on paintings it never saw, with every option a per-painting
network takes, and one-line refusals of paintings that hold no style."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import torchvision.transforms.functional as TF

from fst.artefacts.universal_checkpoint import load_universal, universal_from_checkpoint
from fst.core.errors import FstError
from fst.io.images import open_rgb
from fst.models import tiling
from fst.models.transformer import FixedStyle, style_weights
from fst.stylize.paintings import load_painting
from fst.stylize.stylizer import Stylizer
from fst.training.fit import module_class
from fst.training.module import StyleTransferModule
from fst.training.universal_module import UniversalModule
from runs import ROOT, fst_env

TINY = ROOT / "tests" / "configs" / "universal_tiny.yaml"
STYLES = ROOT / "fst" / "assets" / "styles"
PHOTO = ROOT / "fst" / "assets" / "photos" / "cat.jpg"


def fst(*args: object, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fst.cli", *map(str, args)], cwd=ROOT, env=fst_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def universal_ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("universal")
    # --model.transform on the command line picks the universal module as a config's `transform:` does.
    done = fst("fit", "--config", TINY, "--model.transform", "inter", "--trainer.default_root_dir", root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "eval mode" not in done.stderr  # the frozen encoder is frozen on purpose: no warning asks the user
    return root / "checkpoints" / "last.ckpt"


def test_training_writes_a_universal_checkpoint_with_its_encoder(universal_ckpt, vgg16_weights):
    ckpt = load_universal(universal_ckpt)
    assert ckpt["fst"]["kind"] == "universal" and ckpt["fst"]["universal"]["transform"] == "inter"
    net, meta = universal_from_checkpoint(universal_ckpt)
    assert meta["global_step"] == 3
    # The encoder is VGG16's first convs, carried in the file: the decoder is tied to exactly these.
    torch.testing.assert_close(net.encoder.convs[0].weight, vgg16_weights.state_dict["0.weight"].float())
    assert list(universal_ckpt.parents[1].rglob("events.out.tfevents.*")), "no TensorBoard log"


def test_a_config_with_a_transform_is_a_universal_network():
    assert module_class([], [TINY.read_text()]) is UniversalModule
    assert module_class(["--model.transform=intra"], []) is UniversalModule
    assert module_class([], [(ROOT / "configs" / "quickstart.yaml").read_text()]) is StyleTransferModule


def test_any_painting_from_the_command_line(universal_ckpt, tmp_path):
    out = tmp_path / "out"
    done = fst("stylize", PHOTO, "--model", universal_ckpt, "--style-image", STYLES / "udnie.jpg",
               "--style-image", STYLES / "great_wave.jpg", "--style-size", "128", "--max-size", "96",
               "--transform", "intra", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "universal intra" in done.stderr
    a, b = (np.asarray(open_rgb(out / f"cat_{n}.jpg")).astype(int) for n in ("udnie", "great_wave"))
    assert a.shape == b.shape and max(a.shape[:2]) == 96
    assert np.abs(a - b).mean() > 2, "two paintings gave the same picture"


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return TF.to_tensor(open_rgb(PHOTO).resize((96, 72)))[None]


def stylizer(ckpt: Path, transform: str | None = None) -> Stylizer:
    return Stylizer(ckpt, "cpu", "fp32", style_images=[STYLES / "udnie.jpg", STYLES / "great_wave.jpg"],
                    transform=transform, style_size=128)


@pytest.mark.parametrize("transform", ["intra", "inter"])
def test_a_blend_lies_between_its_paintings(universal_ckpt, photo, transform):
    s = stylizer(universal_ckpt, transform)
    outs = {}
    for name, mix in (("a", {0: 1.0}), ("b", {1: 1.0}), ("ab", {0: 1.0, 1: 1.0})):
        s.style = style_weights(2, mix)[0]
        outs[name] = s(photo)
    a, b, ab = outs["a"], outs["b"], outs["ab"]
    assert (ab - a).abs().mean() < (b - a).abs().mean() and (ab - b).abs().mean() < (b - a).abs().mean()


def test_tiles_take_the_whole_images_statistics(universal_ckpt, photo):
    s = stylizer(universal_ckpt)
    s.style = style_weights(2, {0: 1.0})[0]
    x = torch.nn.functional.interpolate(photo, size=(128, 160))  # on the stride grid
    whole, tiled = s(x), s(x, tile=96, overlap=44)
    naive = tiling.run_tiled(FixedStyle(s.eager, s.style), x, 96, 44)  # each tile with its own statistics
    assert whole.shape == tiled.shape
    # Seams differ within the receptive field of a tile's border (a few px); the statistics are the whole image's.
    assert (whole - tiled).abs().mean() < 0.5 * (whole - naive).abs().mean()


@pytest.mark.parametrize("case", ["uniform", "tiny", "folder", "clip"])
def test_a_painting_without_a_style_is_one_line(tmp_path, case):
    painting = tmp_path / f"{case}.png"
    if case == "uniform":
        Image.new("RGB", (300, 200), (128, 128, 128)).save(painting)
    elif case == "tiny":
        Image.new("RGB", (1, 1), (10, 200, 30)).save(painting)
    elif case == "folder":
        painting.mkdir()
    elif case == "clip":
        painting = tmp_path / "clip.mp4"
        painting.write_bytes(b"\x00" * 64)
    with pytest.raises(FstError, match=str(painting)):
        load_painting(painting, 512, 8)


def test_the_two_kinds_of_network_say_what_they_need(universal_ckpt, tmp_path):
    out = tmp_path / "o.png"
    done = fst("stylize", PHOTO, "--model", universal_ckpt, "--out", out)
    assert done.returncode == 2 and "--style-image" in done.stderr
    done = fst("stylize", PHOTO, "--model", universal_ckpt, "--style-image", tmp_path / "missing.jpg", "--out", out)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "missing.jpg" in lines[0], lines
    per_painting = ROOT / "tests" / "fixtures" / "checkpoint_2026-12-04_5ef50f6.ckpt"
    with pytest.raises(FstError, match="not a universal network"):
        Stylizer(per_painting, "cpu", style_images=[STYLES / "udnie.jpg"])
    assert not out.exists()


def test_a_crafted_universal_checkpoint_is_refused_before_its_weights_are_read(universal_ckpt, tmp_path):
    ckpt = load_universal(universal_ckpt)
    key = next(k for k in ckpt["state_dict"] if k.startswith("net.decoder."))
    ckpt["state_dict"][key] = torch.zeros(3, 3)
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(FstError, match="do not match its config"):
        load_universal(bad)
    ckpt = load_universal(universal_ckpt)
    ckpt["fst"]["universal"]["layer"] = "relu9_9"
    torch.save(ckpt, bad)
    with pytest.raises(FstError, match="universal network config"):
        load_universal(bad)


def test_a_contact_sheet_shows_paintings_across_and_photos_down(universal_ckpt, tmp_path):
    out = tmp_path / "sheet.png"
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a photo")
    done = fst("sheet", PHOTO, bad, "--model", universal_ckpt, "--style-image", STYLES / "udnie.jpg",
               STYLES / "great_wave.jpg", "--cell", "64", "--max-size", "64", "--style-size", "64", "--out", out)
    assert done.returncode == 1, done.stderr  # the broken photo is that photo's problem, said in one line
    assert sum("broken.jpg" in line for line in done.stderr.splitlines()) == 1
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    gap, cell = 8, 64

    def fit(path: Path) -> tuple[int, int]:  # (w, h) of a picture shrunk into a cell, aspect kept
        pic = Image.open(path)
        pic.thumbnail((cell, cell))
        return pic.size

    photo, paintings = fit(PHOTO), [fit(STYLES / "udnie.jpg"), fit(STYLES / "great_wave.jpg")]
    widths = [photo[0], *(max(w, photo[0]) for w, _ in paintings)]  # a stylized photo keeps the photo's shape
    heights = [max(h for _, h in paintings), photo[1]]
    assert abs(img.shape[1] - (sum(widths) + 4 * gap)) <= 3 and abs(img.shape[0] - (sum(heights) + 3 * gap)) <= 2
    assert img.shape[0] < 2 * cell + 3 * gap or img.shape[1] < 3 * cell + 4 * gap, "no white square cells"

    def at(row: int, col: int) -> np.ndarray:  # a cell less a margin (a picture may be narrower than its column)
        y, x = gap + sum(heights[:row]) + row * gap, gap + sum(widths[:col]) + col * gap
        h, w = heights[row], widths[col]
        return img[y + h // 8:y + h - h // 8, x + w // 8:x + w - w // 8]

    assert (at(0, 0) == 255).all(), "the corner above the photos is empty"
    for col in (1, 2):  # the paintings themselves, then the photo stylized with each
        assert at(0, col).std() > 10 and at(1, col).std() > 3  # a blank cell has none
    assert np.abs(at(1, 1) - at(1, 2)).mean() > 1
    done = fst("sheet", PHOTO, "--model", universal_ckpt, "--style-image", STYLES / "udnie.jpg", "--out", PHOTO)
    assert done.returncode == 2 and "input" in done.stderr


def test_the_shipped_universal_network_carries_a_painting(photo):
    # The network make demo uses: read as data, and a photo given two paintings comes out as two pictures
    # that each moved towards their painting's colours.
    s = Stylizer("sample:universal", "cpu", "fp32", style_images=[STYLES / "the_scream.jpg", STYLES / "great_wave.jpg"],
                 style_size=256)
    assert s.describe().startswith("universal.ckpt (universal intra")
    outs = []
    for k in range(2):
        s.style = style_weights(2, {k: 1.0})[0]
        outs.append(s(photo))
    paintings = [TF.to_tensor(open_rgb(STYLES / n).resize((64, 64)))[None] for n in ("the_scream.jpg", "great_wave.jpg")]
    colour = [p.mean((2, 3)) for p in paintings]
    for k in range(2):
        own, other = (outs[k].mean((2, 3)) - colour[k]).norm(), (outs[k].mean((2, 3)) - colour[1 - k]).norm()
        assert own < other, f"painting {k}'s output is nearer the other painting's colours"


def test_a_clip_takes_a_painting_as_a_photo_does(tmp_path):
    import av

    clip, out = tmp_path / "clip.mp4", tmp_path / "styled.mp4"
    with av.open(str(clip), "w") as c:
        stream = c.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(6):
            frame = np.full((64, 96, 3), 40 * i, np.uint8)
            frame[:, : 16 * (i + 1)] = 200
            c.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(stream.encode())
    done = fst("stylize", clip, "--model", "sample:universal", "--style-image", STYLES / "udnie.jpg",
               "--style-size", "128", "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (64, 96, 3)
