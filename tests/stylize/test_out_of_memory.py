"""A photo whose pixels the allocator refuses, tried for real: fst in a process whose address space is
limited to what it holds after importing everything plus a few hundred MB. Whatever refuses (PIL
decoding, torch converting to a tensor, the pass), the file is skipped with fst's line, not the
allocator's words, and the next file in the folder is stylised (or sharded) in the same limit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nets import save_checkpoint
from runs import ROOT, fst_env

UNDER_A_LIMIT = r"""
import re, resource, sys
import torch
torch.set_num_threads(1)
import fst.cli, fst.data.shards, fst.stylize.command
with open("/proc/self/status") as f:
    size = int(re.search(r"VmSize:\s+(\d+) kB", f.read()).group(1)) << 10
resource.setrlimit(resource.RLIMIT_AS, (size + (int(sys.argv[1]) << 20), resource.RLIM_INFINITY))
sys.exit(fst.cli.main(sys.argv[2:]))
"""


def limited(room_mb: int, *argv: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", UNDER_A_LIMIT, str(room_mb), *map(str, argv)], cwd=ROOT,
                          env=fst_env(), capture_output=True, text=True, timeout=300)


def folder(tmp_path: Path, size: tuple[int, int]) -> Path:
    """A large photo and, after it in sorted order, a small one."""
    photos = tmp_path / "in"
    photos.mkdir()
    Image.linear_gradient("L").resize(size).convert("RGB").save(photos / "a_large.jpg", quality=80)
    shutil.copy(ROOT / "fst" / "assets" / "photos" / "cat.jpg", photos / "b_cat.jpg")
    return photos


def test_a_photo_the_allocator_refuses_is_skipped_with_fsts_line(tmp_path: Path) -> None:
    """Seen (a 96 MP photo under a 6 GB address-space limit): `skipped …: RuntimeError: [enforce fail
    at alloc_cpu.cpp:127] … DefaultCPUAllocator: can't allocate memory: you tried to allocate
    1152000000 bytes`. Here 24 MP with 512 MB of room: decoded, then refused as a float tensor."""
    photos = folder(tmp_path, (6000, 4000))
    ckpt = save_checkpoint(tmp_path / "tiny.ckpt")
    run = limited(512, "stylize", photos, "--model", ckpt, "--out", tmp_path / "out", "--device", "cpu",
                  "--compile", "no", "--quiet")
    skipped = [line for line in run.stderr.splitlines() if line.startswith("fst stylize: skipped ")]
    assert run.returncode == 1 and len(skipped) == 1, run.stderr[-3000:]
    assert skipped[0].startswith(f"fst stylize: skipped {photos / 'a_large.jpg'}: 6000x4000 does not fit in the ")
    assert skipped[0].endswith("(use --max-size)") and "Error" not in skipped[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b_cat.jpg"]


def test_a_photo_too_large_to_decode_is_one_shard_sources_reason(tmp_path: Path) -> None:
    """PIL's MemoryError while decoding was `cannot decode (MemoryError)`, as if the file were bad."""
    photos = folder(tmp_path, (10000, 9500))  # 95 MP: 380 MB decoded, in 256 MB of room
    run = limited(256, "shards", photos, "--out", tmp_path / "out", "--quiet", "--workers", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["samples"] == 1
    assert manifest["skipped"] == [{"index": 0, "path": "a_large.jpg",
                                    "reason": "10000x9500 does not fit in the memory free to decode it"}]


@pytest.fixture(autouse=True)
def _linux_only() -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the process size from /proc")
