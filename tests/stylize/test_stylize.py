"""`fst stylize`: folders, bad files, alpha, tiling without seams, strength, colour, atomic writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fst.artefacts.export import export_model
from fst.cli import main as cli
from fst.models import tiling
from fst.stylize.image import Options, stylize_image
from fst.stylize.stylizer import Stylizer

from nets import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "fst" / "assets" / "photos"


def photo(name: str, size: tuple[int, int]) -> Image.Image:
    return Image.open(PHOTOS / name).convert("RGB").resize(size, Image.Resampling.LANCZOS)


def arr(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int16)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    save_checkpoint(path, global_step=10)
    return path


@pytest.fixture(scope="module")
def stylizer(ckpt: Path) -> Stylizer:
    return Stylizer(ckpt, device="cpu")


def test_folder_in_folder_out_with_a_corrupt_file(ckpt: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo("cat.jpg", (96, 72)).save(src / "cat.jpg")
    photo("dog.jpg", (61, 83)).save(src / "dog.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (src / "notes.txt").write_text("not an image, not an input")
    # The one-shot script, as a user runs it (a real process, a real exit code).
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stylize.py"), str(src), "--model", str(ckpt), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert "broken.jpg" in run.stderr and "2 of 3 written" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cat.jpg", "dog.png"]  # no temp leftovers
    assert Image.open(out / "cat.jpg").size == (96, 72) and Image.open(out / "dog.png").size == (61, 83)


def test_alpha_is_carried_over(ckpt: Path, tmp_path: Path) -> None:
    img = photo("butterfly.jpg", (64, 48)).convert("RGBA")
    alpha = Image.linear_gradient("L").resize((64, 48))
    img.putalpha(alpha)
    img.save(tmp_path / "a.png")
    assert cli(["stylize", str(tmp_path / "a.png"), "--model", str(ckpt), "--out", str(tmp_path / "o.png"), "--quiet"]) == 0
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out.getchannel("A")), np.asarray(alpha))
    assert cli(["stylize", str(tmp_path / "a.png"), "--model", str(ckpt), "--out", str(tmp_path / "o.jpg"), "--quiet"]) == 0
    assert Image.open(tmp_path / "o.jpg").mode == "RGB"  # JPEG has no alpha: dropped, not an error


def test_exif_orientation_and_16_bit(ckpt: Path, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": stored 64x48, shown 48x64
    photo("cat.jpg", (64, 48)).save(tmp_path / "rot.jpg", exif=exif)
    deep = (np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16)
    img16 = Image.fromarray(deep)
    assert img16.mode.startswith("I;16")
    img16.save(tmp_path / "deep.png")
    out = tmp_path / "out"
    assert cli(["stylize", str(tmp_path / "rot.jpg"), str(tmp_path / "deep.png"), "--model", str(ckpt), "--out", str(out), "--ext", "png", "--quiet"]) == 0
    assert Image.open(out / "rot.png").size == (48, 64)
    assert Image.open(out / "deep.png").size == (40, 30) and Image.open(out / "deep.png").mode == "RGB"


def test_tiled_matches_untiled_on_768(stylizer: Stylizer) -> None:
    x = torch.from_numpy(np.array(photo("cat.jpg", (768, 768)))).permute(2, 0, 1)[None].float() / 255
    full = stylizer(x)
    tiled = stylizer(x, tile=256, overlap=64)
    diff = (tiled - full).abs()
    # Measured 2026-11-27: mean 3e-6, max 0.0032 (under one 8-bit level). Bound with margin:
    assert diff.mean().item() < 1e-3 and diff.max().item() < 0.01, (diff.mean().item(), diff.max().item())
    # Without the shared statistics every tile is normalised on its own: visibly blocky.
    with torch.no_grad():
        naive = tiling.run_tiled(stylizer.eager, x, 256, 64)
    assert (naive - full).abs().mean().item() > 0.01


def test_out_of_memory_falls_back_to_tiles(stylizer: Stylizer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A CUDA out-of-memory cannot happen on a CPU-only machine: the one mock in this file.
    x = torch.from_numpy(np.array(photo("dog.jpg", (300, 200)))).permute(2, 0, 1)[None].float() / 255
    expected = stylizer(x)

    def full_pass_too_big(t: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(stylizer, "_full", full_pass_too_big)
    monkeypatch.setattr(stylizer, "format", "torchscript")  # so `full` calls the patched pass as is
    got = stylizer(x)
    assert got.shape == expected.shape and (got - expected).abs().max().item() < 0.02


def test_cli_tiling_end_to_end(ckpt: Path, tmp_path: Path) -> None:
    photo("cat.jpg", (200, 152)).save(tmp_path / "c.png")  # multiples of 4: see fst.models.tiling.ALIGN
    args = ["stylize", str(tmp_path / "c.png"), "--model", str(ckpt), "--quiet", "--device", "cpu"]
    assert cli([*args, "--out", str(tmp_path / "full.png")]) == 0
    assert cli([*args, "--out", str(tmp_path / "tiled.png"), "--tile", "128", "--overlap", "48"]) == 0
    assert np.abs(arr(tmp_path / "full.png") - arr(tmp_path / "tiled.png")).max() <= 2  # measured 0.0046 before rounding


def test_strength_zero_returns_the_content(ckpt: Path, tmp_path: Path) -> None:
    photo("alpaca.jpg", (67, 91)).save(tmp_path / "c.png")
    base = ["stylize", str(tmp_path / "c.png"), "--model", str(ckpt), "--quiet"]
    assert cli([*base, "--out", str(tmp_path / "s0.png"), "--strength", "0"]) == 0
    assert cli([*base, "--out", str(tmp_path / "s1.png")]) == 0
    assert cli([*base, "--out", str(tmp_path / "half.png"), "--strength", "0.5"]) == 0
    content, s0, s1, half = (arr(tmp_path / f) for f in ("c.png", "s0.png", "s1.png", "half.png"))
    assert np.array_equal(s0, content)
    assert np.abs(half - (content + s1) / 2).max() <= 1  # rounding only


def test_preserve_color_keeps_content_chroma(stylizer: Stylizer) -> None:
    content = photo("butterfly.jpg", (96, 72))
    kept = stylize_image(stylizer, content, Options(preserve_color=True))
    plain = stylize_image(stylizer, content, Options())

    def chroma_diff(img: Image.Image) -> float:
        a = np.asarray(img.convert("YCbCr")).astype(float)[..., 1:]
        return float(np.abs(a - np.asarray(content.convert("YCbCr")).astype(float)[..., 1:]).mean())

    luma = lambda img: np.asarray(img.convert("L")).astype(float)  # noqa: E731
    assert chroma_diff(kept) < 1.5, chroma_diff(kept)  # 8-bit rounding, gamut clipping
    assert chroma_diff(plain) > 5 * chroma_diff(kept)
    assert np.abs(luma(kept) - luma(plain)).mean() < 1.5  # the stylised luminance


def test_exported_models_as_model(ckpt: Path, tmp_path: Path) -> None:
    photo("cat.jpg", (91, 67)).save(tmp_path / "c.png")
    outs = {}
    for name in ("tiny.pt", "tiny.onnx", "tiny.pt2"):
        model = export_model(ckpt, tmp_path / name)
        outs[name] = tmp_path / f"out-{name}.png"
        assert cli(["stylize", str(tmp_path / "c.png"), "--model", str(model), "--out", str(outs[name]), "--quiet", "--device", "cpu", "--tile", "64", "--overlap", "16"]) == 0
    assert cli(["stylize", str(tmp_path / "c.png"), "--model", str(ckpt), "--out", str(tmp_path / "ref.png"), "--quiet", "--device", "cpu", "--tile", "64", "--overlap", "16"]) == 0
    for out in outs.values():
        assert np.abs(arr(out) - arr(tmp_path / "ref.png")).max() <= 1


def test_max_size_and_single_file_output(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo("cat.jpg", (96, 72)).save(tmp_path / "c.jpg")
    assert cli(["stylize", str(tmp_path / "c.jpg"), "--model", str(ckpt), "--out", str(tmp_path / "s.webp"), "--max-size", "48", "--quiet"]) == 0
    assert Image.open(tmp_path / "s.webp").size == (48, 36)
    assert "-> " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strength", "2"], "--strength"),
        (["--model", "missing.ckpt"], "missing.ckpt: model not found"),
        (["--tile", "64", "--overlap", "40"], "--overlap"),
        (["--device", "gpu"], "invalid choice"),
    ],
)
def test_refusals_are_one_line(extra: list[str], message: str, ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo("cat.jpg", (32, 32)).save(tmp_path / "c.png")
    argv = ["stylize", str(tmp_path / "c.png"), "--model", str(ckpt), "--out", str(tmp_path / "o.png"), *extra]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o.png").exists()


def test_refuses_overwriting_inputs_and_clashing_names(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    photo("cat.jpg", (32, 32)).save(tmp_path / "a" / "c.png")
    photo("cat.jpg", (32, 32)).save(tmp_path / "c.png")
    assert cli(["stylize", str(tmp_path / "a"), "--model", str(ckpt), "--out", str(tmp_path / "a")]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    assert cli(["stylize", str(tmp_path / "a"), str(tmp_path / "c.png"), "--model", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    assert "would be written there" in capsys.readouterr().err


def test_auto_device_is_cpu_fp32_without_cuda(ckpt: Path) -> None:
    s = Stylizer(ckpt)  # conftest pins "no native bf16"; tests/core/test_precision.py covers the other CPU
    expected = ("cuda", "fp16") if torch.cuda.is_available() else ("cpu", "fp32")
    assert (s.device.type, s.dtype) == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_matches_cpu(ckpt: Path, tmp_path: Path) -> None:
    x = torch.from_numpy(np.array(photo("cat.jpg", (768, 512)))).permute(2, 0, 1)[None].float() / 255
    cpu = Stylizer(ckpt, device="cpu")(x)
    for model in (ckpt, export_model(ckpt, tmp_path / "m.pt", dtype="fp16"), export_model(ckpt, tmp_path / "m.pt2")):
        gpu = Stylizer(model)  # auto: CUDA, fp16 for a checkpoint, the artefact's dtype otherwise
        assert gpu.device.type == "cuda"
        assert (gpu(x).cpu() - cpu).abs().max().item() < 2e-2, model
        tiled = gpu(x, tile=256, overlap=64).cpu()
        assert (tiled - cpu).abs().mean().item() < 2e-3, model
    compiled = Stylizer(ckpt, compile=True)  # CUDA fp16 through inductor (Triton kernels)
    assert (compiled(x).cpu() - cpu).abs().max().item() < 2e-2 and compiled._compiled is not None


def test_compile_matches_eager_on_two_sizes(ckpt: Path, tmp_path: Path) -> None:
    """Real inductor compilation on CPU (needs the C++ compiler the machine has), of an exported
    artefact's weights; a second size recompiles rather than failing or reusing the wrong shape."""
    model = export_model(ckpt, tmp_path / "tiny.pt")
    eager, compiled = Stylizer(ckpt, device="cpu"), Stylizer(model, device="cpu", compile=True)
    for h, w in ((37, 50), (64, 45)):
        x = torch.rand(1, 3, h, w)
        out = compiled(x)
        assert compiled._compiled is not None, "compilation failed and fell back to eager"
        assert out.shape == x.shape and torch.allclose(out, eager(x), atol=1e-4)


def test_compile_failure_falls_back_to_eager(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = Stylizer(ckpt, device="cpu", compile=True)

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("InductorError: no working C++ compiler")

    s._compiled = broken  # what a machine without a compiler does on the first call
    x = torch.rand(1, 3, 20, 24)
    assert torch.equal(s(x), Stylizer(ckpt, device="cpu")(x))
    assert "torch.compile failed (RuntimeError: InductorError: no working C++ compiler); running eager" in capsys.readouterr().err
    assert s._compiled is None
