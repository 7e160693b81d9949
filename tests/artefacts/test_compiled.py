"""`fst export --format aoti`: a real AOTInductor package (gcc here) runs like the eager network,
without fst; fst stylize loads one only with --trust-compiled, and refuses, before any of its code
runs, a package that cannot run here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fst.artefacts.compiled import META_MEMBER, SIDE
from fst.artefacts.export import export_model
from fst.artefacts.exported import load_compiled, load_exported
from fst.cli import main as cli
from fst.core.errors import FstError
from fst.core.precision import cpu_flags
from fst.stylize.stylizer import Stylizer

from crafted import member, one_line_error, rewrite_zip
from nets import BF16_BOUND, PACKAGE_SIZES, inputs, make_net, save_checkpoint

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not shutil.which("g++") and not shutil.which("c++"), reason="AOTInductor needs a C++ compiler")]



@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", style_name="tiny", global_step=7)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory, ckpt: Path) -> Path:
    return export_model(ckpt, tmp_path_factory.mktemp("aoti") / "tiny.pt2", "aoti")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    Image.fromarray((torch.rand(150, 200, 3) * 255).byte().numpy()).save(tmp_path / "in.png")
    return tmp_path / "in.png"


def eager(x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return make_net()(x)


def run_without_fst(package: Path, tmp_path: Path) -> tuple[list[torch.Tensor], dict[str, str]]:
    """The package run by plain torch in a fresh interpreter that never imports fst."""
    script = textwrap.dedent(f"""
        import json, sys, torch
        runner = torch._inductor.aoti_load_package({str(package)!r})
        torch.manual_seed(0)
        outs = [runner(torch.rand(*shape)) for shape in {PACKAGE_SIZES!r}]
        assert "fst" not in sys.modules
        torch.save(outs, {str(tmp_path / 'outs.pt')!r})
        print(json.dumps(runner.get_metadata()))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(tmp_path / "outs.pt", weights_only=True), json.loads(proc.stdout.strip().splitlines()[-1])


def test_package_runs_without_fst_like_the_eager_network(package: Path, tmp_path: Path) -> None:
    outs, aoti_meta = run_without_fst(package, tmp_path)
    for x, out in zip(inputs(), outs):
        assert out.shape == x.shape and out.dtype == torch.float32
        assert (out - eager(x)).abs().max() <= 1e-3
    meta = json.loads(aoti_meta["fst.json"])
    assert (meta["format"], meta["dtype"], meta["device"], meta["style_name"], meta["global_step"]) == ("aoti", "fp32", "cpu", "tiny", 7)


def test_bf16_package_is_within_its_stated_bound(ckpt: Path, tmp_path: Path) -> None:
    model, meta = load_compiled(export_model(ckpt, tmp_path / "tiny_bf16.pt2", "aoti", "bf16"), trusted=True)
    assert meta["dtype"] == "bf16"
    for x in inputs():
        out = model(x)
        assert out.dtype == torch.float32 and (out - eager(x)).abs().max() <= BF16_BOUND


def test_stylize_runs_a_package_only_when_trusted_and_tiles_with_its_weights(package: Path, ckpt: Path, image: Path,
                                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(image), "--device", "cpu", "--dtype", "fp32", "--compile", "no", "--quiet"]
    err = one_line_error(["stylize", *args, "--model", str(package), "--out", str(tmp_path / "no.png")], capsys)
    assert "compiled machine code that runs when loaded" in err and "--trust-compiled" in err
    assert not (tmp_path / "no.png").exists()
    for name, model, extra in [("pkg", package, ["--trust-compiled"]), ("ckpt", ckpt, []),
                               ("pkg_tiled", package, ["--trust-compiled", "--tile", "64", "--overlap", "16"]),
                               ("ckpt_tiled", ckpt, ["--tile", "64", "--overlap", "16"])]:
        assert cli(["stylize", *args, "--model", str(model), "--out", str(tmp_path / f"{name}.png"), *extra]) == 0
    pixels = {n: torch.from_numpy(np.asarray(Image.open(tmp_path / f"{n}.png"))).int()
              for n in ("pkg", "ckpt", "pkg_tiled", "ckpt_tiled")}
    assert (pixels["pkg"] - pixels["ckpt"]).abs().max() <= 1  # one 8-bit level: float rounding
    assert torch.equal(pixels["pkg_tiled"], pixels["ckpt_tiled"])  # tiles run fst's net on the package's weights
    assert not torch.equal(pixels["pkg"], pixels["pkg_tiled"])  # and they did tile


def test_trust_compiled_names_a_package_and_nothing_else(ckpt: Path, image: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(["stylize", str(image), "--model", str(ckpt), "--out", str(tmp_path / "o.png"),
                          "--device", "cpu", "--trust-compiled"], capsys)
    assert err.endswith("--trust-compiled is for AOTInductor packages (fst export --format aoti); this is a checkpoint file\n")


def payload_library(tmp_path: Path, marker: Path) -> bytes:
    """A shared library whose constructor creates `marker`: what loading a hostile package runs."""
    src = tmp_path / "payload.c"
    src.write_text(f'#include <stdio.h>\n__attribute__((constructor)) static void run(void) {{'
                   f' FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}\n')
    lib = tmp_path / "payload.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, timeout=60)
    return lib.read_bytes()


def crafted(package: Path, out: Path, tmp_path: Path, marker: Path, **aoti_meta: str) -> Path:
    """`package` with its compiled library replaced by a payload and AOTInductor's metadata changed."""
    so = member(package, ".wrapper.so")
    meta_name = member(package, ".wrapper_metadata.json")
    with zipfile.ZipFile(package) as z:
        meta = {**json.loads(z.read(meta_name)), **aoti_meta}
    return rewrite_zip(package, out, {so: payload_library(tmp_path, marker), meta_name: json.dumps(meta).encode()})


@pytest.mark.parametrize("aoti_meta,message", [
    ({"AOTI_DEVICE_KEY": "cuda"}, "compiled for cuda, and this machine has no CUDA device"),
    ({"AOTI_CPU_ISA": "AVX512 AMX_FP16"}, "AMX_FP16, which this CPU lacks"),  # AVX512 too, on a CPU without it
    ({"AOTI_MACHINE": "aarch64"}, "compiled for aarch64 CPUs"),
])
def test_package_that_cannot_run_here_is_refused_before_its_code_runs(package: Path, image: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      aoti_meta: dict[str, str], message: str) -> None:
    if aoti_meta.get("AOTI_DEVICE_KEY") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if "amx_fp16" in cpu_flags():
        pytest.skip("this CPU has AMX_FP16")
    marker = tmp_path / "payload_ran"
    evil = crafted(package, tmp_path / "evil.pt2", tmp_path, marker, **aoti_meta)
    err = one_line_error(["stylize", str(image), "--model", str(evil), "--out", str(tmp_path / "o.png"),
                          "--trust-compiled"], capsys)
    assert message in err and not marker.exists()
    if "AMX_FP16" in message:  # the message names what is missing here, and only that
        assert ("AVX512 AMX_FP16" in err) == ("avx512f" not in cpu_flags()), err


def test_untrusted_package_never_loads_and_a_trusted_one_does(package: Path, image: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the flag nothing of the package runs; with it, it does: the payload proves the flag
    is what stands between a package and its code (and that this test's payload is real)."""
    marker = tmp_path / "payload_ran"
    evil = crafted(package, tmp_path / "evil.pt2", tmp_path, marker)
    own = tmp_path / "tmp"  # a temp folder no other test process unpacks into
    own.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own))
    unpacked = set(own.glob("*aoti*"))
    one_line_error(["stylize", str(image), "--model", str(evil), "--out", str(tmp_path / "o.png"), "--device", "cpu"], capsys)
    assert not marker.exists()
    _, meta = load_exported(evil)  # its weights, as data: still nothing runs
    assert meta["format"] == "aoti" and not marker.exists()
    with pytest.raises(FstError, match="compiled machine code that runs when loaded"):
        load_compiled(evil, "cpu", trusted=False)  # the library call refuses too, not only the CLI
    assert not marker.exists()
    err = one_line_error(["stylize", str(image), "--model", str(evil), "--out", str(tmp_path / "o.png"),
                          "--trust-compiled"], capsys)
    assert "AOTInductor could not load the package" in err and marker.exists()
    assert set(own.glob("*aoti*")) == unpacked  # the failed load left nothing behind


def test_damaged_or_foreign_packages_are_one_line(package: Path, image: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(package.read_bytes())
    so = member(package, ".wrapper.so")
    with zipfile.ZipFile(package) as z:
        offset = z.getinfo(so).header_offset + 2000
    data[offset] ^= 0xFF
    (tmp_path / "flipped.pt2").write_bytes(bytes(data))
    err = one_line_error(["stylize", str(image), "--model", str(tmp_path / "flipped.pt2"), "--out", str(tmp_path / "o.png"),
                          "--trust-compiled"], capsys)
    assert "fails its CRC check" in err
    with zipfile.ZipFile(package) as z:
        meta = json.loads(z.read(member(package, META_MEMBER)))
    other = rewrite_zip(package, tmp_path / "other_torch.pt2",
                        {member(package, META_MEMBER): json.dumps({**meta, "torch_version": "2.3.0"}).encode()})
    err = one_line_error(["stylize", str(image), "--model", str(other), "--out", str(tmp_path / "o.png"),
                          "--trust-compiled"], capsys)
    assert "compiled with torch 2.3.0" in err


def test_export_refuses_what_it_cannot_compile(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(["export", str(ckpt), "--out", str(tmp_path / "m.pt"), "--format", "aoti"], capsys)
    assert "suffix .pt means torchscript, not aoti (use .pt2)" in err
    if not torch.cuda.is_available():
        err = one_line_error(["export", str(ckpt), "--out", str(tmp_path / "m.pt2"), "--format", "aoti", "--device", "cuda"], capsys)
        assert "no CUDA device is available" in err
    with pytest.raises(FstError, match="--device applies to --format aoti only; a torchscript file runs on any device"):
        export_model(ckpt, tmp_path / "m.pt", device="cuda")


def test_package_beyond_its_sides_is_tiled(package: Path) -> None:
    stylizer = Stylizer(package, "cpu", trust_compiled=True)
    assert stylizer.format == "aoti" and SIDE[1] == 4096
    calls: list[tuple[int, ...]] = []
    stylizer.tiled = lambda x, tile, overlap, stats_side=0: calls.append((tile, *x.shape)) or x  # type: ignore[method-assign]
    stylizer(torch.rand(1, 3, 8, SIDE[1] + 1))
    assert calls == [(1024, 1, 3, 8, SIDE[1] + 1)]
