"""`fst stylize --temporal`: each frame blended with the previous output moved along the input's own
motion (fst.stylize.temporal_blend). On known motion: the moved previous output lands where the pan
puts it, pixels that enter the frame or come out from behind an object take the new frame, a cut
starts afresh; then the command end to end on a tiny clip, and its one-line errors."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fst.assets import sample_photos_dir
from fst.cli import main as cli
from fst.core.errors import FstError
from fst.io.images import open_rgb
from fst.metrics.known_motion import pan
from fst.stylize.image import Options
from fst.stylize.temporal_blend import ClipBlend, check_weight

from nets import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
STEP = 3  # px per frame of the pan


def photo(name: str = "aula_palatina.jpg", short: int = 128) -> torch.Tensor:
    """A sample photo (3, H, W) in [0, 1], its short side resized to `short` px."""
    x = torch.from_numpy(np.array(open_rgb(sample_photos_dir() / name))).permute(2, 0, 1).float() / 255
    h, w = x.shape[-2:]
    size = (round(h * short / min(h, w)), round(w * short / min(h, w)))
    return F.interpolate(x[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)


def u8(frames: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) in [0, 1] -> (T, H, W, 3) uint8."""
    return (frames.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def panned(frames: int = 2, size: int = 64) -> np.ndarray:
    return u8(pan(photo(), frames, size, STEP).frames)


def test_the_previous_output_lands_where_the_pan_moves_it_and_what_enters_takes_the_new_frame():
    frames = panned()
    styled = np.stack([255 - frames[0], np.full_like(frames[1], 128)])  # a "style" that follows the content
    w = 0.8
    out = ClipBlend(w, 1)(list(frames), [styled])[0]
    assert np.array_equal(out[0], styled[0])  # the first frame has nothing before it
    # Inside, the previous output moved by the pan is 255 - frame 1 there (its content, 3 px on).
    expected = (1 - w) * 128 + w * (255 - frames[1].astype(float))
    inner = (slice(8, -8), slice(8, -8 - STEP))
    assert np.abs(out[1][inner] - expected[inner]).mean() < 4
    # Not moved (or moved the wrong way) it would miss by the texture's own change over 3 or 6 px.
    unmoved = (1 - w) * 128 + w * (255 - frames[0].astype(float))
    assert np.abs(out[1][inner] - unmoved[inner]).mean() > 3 * np.abs(out[1][inner] - expected[inner]).mean()
    # The right STEP columns were outside frame 0: only the new frame (one more column softens the edge).
    assert np.array_equal(out[1][:, -(STEP - 1):], styled[1][:, -(STEP - 1):])


def test_a_background_uncovered_by_a_moving_object_takes_the_new_frame():
    back = u8(photo("colosseum.jpg", 96)[None, :, :64, :64])[0]
    thing = u8(photo("aula_palatina.jpg", 96)[None, :, 20:44, 20:44])[0]
    frames = np.stack([back.copy(), back.copy()])
    frames[0, 20:44, 12:36], frames[1, 20:44, 24:48] = thing, thing  # 12 px to the right
    styled = np.stack([np.zeros_like(back), np.full_like(back, 200)])
    out = ClipBlend(0.9, 1)(list(frames), [styled])[0].astype(float)
    uncovered = out[1][24:40, 14:22]  # under the object in frame 0, background in frame 1
    assert np.abs(uncovered - 200).mean() < 40  # the new frame, not the black previous output (20)
    still = out[1][4:16, 4:60]  # background seen in both frames: mostly the previous output
    assert still.mean() < 100  # 20 if every pixel kept the previous output, 200 if none; measured 48


def test_a_cut_starts_afresh():
    a = panned(2)[0]
    b = u8(photo("colosseum.jpg", 64)[None, :, :64, :64])[0]
    styled = np.stack([np.zeros_like(a), np.full_like(a, 200), np.full_like(a, 100)])
    lever = ClipBlend(0.9, 1)
    out = lever([a, b, b], [styled])[0]
    assert lever.cuts == 1
    assert np.array_equal(out[1], styled[1])  # nothing of the frame before the cut
    assert np.abs(out[2].astype(float) - (0.1 * 100 + 0.9 * 200)).mean() < 10  # then the blend again


@pytest.mark.parametrize("weight", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_a_weight_outside_0_to_1_is_refused(weight: float):
    with pytest.raises(FstError, match=r"--temporal must be a weight in \[0, 1\)"):
        Options(temporal=weight)
    assert check_weight(0.0) == 0.0 and check_weight(0.95) == 0.95


# ---- the command ---------------------------------------------------------------------------------

def pan_clip(path: Path, frames: int = 12, size: int = 64, sigma: float = 12.0) -> Path:
    """A 12 fps H.264 pan over a photo with fresh noise in every frame: a network's output flickers."""
    noise = np.random.default_rng(0).normal(0, sigma, (frames, size, size, 3))
    pixels = np.clip(panned(frames, size) + noise, 0, 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12, options={"crf": "10"})
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i, img in enumerate(pixels):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 12)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def decoded(path: Path) -> tuple[np.ndarray, list[int]]:
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return np.stack([f.to_ndarray(format="rgb24") for f in frames]).astype(float), [f.pts for f in frames]


def step_change(frames: np.ndarray) -> float:
    """Mean squared change of each frame from the one before moved by the pan, inside the frame."""
    return float(np.mean((frames[1:, 8:-8, 8:-8 - STEP] - frames[:-1, 8:-8, 8 + STEP:-8]) ** 2))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def stylize(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = cli(["stylize", *map(str, args), "--device", "cpu"])
    return code, capsys.readouterr().err


def test_stylize_temporal_end_to_end_flickers_less_and_keeps_frames(ckpt: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]):
    src = pan_clip(tmp_path / "pan.mp4")
    code, err = stylize(capsys, src, "--model", ckpt, "--out", tmp_path / "plain.mp4")
    assert code == 0 and err.count("--temporal") == 1  # the hint, once for the clip, not per frame
    code, err = stylize(capsys, src, "--model", ckpt, "--out", tmp_path / "smooth.mp4", "--temporal", "--quiet")
    assert code == 0 and "--temporal" not in err
    plain, plain_pts = decoded(tmp_path / "plain.mp4")
    smooth, smooth_pts = decoded(tmp_path / "smooth.mp4")
    assert smooth.shape == plain.shape and smooth_pts == plain_pts == decoded(src)[1]
    assert step_change(smooth) < 0.6 * step_change(plain)


@pytest.mark.parametrize("value", ["1", "-0.2", "nan", "two"])
def test_bad_weights_are_one_line(value: str, ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    src = pan_clip(tmp_path / "pan.mp4", frames=3)
    code, err = stylize(capsys, src, "--model", ckpt, "--out", tmp_path / "o.mp4", f"--temporal={value}")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--temporal" in lines[0], err
    assert not (tmp_path / "o.mp4").exists()


def test_without_opencv_temporal_says_how_to_install_it(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]):
    src = pan_clip(tmp_path / "pan.mp4", frames=3)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    code, err = stylize(capsys, src, "--model", ckpt, "--out", tmp_path / "o.mp4", "--temporal")
    lines = err.strip().splitlines()
    assert code == 2 and lines == ["fst stylize: error: --temporal needs OpenCV for optical flow: pip install 'fst[eval]'"]
    assert not (tmp_path / "o.mp4").exists()
