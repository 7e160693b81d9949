"""Fixtures of the untrusted-file tests: a checkpoint, its exports in every data format, an image."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from nets import export_all, save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "starry.ckpt"
    save_checkpoint(path, "starry_night", 7)
    return path


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory, ckpt: Path) -> dict[str, Path]:
    return export_all(ckpt, tmp_path_factory.mktemp("exported"))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    Image.new("RGB", (40, 30), (90, 140, 200)).save(tmp_path / "in.png")
    return tmp_path / "in.png"
