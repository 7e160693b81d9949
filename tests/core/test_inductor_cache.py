"""Inductor's cache apart per vector ISA (fst/core/inductor_cache.py): a network compiled by
`fst stylize --compile` on this CPU, then again in a process told to generate unvectorised code
(ATEN_CPU_CAPABILITY=default, which every x86 CPU can take), from the same default cache folder.
Real compilation (the machine's C++ compiler), in fresh processes whose temp folder is the test's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fst.core import inductor_cache
from nets import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", inductor_cache.VARIABLE)
RUN = """
import sys, torch
from fst.stylize.stylizer import Stylizer
x = torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(0))
compiled = Stylizer(sys.argv[1], device="cpu", dtype="fp32", compile=True)
y = compiled(x)
assert compiled._compiled is not None, "fell back to eager"
print((y - Stylizer(sys.argv[1], device="cpu", dtype="fp32")(x)).abs().max().item())
"""


def compiled_diff(ckpt: Path, tmp: Path, **env: str) -> float:
    child = {k: v for k, v in os.environ.items() if k not in CAPS} | {"TMPDIR": str(tmp)} | env
    run = subprocess.run([sys.executable, "-c", RUN, str(ckpt)], cwd=ROOT, env=child, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return float(run.stdout.strip().splitlines()[-1])


def test_a_graph_compiled_for_this_cpu_is_not_reused_without_vectorisation(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "tiny.ckpt")
    temp = tmp_path / "tmp"
    temp.mkdir()
    assert compiled_diff(ckpt, temp) < 1e-4
    assert compiled_diff(ckpt, temp, ATEN_CPU_CAPABILITY="default") < 1e-4
    folders = sorted(p.name for p in temp.glob("torchinductor_*/cpu-*"))
    assert len(folders) == 2 and "cpu-invalid-vec-isa" in folders, folders


def test_a_folder_the_user_chose_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(inductor_cache.VARIABLE, str(tmp_path / "mine"))
    inductor_cache.keyed_by_cpu_isa()
    assert os.environ[inductor_cache.VARIABLE] == str(tmp_path / "mine")
