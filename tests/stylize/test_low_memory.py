"""`fst stylize` on the CPU when memory runs out: under a real address-space limit (RLIMIT_AS, set in
a child process above what it already uses), a tile size that does not fit is halved until one
does, down to a floor, then the image fails in one line with nothing written. What is free on the
machine plays no part: each limit is far below it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fst.stylize.stylizer import Stylizer

from nets import save_checkpoint

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status")]
ROOT = Path(__file__).resolve().parents[2]
SIDE = 1600  # the tiny net's full pass here needs ~0.7 GB (fst.stylize.memory.pass_bytes)

# One case: `fst stylize` under RLIMIT_AS = what the process uses + `room`, in a fresh process (what an
# earlier case left in the heap would count against the next one's limit), stderr as lines.
CHILD = textwrap.dedent("""
    import contextlib, io, json, re, resource, sys
    import torch
    torch.set_num_threads(1)
    from fst.cli import main
    model, warm, warm_out, src, out, room, *flags = sys.argv[1:]
    # Everything a run loads (libraries, decoders, the model) is loaded before the limit, by a run.
    assert main(["stylize", warm, "--model", model, "--out", warm_out, "--device", "cpu", "--quiet"]) == 0
    used = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (used + int(room), resource.RLIM_INFINITY))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["stylize", src, "--model", model, "--out", out, "--device", "cpu", "--quiet", "--compile", "no", *flags])
    print(json.dumps({"code": code, "err": err.getvalue().splitlines()}))
""")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("low_memory")
    save_checkpoint(root / "tiny.ckpt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(root / "big.png")
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / "warm.png")
    return root


def limited(inputs: Path, out: Path, room: int, *flags: str) -> dict:
    out.parent.mkdir()
    child = subprocess.run([sys.executable, "-c", CHILD, str(inputs / "tiny.ckpt"), str(inputs / "warm.png"),
                            str(out.parent.parent / "warm.png"), str(inputs / "big.png"), str(out), str(room), *flags],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_tiles_that_do_not_fit_are_halved_until_they_do(inputs: Path, tmp_path: Path) -> None:
    # Tiles of 1200 need ~0.5 GB with their 1024 px statistics pass: refused; 600 fit (peak ~0.28 GB).
    result = limited(inputs, tmp_path / "out" / "o.png", 300_000_000, "--tile", "1200")
    assert result["code"] == 0, result
    assert result["err"] == ["fst stylize: out of memory in 1200px tiles; trying 600"], result
    styled = np.asarray(Image.open(tmp_path / "out" / "o.png"))
    assert styled.shape == (SIDE, SIDE, 3) and styled.std() > 10  # a picture, not a flat image


def test_when_no_tile_fits_the_image_fails_in_one_line_and_nothing_is_written(inputs: Path, tmp_path: Path) -> None:
    # The photo's own tensors fit (~60 MB) but no tile size does beside them (~90 MB at the floor).
    result = limited(inputs, tmp_path / "out" / "o.png", 100_000_000, "--tile", "64")
    assert result["code"] == 1, result
    assert result["err"][:2] == ["fst stylize: out of memory in 64px tiles; trying 32",
                                 f"fst stylize: skipped {inputs / 'big.png'}: {SIDE}x{SIDE}: out of memory even in "
                                 f"32px tiles on cpu (use --max-size)"], result
    assert list((tmp_path / "out").iterdir()) == []  # no output, no temporary file


def test_memory_that_runs_out_before_the_pass_is_one_line_too(inputs: Path, tmp_path: Path) -> None:
    # Not even the photo as floats (30 MB beside its decoded pixels). Before: "RuntimeError: [enforce
    # fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: ...".
    result = limited(inputs, tmp_path / "out" / "o.png", 35_000_000, "--tile", "64")
    assert result["code"] == 1, result
    line = result["err"][0]  # fst's one line for a photo the memory cannot hold, as the planner says it
    assert line.startswith(f"fst stylize: skipped {inputs / 'big.png'}: {SIDE}x{SIDE} does not fit in the "), result
    assert line.endswith(" of memory free (use --max-size)"), result
    assert list((tmp_path / "out").iterdir()) == []


def test_memory_that_runs_out_finishing_a_full_pass_is_retried_in_tiles(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # The 8-bit conversion after the pass was outside the fallback: a refusal there lost the image.
    # Here the first finish asks for a real allocation no machine grants (2^60 floats).
    stylizer = Stylizer(save_checkpoint(tmp_path / "tiny.ckpt"), "cpu")
    x = torch.rand(1, 3, 64, 96)
    calls = []

    def finish(styled: torch.Tensor) -> torch.Tensor:
        calls.append(styled.shape)
        if len(calls) == 1:
            torch.empty(2 ** 60)
        return styled.mul(255).round().to(torch.uint8)

    got = stylizer(x, finish=finish)
    assert len(calls) == 2 and got.dtype == torch.uint8 and got.shape == (1, 3, 64, 96)
    assert "fst stylize: out of memory at 96x64; tiling at " in capsys.readouterr().err
    assert (got.int() - stylizer(x).mul(255).round().int()).abs().max() <= 2  # tiles match the full pass
