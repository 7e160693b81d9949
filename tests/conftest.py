"""Shared fixtures. Tests use the real VGG weights from the cache that `make test` fills first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# CI must give the same verdict on every run: by default hypothesis draws the same examples each
# time. HYPOTHESIS_PROFILE=explore searches fresh examples (and remembers failures) when hunting.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ASSETS = Path(__file__).resolve().parents[1] / "fst" / "assets"

# One intra-op thread in every test process, this one and every fst it starts: the cores are used by
# pytest-xdist's workers instead, and on a busy machine OpenMP threads waiting for each other at
# every barrier made a test many times slower (scripts/bench_video.py's network stage at 64x48 ran
# 0.56 frames/s on two threads and 8.8 on one, under load; docs/benchmarks.md). A test about
# threads sets them itself.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# `auto` precision depends on the CPU (fst.core.precision); tests pin its answer so that every kind of
# machine runs the same dtypes. tests/core/test_precision.py sets it per test and probes the real CPU.
os.environ["FST_CPU_BF16"] = "0"


@pytest.fixture(scope="session")
def vgg16_weights():
    from fst.models.weights import resolve

    return resolve("vgg16")


@pytest.fixture(scope="session")
def photo_path() -> Path:
    return sorted((ASSETS / "photos").glob("*.jpg"))[0]


@pytest.fixture(scope="session")
def style_path() -> Path:
    return ASSETS / "styles" / "starry_night.jpg"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets gain nothing from intra-op threads, and on a busy 2-core runner OpenMP threads
    spinning against other processes made the export/stylize tests ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
