"""Fuzzing real fst files: a checkpoint and its exports, mutated in their metadata values, their
tensor records and their zip members (bytes, declared sizes). Every time one of two things
happens: the file is used correctly (the network runs and gives finite pixels), or it is refused in
one line (`FstError`); never another exception, and never more than a few seconds or a few hundred
MB. The suite's hypothesis profile is derandomized: the same examples every run."""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fst.artefacts.checkpoint import payload, transformer_from_checkpoint
from fst.artefacts.exported import load_exported
from fst.core.errors import FstError

from crafted import bomb_zip, rewrite_zip
from nets import make_net

pytestmark = pytest.mark.usefixtures("one_thread")

SECONDS = 5
GROWTH_MB = 400  # the process's peak resident memory may not grow more than this over all examples
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([-1, 0, 2**63, True, False, None]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.sampled_from(["x" * 100_000, ""]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


class RawJSON(str):
    """JSON text put in place of a value as it is: what json.dumps could not write (10^5000,
    nesting 100,000 deep)."""


# Pickled: shared lists cost a pickle nothing. As JSON text they are written out, so only as raw text.
HOSTILE = st.one_of(SCALARS, st.just(10**5000), st.integers(min_value=1, max_value=45).map(lambda n: nested(n)))
JSON_HOSTILE = st.one_of(SCALARS, st.sampled_from([RawJSON("9" * 5000), RawJSON("1e999"), RawJSON("NaN")]),
                         st.integers(min_value=1, max_value=100_000).map(lambda n: RawJSON("[" * n + "]" * n)))


def nested(levels: int) -> list[Any]:
    value: list[Any] = ["s"]
    for _ in range(levels):
        value = [value, value]
    return value


def outcome(load: Callable[[Path], Callable[[torch.Tensor], torch.Tensor]], path: Path) -> str:
    """'used' or 'refused', within `SECONDS`; anything else fails the test."""
    start = time.perf_counter()
    try:
        run = load(path)
        y = run(torch.rand(1, 3, 12, 12))
        assert y.shape == (1, 3, 12, 12) and bool(torch.isfinite(y).all()), "used, but wrongly"
        result = "used"
    except FstError as e:
        assert "\n" not in str(e) and str(path) in str(e), str(e)
        result = "refused"
    assert time.perf_counter() - start < SECONDS, f"{result} after {time.perf_counter() - start:.1f} s"
    return result


def from_checkpoint(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    net = transformer_from_checkpoint(path)[0]
    return lambda x: net(x).detach()


def from_export(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    return load_exported(path)[0]


def status_mb(field: str) -> float:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(f"{field}:")) / 1024


@pytest.fixture(scope="module")
def peak() -> Any:
    """The process's peak resident memory over the examples, against its size before them: the peak
    is reset first (Linux's clear_refs 5), so an earlier test's peak cannot hide a growth here."""
    Path("/proc/self/clear_refs").write_text("5")
    before = status_mb("VmRSS")
    yield
    grown = status_mb("VmHWM") - before
    assert grown < GROWTH_MB, f"peak resident memory grew {grown:.0f} MB while fuzzing"


def mutate_bytes(data: bytes, how: str, where: float, value: int) -> bytes:
    i = int(where * max(len(data) - 1, 0))
    if how == "truncate":
        return data[:i]
    if how == "flip":
        return data[:i] + bytes([data[i] ^ (value or 1)]) + data[i + 1:] if data else data
    if how == "insert":
        return data[:i] + bytes([value]) * 8 + data[i:]
    return data + bytes(value)  # grow


BYTES = st.tuples(st.sampled_from(["truncate", "flip", "insert", "grow"]), st.floats(0, 1), st.integers(0, 255))


@FUZZ
@given(field=st.sampled_from(["global_step", "styles", "style_name", "style_loss", "version", "format", "net",
                              "precision", "n_styles", "channels", "output_gain", "outer_step"]), value=HOSTILE)
def test_checkpoint_metadata_values(field: str, value: Any, tmp_path: Path, peak: None) -> None:
    ckpt = payload(make_net(), style_name="s", style_loss="gram", global_step=3)
    if field in ("n_styles", "channels", "output_gain"):
        ckpt["fst"]["net"] = {**ckpt["fst"]["net"], field: value}
    elif field == "outer_step":
        ckpt["global_step"] = value
    else:
        ckpt["fst"][field] = value
    torch.save(ckpt, tmp_path / "f.ckpt")
    outcome(from_checkpoint, tmp_path / "f.ckpt")


@FUZZ
@given(key=st.integers(0, 33), storage=st.integers(0, 3000), size=st.lists(st.integers(0, 10**6), min_size=0, max_size=4),
       stride=st.lists(st.integers(0, 10**6), min_size=4, max_size=4), offset=st.integers(0, 3000))
def test_checkpoint_tensor_records(key: int, storage: int, size: list[int], stride: list[int], offset: int,
                                   tmp_path: Path, peak: None) -> None:
    ckpt = payload(make_net(), style_name="s", style_loss="gram")
    name = sorted(ckpt["state_dict"])[key % len(ckpt["state_dict"])]
    base = torch.rand(storage)
    try:  # a record torch.save keeps as given: a view of any size, strides and offset on the storage
        ckpt["state_dict"][name] = base.as_strided(size, stride[: len(size)], offset)
    except RuntimeError:
        ckpt["state_dict"][name] = base
    torch.save(ckpt, tmp_path / "f.ckpt")
    outcome(from_checkpoint, tmp_path / "f.ckpt")


@pytest.fixture(scope="module")
def files(ckpt: Path, artefacts: dict[str, Path]) -> dict[str, Path]:
    return {"checkpoint": ckpt, **{k: artefacts[k] for k in ("torchscript", "export")}}


LOADERS = {"checkpoint": from_checkpoint, "torchscript": from_export, "export": from_export}


@FUZZ
@given(kind=st.sampled_from(list(LOADERS)), pick=st.integers(0, 10**6), change=BYTES)
def test_zip_members(kind: str, pick: int, change: tuple[str, float, int], files: dict[str, Path], tmp_path: Path,
                     peak: None) -> None:
    src = files[kind]
    with zipfile.ZipFile(src) as z:
        name = z.namelist()[pick % len(z.namelist())]
        data = z.read(name)
    bad = rewrite_zip(src, tmp_path / f"f{src.suffix}", {name: mutate_bytes(data, *change)})
    outcome(LOADERS[kind], bad)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(list(LOADERS)), pick=st.integers(0, 10**6), size=st.sampled_from([64 << 20, 256 << 20, 1 << 30]))
def test_declared_member_sizes(kind: str, pick: int, size: int, files: dict[str, Path], tmp_path: Path, peak: None) -> None:
    src = files[kind]
    with zipfile.ZipFile(src) as z:
        name = z.namelist()[pick % len(z.namelist())]
    assert outcome(LOADERS[kind], bomb_zip(src, tmp_path / f"f{src.suffix}", name, size)) == "refused"


@FUZZ
@given(kind=st.sampled_from(["torchscript", "export"]),
       field=st.sampled_from(["global_step", "styles", "style_name", "dtype", "channels_last", "net", "weights_sha256",
                              "fst_export", "input_range", "format"]),
       value=JSON_HOSTILE)
def test_exported_metadata_values(kind: str, field: str, value: Any, files: dict[str, Path], tmp_path: Path,
                                  peak: None) -> None:
    src = files[kind]
    with zipfile.ZipFile(src) as z:
        name = next(n for n in z.namelist() if n.endswith("extra/fst.json"))
        meta = json.loads(z.read(name))
    if isinstance(value, RawJSON):
        text = json.dumps({**meta, field: "RAW"}).replace('"RAW"', value)
    else:
        text = json.dumps({**meta, field: value})
    outcome(from_export, rewrite_zip(src, tmp_path / f"f{src.suffix}", {name: text.encode()}))
