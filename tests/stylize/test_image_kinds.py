"""`fst stylize` keeps what a photo file says about itself, or says in one line what it did not keep.

Before: the ICC profile was dropped (a Display P3 or Adobe RGB photo changed colour), a float32 TIFF
(values 0..1) was read as black, an animated GIF came out as its first frame without a word, and a
folder run left out a GIF and a HEIC file silently although `fst stylize anim.gif` took the GIF.
Every file here is a real one that Pillow writes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from fst.cli import main as cli
from fst.io import images
from fst.io.images import to_rgb

from nets import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
RGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # an RGB profile, as P3's is
LAB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # of another colour space


def noise(w: int = 40, h: int = 30, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def stylize(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = cli(["stylize", *map(str, argv), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err.splitlines()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


# --- colour profiles ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_the_icc_profile_is_carried_to_the_output(suffix: str, ckpt: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / f"p3{suffix}"
    noise().save(src, icc_profile=RGB_PROFILE)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / f"out{suffix}"], capsys)
    assert code == 0 and not err, err
    assert Image.open(tmp_path / f"out{suffix}").info.get("icc_profile") == RGB_PROFILE


def test_a_profile_the_output_cannot_hold_is_said(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "p3.png"
    noise().save(src, icc_profile=RGB_PROFILE)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "out.bmp"], capsys)
    assert code == 0 and err == [f"fst stylize: {src}: its ICC profile (sRGB built-in) is not kept: BMP files hold none, "
                                 "so the colours will be read as sRGB (--ext png, jpg, webp or tif keep it)"], err
    noise().save(tmp_path / "lab.png", icc_profile=LAB_PROFILE)
    code, err = stylize([tmp_path / "lab.png", "--model", ckpt, "--out", tmp_path / "lab_out.png"], capsys)
    assert code == 0 and len(err) == 1 and "its Lab ICC profile" in err[0] and "cannot describe the RGB output" in err[0], err
    assert "icc_profile" not in Image.open(tmp_path / "lab_out.png").info


# --- float images -------------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "special"), [(1.0, None), (255.0, None), (65535.0, None), (1.0, float("nan"))])
def test_a_float_image_is_read_by_its_range(scale: float, special: float | None) -> None:
    levels = np.arange(256, dtype=np.float32).reshape(16, 16)
    values = levels / 255 * scale
    if special is not None:
        values[0, 1] = special
    got = np.asarray(to_rgb(Image.fromarray(values.astype(np.float32), "F")))[..., 0]
    want = levels.astype(np.uint8)
    want[0, 1] = 0 if special is not None else want[0, 1]
    assert np.abs(got.astype(int) - want).max() <= 1


def test_a_float32_tiff_is_stylized_as_its_8_bit_twin(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grey = np.random.default_rng(1).integers(0, 256, (30, 40), dtype=np.uint8)
    Image.fromarray((grey / 255).astype(np.float32), "F").save(tmp_path / "float.tif")
    assert Image.open(tmp_path / "float.tif").mode == "F"
    Image.fromarray(grey, "L").save(tmp_path / "eight.png")
    for name in ("float.tif", "eight.png"):
        assert stylize([tmp_path / name, "--model", ckpt, "--out", tmp_path / f"{name}.png"], capsys)[0] == 0
    a, b = (np.asarray(Image.open(tmp_path / f"{n}.png")).astype(int) for n in ("float.tif", "eight.png"))
    assert np.abs(a - b).max() <= 1


# --- animations ---------------------------------------------------------------------------------

DURATIONS = [100, 200, 300]


def animation(path: Path, **options: object) -> Path:
    frames = [noise(seed=i) for i in range(len(DURATIONS))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0, **options)
    return path


def frames_of(path: Path) -> tuple[list[np.ndarray], list[int]]:
    with Image.open(path) as img:
        out, durations = [], []
        for i in range(img.n_frames):
            img.seek(i)
            out.append(np.asarray(img.convert("RGB")).astype(int))
            durations.append(img.info.get("duration"))
    return out, durations


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
def test_every_frame_of_an_animation_is_stylized(suffix: str, ckpt: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = animation(tmp_path / f"anim{suffix}")
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / f"out{suffix}"], capsys)
    assert code == 0 and not err, err
    frames, durations = frames_of(tmp_path / f"out{suffix}")
    assert durations == DURATIONS and Image.open(tmp_path / f"out{suffix}").info.get("loop") == 0
    assert all(np.abs(a - b).mean() > 5 for a, b in zip(frames, frames[1:]))  # each frame its own
    # the first frame is what its still gives (within the lossy WebP encoders' rounding)
    Image.open(src).convert("RGB").save(tmp_path / "first.png")
    stylize([tmp_path / "first.png", "--model", ckpt, "--out", tmp_path / f"still{suffix}"], capsys)
    assert np.abs(frames[0] - frames_of(tmp_path / f"still{suffix}")[0][0]).mean() < 3


def test_an_output_that_holds_one_frame_says_so(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = animation(tmp_path / "anim.gif")
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "out.jpg"], capsys)
    assert code == 0 and err == [f"fst stylize: {src}: only the first of its 3 frames is stylized: JPEG files hold one "
                                 "(--ext gif, webp or png keep them all)"], err


def test_an_animation_is_bounded_before_its_frames_are_decoded(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(images, "MAX_PIXELS", 2 * 40 * 30)  # one frame fits, three do not
    src = animation(tmp_path / "anim.gif")
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "out.gif"], capsys)
    assert code == 1 and err[0] == f"fst stylize: skipped {src}: too large (3 frames of 40x30, over 0 MP in all)", err


# --- folders ------------------------------------------------------------------------------------


def test_a_folder_takes_every_format_a_single_file_takes(ckpt: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    animation(folder / "anim.gif")
    noise().save(folder / "photo.png")
    noise().save(folder / "icon.ico", sizes=[(16, 16)])  # read by Pillow, not written: becomes a PNG
    (folder / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))
    (folder / "notes.txt").write_text("not a photo")
    code, err = stylize([folder, "--model", ckpt, "--out", tmp_path / "out"], capsys)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["anim.gif", "icon.png", "photo.png"]
    assert Image.open(tmp_path / "out" / "anim.gif").n_frames == 3
    assert f"fst stylize: left out {folder / 'notes.txt'}: not an image or a clip fst reads (.txt)" in err, err
    heic = (f"fst stylize: skipped {folder / 'phone.heic'}: a HEIC image, and this Pillow has no HEIC decoder "
            "(pip install pillow-heif)")
    assert heic in err and code == 1, err
    # the same reason for the HEIC file named alone
    code, err = stylize([folder / "phone.heic", "--model", ckpt, "--out", tmp_path / "phone.png"], capsys)
    assert code == 1 and err[0] == heic, err
    # a folder of the rest only: nothing failed, the note is no failure
    (folder / "phone.heic").unlink()
    code, err = stylize([folder, "--model", ckpt, "--out", tmp_path / "out2"], capsys)
    assert code == 0 and len(err) == 1 and "left out" in err[0], err


def test_profile_bytes_survive_a_round_trip_through_pillow() -> None:
    """The premise of the profile tests: Pillow writes and reads back the bytes it is given."""
    buffer = io.BytesIO()
    noise().save(buffer, "PNG", icc_profile=RGB_PROFILE)
    assert Image.open(buffer).info["icc_profile"] == RGB_PROFILE and RGB_PROFILE[16:20] == b"RGB "
