"""Helpers for tests that hand fst crafted or damaged files: run a command that must refuse them
with one line, and rewrite a zip archive's members as an attacker would (CRCs recomputed)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from fst.cli import main as cli


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run an fst command that must fail: exit 2 and exactly one line on stderr, which is returned."""
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fst {argv[0]}: error: "), err
    assert "weights_only" not in err  # never advise turning the safety off
    return err


def stylize_refused(model: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> str:
    out = image.parent / "out.png"
    err = one_line_error(["stylize", str(image), "--model", str(model), "--out", str(out), "--device", "cpu"], capsys)
    assert not out.exists()
    return err


def rewrite_zip(src: Path, dst: Path, change: dict[str, bytes]) -> Path:
    """A copy of zip `src` with some members replaced, CRCs recomputed: crafted, not damaged."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change.get(info.filename, zin.read(info.filename)))
    return dst


def member(path: Path, suffix: str) -> str:
    with zipfile.ZipFile(path) as z:
        return next(n for n in z.namelist() if n.endswith(suffix))


def torch_bytes(obj: Any, path: Path) -> bytes:
    torch.save(obj, path)
    return path.read_bytes()
