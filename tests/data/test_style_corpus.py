"""scripts/build_style_corpus.py on a fake unpacked package made here (no download, no apt): which
files go in, the licence debian/copyright gives each, what is skipped and why, the split, and the
attribution rows of fst's own paintings."""

from __future__ import annotations

import csv
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def corpus_script():
    saved = list(sys.path)
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield importlib.import_module("build_style_corpus")
    finally:
        sys.path[:] = saved  # scripts/ names (stylize.py, ...) must not shadow anything for later tests


def blobs(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A smooth random picture: a 6x5 colour grid scaled up (noise would make every thumbnail grey)."""
    grid = np.random.default_rng(seed).integers(0, 256, (5, 6, len(mode)), dtype=np.uint8)
    return Image.fromarray(grid.squeeze() if mode == "L" else grid, mode).resize(size, Image.Resampling.BICUBIC)


COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2001-2004 Someone Else
License: GPL-2+

Files: art/painting.png
Copyright: 2020, Jane Doe <jane@example.org>
License: CC0-1.0
"""


def fake_package(root: Path) -> Path:
    art = root / "usr/share/backgrounds"
    art.mkdir(parents=True)
    (root / "usr/share/doc/fakepkg").mkdir(parents=True)
    (root / "usr/share/doc/fakepkg/copyright").write_text(COPYRIGHT)
    blobs(1, (400, 300)).save(art / "painting.png")
    blobs(1, (800, 600)).save(art / "painting_large.png")  # the same picture, larger
    blobs(2, (700, 900)).save(art / "other.jpg", quality=95)
    blobs(3, (64, 64)).save(art / "icon.png")
    Image.new("RGB", (400, 400), (90, 120, 30)).save(art / "flat.png")
    (art / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rgba = Image.new("RGBA", (600, 600), (0, 0, 0, 0))  # a 300x400 picture in a transparent margin
    rgba.paste(blobs(4, (300, 400)).convert("RGBA"), (100, 50))
    rgba.save(art / "cutout.png")
    (root / "usr/share/icons").mkdir(parents=True)
    blobs(5, (512, 512)).save(root / "usr/share/icons/not_picked.png")
    return root


def rows_of(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "ATTRIBUTION.tsv", newline="", encoding="utf-8") as f:
        return {r["file"]: r for r in csv.DictReader(f, delimiter="\t")}


def test_a_package_gives_its_pictures_with_their_licences_and_skips_the_rest(
        corpus_script, tmp_path: Path, capsys) -> None:
    tree = fake_package(tmp_path / "tree")
    corpus = corpus_script.Corpus(heldout_percent=10)
    rule = corpus_script.Rule("fakepkg", ("usr/share/backgrounds/*",))
    corpus_script.add_package(corpus, tree, "fakepkg", "1.0-1", [rule])
    out = tmp_path / "corpus"
    corpus_script.write_corpus(corpus, out)

    rows = rows_of(out)
    by_stem = {Path(f).stem.split("__")[1]: r for f, r in rows.items()}
    assert set(by_stem) == {"backgrounds_painting", "backgrounds_other", "backgrounds_cutout"}
    # named in debian/copyright under its source folder, installed elsewhere: matched by its own name
    assert by_stem["backgrounds_painting"]["license"] == "CC0-1.0"
    assert by_stem["backgrounds_painting"]["author"] == "Jane Doe"
    assert by_stem["backgrounds_other"]["license"] == "GPL-2+"
    assert by_stem["backgrounds_other"]["source"].startswith(
        "Debian package fakepkg 1.0-1, usr/share/backgrounds/other.jpg; licence: debian/copyright, Files: *")
    assert list(next(iter(rows.values()))) == ["file", "title", "author", "license", "source"]

    for file in rows:
        split, name = file.split("/")
        assert split == corpus_script.split_of(name, 10) and (out / file).is_file()
        with Image.open(out / file) as im:
            assert im.format == "JPEG" and min(im.size) <= 512 and min(im.size) >= 256
    with Image.open(out / next(f for f in rows if "cutout" in f)) as im:
        assert im.size == (300, 400)  # the transparent margin cropped away

    assert corpus.tally.skipped == {"near-duplicate": 1, "short side under 256 px": 1, "one flat colour": 1,
                                    "not an image": 1}
    said = capsys.readouterr().out.splitlines()
    assert [line for line in said if "broken.png" in line] == [
        "skip fakepkg:usr/share/backgrounds/broken.png: not an image"]
    assert any("painting_large.png: near-duplicate of fakepkg__backgrounds_painting.jpg" in line for line in said)


def test_a_rebuild_replaces_the_corpus_whole_and_a_foreign_folder_is_refused(corpus_script, tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    old = corpus_script.Corpus(0)
    old.add(corpus_script.jpeg_bytes(blobs(7, (300, 300))), "old", "old.jpg", {"title": "old"})
    corpus_script.write_corpus(old, out)
    assert (out / "train/old.jpg").is_file()
    new = corpus_script.Corpus(0)
    new.add(corpus_script.jpeg_bytes(blobs(8, (300, 300))), "new", "new.jpg", {"title": "new"})
    corpus_script.write_corpus(new, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "ATTRIBUTION.tsv", "train/new.jpg"]
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]  # no staging or old folder left

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(corpus_script.FstError, match="is not a style corpus"):
        corpus_script.check_out(foreign)
    with pytest.raises(corpus_script.FstError, match="fst's own assets"):
        corpus_script.check_out(corpus_script.ASSETS / "styles")


def test_fsts_paintings_are_all_held_out_with_their_own_attribution(corpus_script) -> None:
    corpus = corpus_script.Corpus(heldout_percent=0)
    corpus_script.add_assets(corpus)
    with open(corpus_script.ASSETS / "ATTRIBUTION.tsv", newline="", encoding="utf-8") as f:
        originals = {Path(r["file"]).stem: r for r in csv.DictReader(f, delimiter="\t")
                     if r["file"].startswith("styles/")}
    assert len(corpus.entries) == len(originals) == len(list((corpus_script.ASSETS / "styles").glob("*.jpg")))
    for e in corpus.entries:
        assert e.split == "heldout" and e.row["file"] == f"heldout/{e.name}"
        original = originals[e.name.removeprefix("fst-assets__").removesuffix(".jpg")]
        assert {k: v for k, v in e.row.items() if k != "file"} == {k: v for k, v in original.items() if k != "file"}


def test_the_split_is_a_stable_share_of_names(corpus_script) -> None:
    names = [f"pkg__image_{i}.jpg" for i in range(4000)]
    held = [n for n in names if corpus_script.split_of(n, 10) == "heldout"]
    assert 0.08 < len(held) / len(names) < 0.12
    assert held == [n for n in names if corpus_script.split_of(n, 10) == "heldout"]
    assert {corpus_script.split_of(n, 0) for n in names} == {"train"}
    assert {corpus_script.split_of(n, 100) for n in names} == {"heldout"}
    # a wallpaper's dark and light versions are one picture: never one in train and one held out
    for i in range(200):
        dark, light = f"gnome__grid{i}-d.jpg", f"gnome__grid{i}-l.jpg"
        kde, kde_dark = f"kde__w{i}_contents_images_5120x2880.jpg", f"kde__w{i}_contents_images_dark_5120x2880.jpg"
        assert corpus_script.split_of(dark, 50) == corpus_script.split_of(light, 50)
        assert corpus_script.split_of(kde, 50) == corpus_script.split_of(kde_dark, 50)


def test_the_evaluations_paintings_never_enter_the_corpus(corpus_script) -> None:
    used = {name for name, _, _ in corpus_script.PACKAGES} | {r.package for r in corpus_script.RULES}
    assert "gcompris-qt-data" in corpus_script.EXCLUDED and not used & corpus_script.EXCLUDED
    assert {r.package for r in corpus_script.RULES} <= {name for name, _, _ in corpus_script.PACKAGES}


def test_a_kde_wallpaper_takes_title_author_and_licence_from_its_metadata(corpus_script, tmp_path: Path) -> None:
    style_corpus = sys.modules["style_corpus"]
    images = tmp_path / "usr/share/wallpapers/Dawn/contents/images"
    images.mkdir(parents=True)
    blobs(9, (640, 400)).save(images / "1920x1200.png")
    blobs(9, (400, 640)).save(images / "1200x1920.png")  # portrait crop of the same wallpaper
    (tmp_path / "usr/share/wallpapers/Dawn/metadata.json").write_text(json.dumps(
        {"KPlugin": {"Name": "Dawn", "Authors": [{"Name": "A. Painter"}], "License": "CC-BY-SA-4.0"}}))
    rule = style_corpus.Rule("kde", ("usr/share/wallpapers/*",), meta="plasma", one_per_folder=True)
    picked = style_corpus.candidates(tmp_path, rule)
    assert [p.name for p in picked] == ["1920x1200.png"]
    lic = style_corpus.licence_for(rule, tmp_path, picked[0], "")
    assert (lic.title, lic.author, lic.license) == ("Dawn", "A. Painter", "CC-BY-SA-4.0")
