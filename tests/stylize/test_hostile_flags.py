"""`fst stylize` given extreme flags and a machine short of memory: --mix weights at the ends of
float range, --style with digits that int() does not read, a photo too large for one CPU pass."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fst.cli import main as cli
from fst.stylize import memory

from nets import save_checkpoint, save_styles_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]


def noise(path: Path, w: int, h: int, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int16)


@pytest.fixture(scope="module")
def styles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_styles_checkpoint(tmp_path_factory.mktemp("styles") / "two.ckpt", ["starry_night", "udnie"])


def run(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = cli(["stylize", *map(str, args), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err.splitlines()


@pytest.mark.parametrize(("mix", "alone"), [("starry_night=1e300,udnie=1", "starry_night"),
                                            ("starry_night=1e-50", "starry_night"),
                                            ("starry_night=1e-300,udnie=1e-310", "starry_night"),
                                            ("starry_night=1.7e308,udnie=1.7e308", None)])
def test_mix_weights_at_the_ends_of_float_range(mix: str, alone: str | None, styles: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # Before: 1e300 overflowed float32 (a traceback); 1e-50 became 0, then 0/0: an all-black image.
    src = noise(tmp_path / "p.png", 40, 30)
    assert run([src, "--model", styles, "--out", tmp_path / "mix.png", "--mix", mix], capsys)[0] == 0
    if alone is not None:
        assert run([src, "--model", styles, "--out", tmp_path / "one.png", "--style", alone], capsys)[0] == 0
        assert np.abs(pixels(tmp_path / "mix.png") - pixels(tmp_path / "one.png")).max() <= 1
    else:  # two equal weights whose sum overflows float64: the half-and-half blend
        assert run([src, "--model", styles, "--out", tmp_path / "half.png", "--mix", "starry_night=1,udnie=1"], capsys)[0] == 0
        assert np.array_equal(pixels(tmp_path / "mix.png"), pixels(tmp_path / "half.png"))
    assert pixels(tmp_path / "mix.png").std() > 10  # a picture, not a flat black image


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--mix", "starry_night=nan,udnie=1", "--mix: the weight of 'starry_night' must be a finite number >= 0, got 'nan'"),
    ("--mix", "starry_night=inf", "--mix: the weight of 'starry_night' must be a finite number >= 0, got 'inf'"),
    ("--mix", "udnie=-1,starry_night=1", "--mix: the weight of 'udnie' must be a finite number >= 0, got '-1'"),
    ("--mix", "starry_night=1e-400", "--mix: every weight in 'starry_night=1e-400' is 0; the weights must be >= 0 and not all 0"),
    ("--mix", "starry_night=1e400", "--mix: the weight of 'starry_night' must be a finite number >= 0, got '1e400'"),
    ("--style", "\u00b2", "unknown style '\u00b2': this model holds 0='starry_night', 1='udnie'"),
    ("--style", "\u0661", "unknown style '\u0661': this model holds 0='starry_night', 1='udnie'"),
    ("--style", "99999999999999999999999", "unknown style '99999999999999999999999'"),
])
def test_odd_style_flags_are_one_line(flag: str, value: str, message: str, styles: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    # Before: `--style ²` was a ValueError traceback (str.isdigit takes it, int() does not).
    src = noise(tmp_path / "p.png", 20, 16)
    code, err = run([src, "--model", styles, "--out", tmp_path / "o.png", flag, value], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"fst stylize: error: {message}"), err
    assert not (tmp_path / "o.png").exists()


CHILD = textwrap.dedent("""
    import re, resource, sys
    import torch
    torch.set_num_threads(1)
    from fst.cli import main
    model, warm, src, out, room = sys.argv[1:6]
    # Everything a run loads (libraries, decoders, the model) is loaded before the limit, by a run.
    assert main(["stylize", warm, "--model", model, "--out", out + ".warm.png", "--device", "cpu", "--quiet"]) == 0
    used = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (used + int(room), resource.RLIM_INFINITY))
    sys.exit(main(["stylize", src, "--model", model, "--out", out, "--device", "cpu", "--quiet", "--compile", "no"]))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status")
def test_a_photo_too_large_for_the_free_memory_is_tiled_on_the_cpu(tmp_path: Path) -> None:
    # The tiny net and 1600x1600 stand for the default net and a 6000x6000 photo under 8 GB of
    # address space (before: "can't allocate memory: you tried to allocate 4608000000 bytes", a
    # traceback). A full pass here peaks ~0.45 GB above the input (measured), 0.65 GB estimated.
    ckpt = save_checkpoint(tmp_path / "tiny.ckpt")
    src, warm = noise(tmp_path / "big.png", 1600, 1600), noise(tmp_path / "warm.png", 40, 30)
    room = 350_000_000
    assert memory.pass_bytes(1600, 1600, 8) > room
    child = subprocess.run([sys.executable, "-c", CHILD, str(ckpt), str(warm), str(src), str(tmp_path / "o.png"), str(room)],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-2000:]
    err = child.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith("fst stylize: 1600x1600 needs ~0.7 GB for one pass and 0."), err
    assert "GB is free; tiling at " in err[0]
    assert Image.open(tmp_path / "o.png").size == (1600, 1600)


def test_tile_planned_from_free_memory() -> None:
    # A 6000x6000 photo, the default net (32 channels): ~28 GB for one pass.
    assert 27e9 < memory.pass_bytes(6000, 6000, 32) < 31e9
    assert memory.tiles_for_memory(6000, 6000, 32, 8_000_000_000, 1024, 1024) == (1024, 1024)
    tile, stats = memory.tiles_for_memory(6000, 6000, 32, 4_000_000_000, 1024, 1024)
    assert 0 < tile < 1024 and stats == tile  # a statistics pass at 1024 would not fit either
    assert memory.tiles_for_memory(6000, 6000, 32, 2_000_000_000, 1024, 1024) is None  # not even the image


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status")
def test_free_memory_sees_an_address_space_limit() -> None:
    code = ("import pathlib, resource, sys; from fst.stylize import memory; before = memory.free_bytes();"
            "used = memory._field(pathlib.Path('/proc/self/status'), 'VmSize');"
            "resource.setrlimit(resource.RLIMIT_AS, (used + 300_000_000, resource.RLIM_INFINITY));"
            "after = memory.free_bytes(); print(before, after); sys.exit(0 if 250_000_000 < after < 400_000_000 < before else 1)")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert child.returncode == 0, child.stdout + child.stderr
