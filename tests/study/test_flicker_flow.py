"""`fst flicker --flow farneback`: the same measure under a second, independent optical flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fst.cli import main as cli
from fst.io.clips import read_frames

from test_flicker import cut_clip, write_clip  # noqa: F401 (cut_clip is a fixture)


def test_fst_flicker_under_farneback_finds_the_cut_and_the_noise(cut_clip: Path, tmp_path: Path,  # noqa: F811
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    frames = torch.from_numpy(read_frames(cut_clip, 12)).permute(0, 3, 1, 2).float() / 255
    noise = 0.1 * torch.randn(frames.shape, generator=torch.Generator().manual_seed(0))
    noisy = write_clip(tmp_path / "noisy.mp4", (frames + noise).clamp(0, 1))
    assert cli(["flicker", str(cut_clip), str(cut_clip), str(noisy), "--size", "64", "--flow", "farneback",
                "--json", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    assert "under farneback flow (10 of 11 frame pairs; the rest are cuts)" in out
    result = json.loads((tmp_path / "f.json").read_text())
    assert result["flow"] == "farneback"
    assert result["flicker"][str(cut_clip)] == pytest.approx(1.0) and result["flicker"][str(noisy)] > 3


def test_an_unknown_flow_is_one_line(cut_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert cli(["flicker", str(cut_clip), str(cut_clip), "--flow", "raft"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--flow" in err and "raft" in err
