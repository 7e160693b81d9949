"""Shared fixtures. Tests use the real VGG weights from the cache that `make test` fills first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).resolve().parents[1] / "fst" / "assets"


@pytest.fixture(scope="session")
def vgg16_weights():
    from fst.weights import resolve

    return resolve("vgg16")


@pytest.fixture(scope="session")
def photo_path() -> Path:
    return sorted((ASSETS / "photos").glob("*.jpg"))[0]


@pytest.fixture(scope="session")
def style_path() -> Path:
    return ASSETS / "styles" / "starry_night.jpg"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
