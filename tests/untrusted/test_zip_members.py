"""A zip's member count is bounded from its end record, before zipfile reads a record per member.

Before: a checkpoint of 1,000,000 members was accepted after 28 s and +400 MB (zipfile builds a
ZipInfo for each when it opens the archive; the members nothing reads were never looked at)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest

from fst.artefacts.checkpoint import transformer_from_checkpoint
from fst.artefacts.exported import load_exported
from fst.untrusted.torch_files import MAX_MEMBERS

from crafted import one_line_error, stylize_refused

pytestmark = pytest.mark.usefixtures("one_thread")


def declare_members(src: Path, dst: Path, count: int) -> Path:
    """A copy of zip `src` whose end records (the classic one and the ZIP64 one torch writes) declare
    `count` members; the directory itself is untouched."""
    data = bytearray(src.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<2H", data, end + 8, min(count, 0xFFFF), min(count, 0xFFFF))
    end64 = data.rfind(b"PK\x06\x06")
    assert end64 >= 0 or count < 0xFFFF, "a count over 16 bits needs the ZIP64 record torch writes"
    if end64 >= 0:
        struct.pack_into("<2Q", data, end64 + 24, count, count)
    dst.write_bytes(bytes(data))
    return dst


def with_extra_members(src: Path, dst: Path, extra: int) -> Path:
    """A copy of zip `src` plus `extra` one-byte members nothing reads, its records true."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        root = zin.namelist()[0].split("/")[0]
        for i in range(extra):
            zout.writestr(f"{root}/x/{i}", b"x")
    return dst


def load(kind: str, path: Path) -> None:
    (transformer_from_checkpoint if kind == "checkpoint" else load_exported)(path)


@pytest.mark.parametrize("kind", ["checkpoint", "torchscript", "export"])
def test_a_million_declared_members_are_refused_from_the_end_record(kind: str, ckpt: Path, artefacts: dict[str, Path],
                                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = ckpt if kind == "checkpoint" else artefacts[kind]
    crafted = declare_members(src, tmp_path / f"many{src.suffix}", 1_000_000)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("zipfile read the central directory of a refused archive")

    monkeypatch.setattr(zipfile.ZipFile, "__init__", never)  # the refusal comes before any record is read
    with pytest.raises(Exception) as e:
        load(kind, crafted)
    assert f"many{src.suffix}: refused: its zip directory declares 1000000 members" in str(e.value), e.value
    assert f"holds at most {MAX_MEMBERS}" in str(e.value)


def test_a_checkpoint_of_too_many_members_is_one_line_for_stylize_and_export(ckpt: Path, tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Every record true, 20,000 members more than torch wrote (none of them read before either)."""
    crafted = with_extra_members(ckpt, tmp_path / "many.ckpt", 2 * MAX_MEMBERS)
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (90, 140, 200)).save(image)
    err = stylize_refused(crafted, image, capsys)
    assert f"many.ckpt: refused: its zip directory declares {2 * MAX_MEMBERS + 36} members" in err, err
    out = tmp_path / "m.pt"
    err = one_line_error(["export", str(crafted), "--out", str(out)], capsys)
    assert "refused: its zip directory declares" in err and not out.exists()


def test_an_end_record_that_understates_the_directory_is_refused(ckpt: Path, tmp_path: Path) -> None:
    """20,000 members whose end record says 36: zipfile would still read all of them."""
    many = with_extra_members(ckpt, tmp_path / "many.ckpt", 2 * MAX_MEMBERS)
    crafted = declare_members(many, tmp_path / "lying.ckpt", 36)
    with pytest.raises(Exception, match=r"lying.ckpt: refused: its zip directory is \d+ bytes for the 36 members"):
        transformer_from_checkpoint(crafted)
    few = declare_members(with_extra_members(ckpt, tmp_path / "few.ckpt", 3), tmp_path / "few_lying.ckpt", 36)
    with pytest.raises(Exception, match="few_lying.ckpt: refused: its zip directory holds 39 members, its end record says 36"):
        transformer_from_checkpoint(few)


def test_what_fst_writes_is_far_under_the_bound(ckpt: Path, artefacts: dict[str, Path]) -> None:
    for path in [ckpt, *artefacts.values()]:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                assert len(z.infolist()) < MAX_MEMBERS / 50
    load("checkpoint", ckpt)
    for kind in ("torchscript", "export"):
        load(kind, artefacts[kind])
