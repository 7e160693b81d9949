"""`fst shards` and `fst.io.images` on real files: odd image modes, broken files, resume, COCO."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fst import cli
from fst.data.manifest import MANIFEST, Settings
from fst.data.shards import SAMPLE_SHARD_SIZE, build_shards, sample_shards
from fst.io.files import sha256_file
from fst.io.images import ImageError, alpha_channel, open_image, open_rgb

GOOD = ["a.jpg", "b.jpg", "c.png", "cmyk.jpg", "gray.jpg", "gray16.png", "palette.png", "rgba.png", "rotated.jpg", "sub/d.webp", "sub/e.bmp"]
BAD = {
    "empty.jpg": "empty file",
    "text.jpg": "not an image",
    "truncated.jpg": "truncated",
    "huge.png": "too large",
    "big.png": "too large",
}


def _noise(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _png_header_only(w: int, h: int) -> bytes:
    """A well-formed PNG that claims w x h pixels but carries no data: a decompression bomb stand-in."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def make_messy_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    _noise(64, 48, 1).save(root / "a.jpg", quality=90)
    _noise(48, 80, 2).save(root / "b.jpg", quality=90)
    _noise(40, 40, 3).save(root / "c.png")
    _noise(40, 30, 4).save(root / "sub/d.webp")
    _noise(30, 40, 5).save(root / "sub/e.bmp")
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(root / "cmyk.jpg")  # pure red
    Image.new("L", (32, 24), 77).save(root / "gray.jpg")
    Image.fromarray(np.full((24, 32), 32896, dtype=np.uint16)).save(root / "gray16.png")  # 16-bit mid-grey
    Image.new("RGBA", (32, 32), (0, 0, 255, 100)).save(root / "rgba.png")
    Image.new("P", (32, 32), 3).save(root / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored 40x20, shown 20x40
    _noise(40, 20, 6).save(root / "rotated.jpg", exif=exif)
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not a photo\n")
    buf = io.BytesIO()
    _noise(96, 96, 7).save(buf, "JPEG", quality=95)
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    (root / "huge.png").write_bytes(_png_header_only(30000, 30000))  # PIL's own bomb limit
    (root / "big.png").write_bytes(_png_header_only(11000, 10000))  # under PIL's limit, over ours
    (root / "notes.txt").write_text("not an image suffix: ignored, not skipped\n")
    return root


def read_shards(out: Path) -> dict[str, dict]:
    """key -> {"jpg": PIL image, "json": dict, "txt": str | None, "shard": name} from every tar."""
    samples: dict[str, dict] = {}
    for tar_path in sorted(out.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                data = tar.extractfile(member).read()
                entry = samples.setdefault(key, {"txt": None, "shard": tar_path.name})
                if ext == "jpg":
                    entry["jpg"] = Image.open(io.BytesIO(data))
                    entry["jpg"].load()
                elif ext == "json":
                    entry["json"] = json.loads(data)
                elif ext == "txt":
                    entry["txt"] = data.decode()
    return samples


def snapshot(out: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in sorted(out.glob("*.tar"))}


SETTINGS = Settings(prefix="t", shard_size=4, max_size=512, quality=90)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    return make_messy_folder(tmp_path / "in")


def test_good_images_become_rgb_samples_and_bad_ones_are_listed(messy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = build_shards(messy, out, SETTINGS, progress=False)

    samples = read_shards(out)
    by_source = {s["json"]["source"]: s for s in samples.values()}
    assert sorted(by_source) == sorted(GOOD)
    assert [s["count"] for s in manifest["shards"]] == [4, 4, 3]
    assert sorted(p.name for p in out.glob("*.tar")) == ["t-000000.tar", "t-000001.tar", "t-000002.tar"]
    for key, s in samples.items():
        assert s["jpg"].format == "JPEG" and s["jpg"].mode == "RGB"
        assert (s["json"]["width"], s["json"]["height"]) == s["jpg"].size
        assert s["json"]["key"] == key
    assert {(s["path"], s["reason"].split(" (")[0]) for s in manifest["skipped"]} == set(BAD.items())
    assert manifest["samples"] == len(GOOD) and manifest["complete"]
    assert all(sha256_file(out / s["name"]) == s["sha256"] for s in manifest["shards"])
    assert json.loads((out / MANIFEST).read_text()) == manifest

    assert by_source["rotated.jpg"]["jpg"].size == (20, 40)  # EXIF orientation applied
    assert by_source["gray16.png"]["jpg"].getpixel((5, 5)) == pytest.approx((128, 128, 128), abs=2)  # scaled, not clipped
    r, g, b = by_source["cmyk.jpg"]["jpg"].getpixel((5, 5))
    assert r > 240 and g < 15 and b < 15
    assert by_source["rgba.png"]["jpg"].getpixel((5, 5)) == pytest.approx((0, 0, 255), abs=3)
    assert by_source["gray.jpg"]["jpg"].getpixel((5, 5)) == pytest.approx((77, 77, 77), abs=2)


def test_max_size_shrinks_short_side_and_keeps_small_jpegs_untouched(messy: Path, tmp_path: Path) -> None:
    build_shards(messy, tmp_path / "out", Settings("t", 100, max_size=36, quality=90), progress=False)
    by_source = {s["json"]["source"]: s for s in read_shards(tmp_path / "out").values()}
    a = by_source["a.jpg"]  # 64x48 -> 48x36
    assert a["jpg"].size == (48, 36) and (a["json"]["original_width"], a["json"]["original_height"]) == (64, 48)
    assert by_source["sub/e.bmp"]["jpg"].size == (30, 40)  # already small: size kept

    out2 = tmp_path / "out2"
    build_shards(messy, out2, Settings("t", 100, max_size=512, quality=90), progress=False)
    with tarfile.open(out2 / "t-000000.tar") as tar:
        first = tar.extractfile(tar.getmembers()[0]).read()
    assert first == (messy / "a.jpg").read_bytes()  # RGB upright JPEG, small enough: no re-encode


def test_same_input_gives_byte_identical_shards_with_any_worker_count(messy: Path, tmp_path: Path) -> None:
    build_shards(messy, tmp_path / "one", SETTINGS, workers=1, progress=False)
    build_shards(messy, tmp_path / "two", SETTINGS, workers=2, progress=False)
    one, two = snapshot(tmp_path / "one"), snapshot(tmp_path / "two")
    assert [sha for _, sha in one.values()] == [sha for _, sha in two.values()]
    assert (tmp_path / "one" / MANIFEST).read_bytes() == (tmp_path / "two" / MANIFEST).read_bytes()


def test_rerun_keeps_complete_shards_and_rebuilds_damaged_ones(messy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_shards(messy, out, SETTINGS, progress=False)
    before = snapshot(out)

    build_shards(messy, out, SETTINGS, progress=False)
    assert snapshot(out) == before  # untouched: same mtime, same bytes

    (out / "t-000001.tar").unlink()
    with open(out / "t-000002.tar", "r+b") as f:
        f.seek(600)
        f.write(b"garbage")
    build_shards(messy, out, SETTINGS, progress=False)
    after = snapshot(out)
    assert after["t-000000.tar"] == before["t-000000.tar"]
    assert after["t-000001.tar"][1] == before["t-000001.tar"][1]
    assert after["t-000002.tar"][1] == before["t-000002.tar"][1]
    assert after["t-000002.tar"][0] != before["t-000002.tar"][0]  # rewritten


def test_interrupted_build_resumes_where_it_stopped(messy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    full = build_shards(messy, out, SETTINGS, progress=False)
    expected = snapshot(out)
    # What a run killed after its first shard leaves behind: one shard, a manifest saying so.
    partial = dict(full, shards=full["shards"][:1], next=full["shards"][0]["end"], complete=False)
    (out / MANIFEST).write_text(json.dumps(partial))
    for name in ("t-000001.tar", "t-000002.tar"):
        (out / name).unlink()
    # Half-written temp files of a killed writer: today's names, and those of older fst versions.
    leftovers = [".t-000001.1a2b3c4d.tmp.tar", ".manifest.0f0f0f0f.tmp.json", ".t-000001.tar.tmp-99999"]
    for name in leftovers:
        (out / name).write_bytes(b"half a shard")
    (out / ".notes.1a2b3c4d.tmp.json").write_bytes(b"not ours")

    resumed = build_shards(messy, out, SETTINGS, progress=False)
    assert {k: sha for k, (_, sha) in snapshot(out).items()} == {k: sha for k, (_, sha) in expected.items()}
    assert snapshot(out)["t-000000.tar"] == expected["t-000000.tar"]
    assert resumed == full
    assert not any((out / name).exists() for name in leftovers)
    assert (out / ".notes.1a2b3c4d.tmp.json").exists()  # another program's file is left alone


def test_changed_settings_rebuild_and_drop_stale_shards(messy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_shards(messy, out, SETTINGS, progress=False)
    manifest = build_shards(messy, out, Settings("t", 100, 512, 90), progress=False)
    assert sorted(p.name for p in out.glob("*.tar")) == ["t-000000.tar"]
    assert manifest["shards"][0]["count"] == len(GOOD)


def test_coco_layout_puts_ids_and_captions_in_json(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    for split, ids in (("train2017", [9, 25, 30]), ("val2017", [139])):
        (root / split).mkdir(parents=True)
        for i in ids:
            _noise(48, 40, i).save(root / split / f"{i:012d}.jpg")
    (root / "annotations").mkdir()
    captions = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in (9, 25, 30)],
        "annotations": [
            {"id": 2, "image_id": 9, "caption": "A bowl of broccoli. "},
            {"id": 1, "image_id": 9, "caption": "Food on a table."},
            {"id": 3, "image_id": 25, "caption": "A giraffe eating leaves."},
        ],
    }
    (root / "annotations" / "captions_train2017.json").write_text(json.dumps(captions))
    out = tmp_path / "shards"

    assert cli.main(["shards", str(root), "--out", str(out), "--shard-size", "2", "--workers", "1", "--quiet"]) == 0

    assert sorted(p.name for p in out.glob("*.tar")) == ["coco-000000.tar", "coco-000001.tar"]
    by_id = {s["json"]["id"]: s for s in read_shards(out).values()}
    assert sorted(by_id) == [9, 25, 30]  # the newest train split only, not val2017
    assert by_id[9]["json"]["captions"] == ["Food on a table.", "A bowl of broccoli."]
    assert by_id[9]["json"]["caption"] == by_id[9]["txt"] == "Food on a table."
    assert by_id[25]["json"]["source"] == "train2017/000000000025.jpg"
    assert "captions" not in by_id[30]["json"] and by_id[30]["txt"] is None
    assert json.loads((out / MANIFEST).read_text())["layout"] == "coco"


def test_cli_missing_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-photos"
    assert cli.main(["shards", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and err.startswith("fst shards: error:")
    assert not (tmp_path / "out").exists()


def test_sample_shards_build_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FST_CACHE", str(tmp_path / "cache"))
    out = sample_shards()
    assert out == tmp_path / "cache" / "sample_shards"
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["samples"] == 100 and not manifest["skipped"]
    assert [s["count"] for s in manifest["shards"]] == [SAMPLE_SHARD_SIZE] * 4
    before = snapshot(out)
    assert sample_shards() == out and snapshot(out) == before


def test_open_image_reasons_and_alpha(messy: Path) -> None:
    with pytest.raises(ImageError, match="empty file") as e:
        open_rgb(messy / "empty.jpg")
    assert e.value.reason == "empty file" and str(messy / "empty.jpg") in str(e.value)
    with pytest.raises(ImageError, match="no such file"):
        open_rgb(messy / "missing.jpg")
    rgba = open_image(messy / "rgba.png")
    assert alpha_channel(rgba).getpixel((0, 0)) == 100
    assert alpha_channel(open_image(messy / "a.jpg")) is None
    assert open_rgb((messy / "palette.png").read_bytes()).mode == "RGB"
