"""File names that are not UTF-8 (`caf\\xe9.png`, Latin-1 bytes, as an old camera or a zip from
another system leaves them): to Python they are strings holding lone surrogates (os.fsdecode), which
`str.encode` and JSON in UTF-8 refuse. fst handles them as the bytes they are: each photo is
stylised and sharded, every output named by its bytes, every name fst prints or records escaped."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from fst.cli import main as cli

from nets import save_checkpoint
from runs import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

PHOTOS = ROOT / "fst" / "assets" / "photos"
CAFE = os.fsdecode(b"caf\xe9")  # 'caf\udce9'


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def photos(folder: Path) -> Path:
    """`folder` with a photo named in UTF-8 and one named in Latin-1 bytes, made by their bytes."""
    folder.mkdir(parents=True)
    shutil.copy(PHOTOS / "cat.jpg", folder / "cat.jpg")
    shutil.copy(PHOTOS / "cat.jpg", os.fsencode(folder) + b"/caf\xe9.jpg")
    return folder


def names(folder: Path) -> list[bytes]:
    return sorted(os.listdir(os.fsencode(folder)))


def test_stylize_writes_a_photo_whose_name_is_not_utf8(ckpt: Path, tmp_path: Path, capsys) -> None:
    """Seen: `skipped …/caf\\udce9.jpg: cannot write …: UnicodeEncodeError` for a readable photo
    (the temp name beside the output was made with str.encode)."""
    src = photos(tmp_path / "in")
    out = tmp_path / f"out_{CAFE}"  # an output folder so named too: the summary line prints it
    assert cli(["stylize", str(src), "--model", str(ckpt), "--out", str(out), "--device", "cpu"]) == 0
    assert names(out) == [b"caf\xe9.jpg", b"cat.jpg"]
    assert f"stylized 2 images -> {tmp_path}/out_caf\\udce9" in capsys.readouterr().out
    single = tmp_path / f"{CAFE}_single.png"
    assert cli(["stylize", str(src / f"{CAFE}.jpg"), "--model", str(ckpt), "--out", str(single), "--device", "cpu"]) == 0
    assert b"caf\xe9_single.png" in names(tmp_path)


def test_export_to_a_name_that_is_not_utf8(ckpt: Path, tmp_path: Path) -> None:
    assert cli(["export", str(ckpt), "--out", str(tmp_path / f"{CAFE}.pt")]) == 0
    assert names(tmp_path) == [b"caf\xe9.pt"]


def test_shards_keep_a_photo_whose_name_is_not_utf8_and_record_its_name(tmp_path: Path, capsys) -> None:
    """Seen: a UnicodeEncodeError traceback (the manifest's fingerprint hashed the names as JSON in
    UTF-8) and no shard at all."""
    src = photos(tmp_path / f"in_{CAFE}")
    out = tmp_path / "shards"
    argv = ["shards", str(src), "--out", str(out), "--quiet", "--workers", "1"]
    assert cli(argv) == 0
    assert "2 samples in 1 shards" in capsys.readouterr().out
    with tarfile.open(out / "shard-000000.tar") as tar:
        sources = [json.loads(tar.extractfile(m).read())["source"] for m in tar.getmembers() if m.name.endswith(".json")]
    assert sorted(os.fsencode(s) for s in sources) == [b"caf\xe9.jpg", b"cat.jpg"]  # the bytes, read back
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert os.fsencode(manifest["input"]).endswith(b"in_caf\xe9") and manifest["samples"] == 2
    shard = (out / "shard-000000.tar").read_bytes()
    assert cli(argv) == 0  # a rerun reads the manifest back: same input, nothing rebuilt
    assert (out / "shard-000000.tar").read_bytes() == shard and "rebuilding" not in capsys.readouterr().err
