"""Freed host memory is kept for reuse (fst/core/host_memory.py) only where a run makes several passes:
one photo reuses nothing, and blocks kept raised a 1080p photo's peak by 0.2-0.4 GB
(docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fst.cli import main as cli
from fst.core import host_memory
from nets import save_checkpoint


@pytest.mark.parametrize("photos, given_back", [(1, True), (2, False)])
def test_memory_is_kept_for_reuse_only_when_passes_follow(photos: int, given_back: bool, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = save_checkpoint(tmp_path / "tiny.ckpt")
    rng = np.random.default_rng(0)
    for i in range(photos):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    calls: list[int] = []
    monkeypatch.setattr(host_memory, "give_back_freed_memory", lambda: calls.append(1) or True)
    out = tmp_path / ("o.png" if photos == 1 else "out")
    if photos > 1:
        out.mkdir()
    inputs = [str(tmp_path / f"p{i}.png") for i in range(photos)]
    assert cli(["stylize", *inputs, "--model", str(ckpt), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert bool(calls) == given_back
