"""A shard folder's manifest is data someone may have edited: `fst shards` reruns write and delete
only inside --out, only what fst can show it wrote, and refuse a manifest it did not write in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from fst.cli import main as cli
from fst.core.errors import FstError
from fst.data.manifest import MANIFEST, Settings

from crafted import one_line_error

PHOTOS = Path(__file__).resolve().parents[2] / "fst" / "assets" / "photos"


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """Three photos packed two per shard into tmp/out (shard-000000.tar, shard-000001.tar)."""
    (tmp_path / "in").mkdir()
    for name in ("alpaca", "bison", "camels"):
        shutil.copy(PHOTOS / f"{name}.jpg", tmp_path / "in")
    assert cli(["shards", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--shard-size", "2", "--quiet"]) == 0
    return tmp_path


def rerun(root: Path, *extra: str) -> list[str]:
    return ["shards", str(root / "in"), "--out", str(root / "out"), "--shard-size", "2", "--quiet", *extra]


def edit_manifest(root: Path, change: Callable[[dict], Any]) -> None:
    path = root / "out" / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_manifest_names_outside_the_folder_are_refused_and_nothing_is_touched(built: Path, capsys) -> None:
    """Seen: exit 0, both victims overwritten with tar data, the real shards deleted."""
    victim, outside = built / "victim.txt", built / "elsewhere" / "abs_victim.txt"
    outside.parent.mkdir()
    victim.write_text("keep")
    outside.write_text("keep")

    def point_outside(m: dict) -> None:
        m["shards"][0]["name"] = "../victim.txt"
        m["shards"][1]["name"] = str(outside)

    edit_manifest(built, point_outside)
    before = listing(built / "out")
    err = one_line_error(rerun(built), capsys)
    assert "not a manifest fst wrote" in err and "'../victim.txt'" in err and str(built / "out" / MANIFEST) in err
    assert victim.read_text() == "keep" and outside.read_text() == "keep"
    assert listing(built / "out") == before  # the real shards are still there, untouched


def bad_count(m: dict) -> None:
    m["shards"][0]["count"] = -1


def bad_digest(m: dict) -> None:
    m["shards"][1]["sha256"] = "../../x"


def gap(m: dict) -> None:
    m["shards"][1]["start"] = 3


def bad_prefix(m: dict) -> None:
    m["settings"]["prefix"] = "../x"


def bool_count(m: dict) -> None:
    m["files"] = True


def bad_skip(m: dict) -> None:
    m["skipped"] = [{"index": 10**30, "path": "x", "reason": "y"}]


def not_a_dict(m: dict) -> None:
    m["shards"] = {"name": "shard-000000.tar"}


@pytest.mark.parametrize("change", [bad_count, bad_digest, gap, bad_prefix, bool_count, bad_skip, not_a_dict])
def test_manifest_fields_fst_never_writes_are_refused_in_one_line(built: Path, change, capsys) -> None:
    edit_manifest(built, change)
    before = listing(built / "out")
    assert "not a manifest fst wrote" in one_line_error(rerun(built), capsys)
    assert listing(built / "out") == before


def test_an_oversized_manifest_is_refused_unread(built: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fst.data.manifest.MAX_MANIFEST_BYTES", 100)  # the real bound is 256 MiB
    assert "over 100 bytes" in one_line_error(rerun(built), capsys)


@pytest.mark.parametrize("prefix", ["../escaped", "a/b", "/abs", ".hidden", "", "a" * 101])
def test_a_prefix_is_a_file_name_stem(prefix: str, tmp_path: Path, capsys) -> None:
    """Seen: `--prefix ../escaped` wrote escaped-000000.tar beside --out; `a/b` a traceback."""
    shutil.copytree(PHOTOS, tmp_path / "in", ignore=lambda _, names: names[3:])
    err = one_line_error(["shards", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--prefix", prefix], capsys)
    assert "is not a file-name stem" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    with pytest.raises(FstError, match="shard_size"):
        Settings("ok", 0, 512, 95)


def test_a_rebuild_deletes_only_the_shards_its_manifest_recorded(built: Path) -> None:
    """Settings change: the old shards go (their manifest recorded them, with this content); a file of
    the user's that only looks like a shard, and a recorded name whose content changed, stay."""
    out = built / "out"
    (out / "shard-000007.tar").write_bytes(b"the user's own file")
    (out / "shard-000001.tar").write_bytes(b"replaced by the user after the build")
    (out / ".other-000003.0123abcd.tmp.tar").write_bytes(b"a killed build's temp file")
    assert cli(rerun(built, "--prefix", "other")) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [".lock", MANIFEST, "other-000000.tar", "other-000001.tar", "shard-000001.tar", "shard-000007.tar"]


@pytest.mark.parametrize(("captions", "problem"), [
    ('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}", "RecursionError"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "caption": 7}]}', "AttributeError"),
    ('{"images": [{"id": "' + "9" * 5000 + '", "file_name": "a.jpg"}]}', "ValueError"),
])
def test_a_coco_captions_file_fst_cannot_use_is_one_line(captions: str, problem: str, tmp_path: Path, capsys) -> None:
    """Captions files come from anywhere too (seen: RecursionError and AttributeError tracebacks)."""
    (tmp_path / "coco" / "train2017").mkdir(parents=True)
    shutil.copy(PHOTOS / "alpaca.jpg", tmp_path / "coco" / "train2017" / "000000000001.jpg")
    (tmp_path / "coco" / "annotations").mkdir()
    (tmp_path / "coco" / "annotations" / "captions_train2017.json").write_text(captions)
    err = one_line_error(["shards", str(tmp_path / "coco"), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert f"not a COCO captions file ({problem}" in err and len(err) < 400
