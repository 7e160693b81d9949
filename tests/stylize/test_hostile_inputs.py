"""`fst stylize` given hostile inputs: style names from a file, images too small or too large, a
decompression bomb, files that fail in unforeseen ways, output formats that cannot hold a photo."""

from __future__ import annotations

import io
import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fst.cli import main as cli
from fst.core.signals import Interrupted
from fst.stylize import command
from fst.stylize.outputs import with_style_labels

from nets import save_checkpoint, save_styles_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def noise(path: Path, w: int, h: int, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def stylize(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Run `fst stylize` in this process: (exit code, stderr lines); never a traceback."""
    code = cli(["stylize", *map(str, argv), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err.splitlines()


def files_below(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


HOSTILE_NAMES = ["../../escaped", ".hidden", "a/b", "a_b", "bad\nname\x1b[31m", "x" * 300, "..", "Udnie", "udnie",
                 "-rf", "\u202egpj.exe"]


def test_style_names_from_the_file_never_leave_the_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: ValueError: Invalid name 'p_../../escaped.png', a traceback; a name without "/"
    # would have made a hidden file or one named like an option.
    root = tmp_path / "a" / "b"
    root.mkdir(parents=True)
    model = save_styles_checkpoint(root / "styles.ckpt", HOSTILE_NAMES)
    noise(root / "p.png", 24, 20)
    code, err = stylize([root / "p.png", "--model", model, "--out", root / "out"], capsys)
    assert all(f in ("a/b/styles.ckpt", "a/b/p.png") or f.startswith("a/b/out/") for f in files_below(tmp_path))
    if code == 2:  # the checkpoint reader may refuse such names itself: one line naming the file
        assert len(err) == 1 and "styles.ckpt" in err[0], err
        return
    assert code == 0, err
    names = sorted(os.listdir(root / "out"))
    assert len(names) == len(HOSTILE_NAMES)
    assert {"p_escaped.png", "p_hidden.png", "p_a_b_2.png", "p_a_b_3.png", "p_bad_name_31m.png", f"p_{'x' * 64}.png",
            "p_style.png", "p_Udnie_7.png", "p_udnie_8.png", "p_rf.png", "p_gpj.exe.png"} == set(names)


def test_every_style_label_is_a_plain_distinct_file_name(tmp_path: Path) -> None:
    out = tmp_path / "out"
    planned = with_style_labels([tmp_path / "p.png"], [out / "p.png"], [*HOSTILE_NAMES, None])
    targets = [ts[0] for ts in planned]
    assert all(t.parent == out and not t.name.startswith((".", "-")) and t.suffix == ".png" for t in targets)
    assert all(t.name.isprintable() and len(t.name.encode()) <= 80 for t in targets)
    assert len({t.name.casefold() for t in targets}) == len(targets)
    assert targets[-1] == out / "p.png"  # no label: the planned target itself


@pytest.mark.parametrize(("size", "extra", "reason"), [
    ((1, 1), [], "too small: 1x1"),
    ((2, 3), [], "too small: 2x3"),
    ((4, 40), [], "too small: 4x40"),
    ((40, 4), [], "too small: 40x4"),
    ((1000, 5), ["--max-size", "32"], "too small: 32x1 after --max-size 32"),
    ((20000, 3), ["--tile", "64"], "too small: 20000x3"),
])
def test_an_image_under_the_smallest_side_is_skipped_in_one_line(size: tuple[int, int], extra: list[str], reason: str,
                                                                 ckpt: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Before: "Padding size should be less than the corresponding input dimension", a traceback.
    src = noise(tmp_path / "small.png", *size)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "o.png", *extra], capsys)
    assert code == 1 and err[0] == f"fst stylize: skipped {src}: {reason}; the network needs at least 5 px a side", err
    assert len(err) == 2 and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(("size", "extra"), [((5, 5), []), ((5, 41), []), ((1000, 160), ["--max-size", "32"]),
                                             ((2000, 5), ["--tile", "64"]), ((7, 300), ["--tile", "32", "--overlap", "8"])])
def test_the_smallest_side_is_the_real_minimum(size: tuple[int, int], extra: list[str], ckpt: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = noise(tmp_path / "edge.png", *size)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "o.png", *extra], capsys)
    assert code == 0, err
    assert min(Image.open(tmp_path / "o.png").size) >= 5


def test_a_tiny_image_between_two_photos_costs_only_itself(ckpt: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Before: the traceback at b.png ended the run, c.png was never written.
    src = tmp_path / "in"
    src.mkdir()
    noise(src / "a.png", 40, 30)
    noise(src / "b.png", 1, 1)
    noise(src / "c.png", 40, 30)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "out"], capsys)
    assert code == 1 and err == [f"fst stylize: skipped {src / 'b.png'}: too small: 1x1; the network needs at least 5 px a side",
                                 f"fst stylize: 2 of 3 written to {tmp_path / 'out'}; 1 failed"]
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "c.png"]


def bomb_png(w: int, h: int) -> bytes:
    """A real decompression bomb: a 1-bit PNG of w x h black pixels, its data compressed ~1000:1."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    rows = b"\x00" * (1 + (w + 7) // 8) * 1000
    data = b"".join(z.compress(rows) for _ in range(h // 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.mark.parametrize("compile_", ["auto", "no"])
def test_a_decompression_bomb_in_a_folder_is_skipped(compile_: str, ckpt: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # Before, with --compile auto (the default): DecompressionBombError from the size check that
    # reads every header before the per-file guard; nothing written.
    src = tmp_path / "in"
    src.mkdir()
    (src / "bomb.png").write_bytes(bomb_png(30000, 30000))  # 110 kB on disk, 900 MP decoded
    noise(src / "photo.png", 40, 30)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "out", "--compile", compile_], capsys)
    assert code == 1 and err[0] == f"fst stylize: skipped {src / 'bomb.png'}: too large (over 100 MP)", err
    assert os.listdir(tmp_path / "out") == ["photo.png"]


def crafted_headers(folder: Path) -> list[Path]:
    """Files named .png whose headers trip PIL's plugins outside the errors it documents: a DDS with
    no pixel format (NotImplementedError) and an IM whose size is no integer (TypeError)."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24)).save(buffer, format="DDS")
    dds = bytearray(buffer.getvalue())
    dds[80] = 0  # the pixel format's flags
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24)).save(buffer, format="IM")
    im = buffer.getvalue().replace(b"32*24", b"32.5*24")
    (folder / "dds.png").write_bytes(bytes(dds))
    (folder / "im.png").write_bytes(im)
    return [folder / "dds.png", folder / "im.png"]


def test_a_crafted_header_is_one_files_problem(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: NotImplementedError / TypeError tracebacks, the rest of the folder left undone.
    src = tmp_path / "in"
    src.mkdir()
    bad = crafted_headers(src)
    noise(src / "z.png", 40, 30)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "out"], capsys)
    assert code == 1 and len(err) == 3, err
    for path, line in zip(bad, err):
        assert line.startswith(f"fst stylize: skipped {path}: cannot decode ("), line
    assert os.listdir(tmp_path / "out") == ["z.png"]


def test_any_failure_of_one_file_is_that_files_and_a_stop_still_stops(ckpt: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in "abcd":
        noise(src / f"{name}.png", 20, 16)
    real = command.stylize_file
    raised: dict[str, BaseException] = {}

    def failing(stylizer, path, outputs, opts):  # what no test can provoke on purpose: a bug, in one file
        if path.stem in raised:
            raise raised[path.stem]
        return real(stylizer, path, outputs, opts)

    monkeypatch.setattr(command, "stylize_file", failing)
    raised.update(b=ZeroDivisionError("float division by zero"), c=KeyError("gamma"))
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "out"], capsys)
    assert code == 1 and err == [f"fst stylize: skipped {src / 'b.png'}: ZeroDivisionError: float division by zero",
                                 f"fst stylize: skipped {src / 'c.png'}: KeyError: 'gamma'",
                                 f"fst stylize: 2 of 4 written to {tmp_path / 'out'}; 2 failed"]
    for stop, exit_code in ((Interrupted(signal.SIGTERM), 143), (KeyboardInterrupt(), 130)):
        raised.clear()
        raised["b"] = stop
        out = tmp_path / f"out{exit_code}"
        assert cli(["stylize", str(src), "--model", str(ckpt), "--out", str(out), "--quiet"]) == exit_code
        assert os.listdir(out) == ["a.png"]  # stopped at b: c and d never started
    capsys.readouterr()


@pytest.mark.parametrize("ext", ["blp", "xbm", "msp", "palm", "h5", "grib", "bufr", "wmf", "ico", "icns"])
def test_an_output_format_that_cannot_hold_a_photo_is_refused_before_the_model_loads(
        ext: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: `--out o.blp`: ValueError: Unsupported BLP image mode, a traceback after the pass
    # (XBM, MSP, Palm take other modes, HDF5, GRIB, BUFR, WMF need a plugin, ICO and ICNS resize).
    src = noise(tmp_path / "p.png", 40, 30)
    code, err = stylize([src, "--model", tmp_path / "missing.ckpt", "--out", tmp_path / f"o.{ext}"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"fst stylize: error: {tmp_path / f'o.{ext}'}: cannot write "), err
    assert os.listdir(tmp_path) == ["p.png"]


def test_an_image_too_wide_for_its_output_format_is_skipped_before_its_pass(ckpt: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Before: ValueError: encoding error 5: Image size exceeds WebP limit of 16383 pixels.
    src = tmp_path / "in"
    src.mkdir()
    noise(src / "wide.png", 16400, 6)
    noise(src / "z.png", 40, 30)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "out", "--ext", "webp"], capsys)
    assert code == 1 and err[0] == (f"fst stylize: skipped {src / 'wide.png'}: cannot write {tmp_path / 'out' / 'wide.webp'}: "
                                    "WEBP holds at most 16383 px a side, this image is 16400x6 (use --max-size or another --ext)")
    assert os.listdir(tmp_path / "out") == ["z.webp"]
    assert cli(["stylize", str(src / "wide.png"), "--model", str(ckpt), "--out", str(tmp_path / "w.webp"), "--quiet",
                "--max-size", "16383"]) == 0


@pytest.mark.parametrize("ext", ["png/../../x.png", "", ".", "p g"])
def test_an_ext_that_is_no_extension_is_refused(ext: str, ckpt: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # Before: --ext 'png/../../x.png' planned outputs outside --out (out/p.png/../../x.png).
    noise(tmp_path / "p.png", 20, 16)
    noise(tmp_path / "q.png", 20, 16)
    code, err = stylize([tmp_path / "p.png", tmp_path / "q.png", "--model", ckpt, "--out", tmp_path / "out", "--ext", ext], capsys)
    assert code == 2 and err == [f"fst stylize: error: --ext {ext!r}: an extension is letters and digits (e.g. png, jpg)"]
    assert not (tmp_path / "out").exists()


def test_a_file_over_the_size_bound_is_skipped_unread(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: the whole file was read into memory first (2 GiB here; a sparse file takes no disk).
    src = tmp_path / "in"
    src.mkdir()
    with open(src / "huge.png", "wb") as f:
        f.truncate(2 << 30)
    noise(src / "z.png", 40, 30)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "out"], capsys)
    assert code == 1 and err[0] == f"fst stylize: skipped {src / 'huge.png'}: too large (2.0 GiB file, over 1 GiB)", err
    assert os.listdir(tmp_path / "out") == ["z.png"]


def test_tile_alone_picks_an_overlap_that_fits(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: `--tile 64` alone was refused: the default overlap, 96, is over half of it.
    src = noise(tmp_path / "p.png", 150, 90)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "o.png", "--tile", "64"], capsys)
    assert code == 0 and err == [], err


def test_a_file_name_with_a_newline_or_an_escape_is_reported_on_one_line(ckpt: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Before: the skipped line broke in two at the newline and sent the escape to the terminal.
    src = tmp_path / "in"
    src.mkdir()
    noise(src / "a\nb\x1b[2J.png", 1, 1)
    noise(src / "z.png", 40, 30)
    code, err = stylize([src, "--model", ckpt, "--out", tmp_path / "out"], capsys)
    assert code == 1 and len(err) == 2, err
    assert err[0] == f"fst stylize: skipped {src}/a\\nb\\x1b[2J.png: too small: 1x1; the network needs at least 5 px a side"
