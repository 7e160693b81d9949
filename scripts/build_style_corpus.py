"""Build a corpus of paintings, artwork and textures for universal style networks (docs/universal.md):
images that free Debian packages ship (desktop wallpapers, painted game art, paint programs' paper
and canvas textures, public-domain clip art) plus the paintings of fst/assets/styles, re-encoded as
JPEG (short side <= 512), split into DIR/train and DIR/heldout, one attribution row each in
DIR/ATTRIBUTION.tsv (the columns of fst/assets/ATTRIBUTION.tsv).

    python scripts/build_style_corpus.py [--out DIR]        # default $FST_CACHE/style_corpus

Each package is pinned below (version and sha256 of its .deb), fetched once with `apt-get download`
into --downloads, checked, unpacked with `dpkg-deb -x` into a temp folder (never installed).
gcompris-qt-data is never used: the evaluation paints with its reproductions. fst/assets/styles
always go to heldout; of the rest about --heldout-percent % by a hash of the file name.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from style_corpus import (Entry, Print, Rule, Skip, Tally, candidates, corpus_name, header_size,  # noqa: E402
                          jpeg_bytes, licence_for, prepared, split_of, title_of, MIN_SIDE)

from fst.core.errors import FstError  # noqa: E402
from fst.io.files import cache_dir, write_atomic  # noqa: E402
from fst.io.registry import check_sha256  # noqa: E402

ASSETS = ROOT / "fst" / "assets"
COLUMNS = ["file", "title", "author", "license", "source"]
EXCLUDED = {"gcompris-qt-data"}  # its painting reproductions are the evaluation's: never in the corpus

# package, version, sha256 of the .deb (Debian 12 "bookworm", architecture all)
PACKAGES = [
    ("desktop-base", "12.0.6+nmu1~deb12u1", "0d0e36a9853f778cf44c31311c5f97adeadf762ae00589ef221b8328d3409c6e"),
    ("gnome-backgrounds", "43.1-1", "a670dea21572652127d6e55f9cdb3a226d0037854fdbfd037003c7d00ee0dc4e"),
    ("mate-backgrounds", "1.26.0-1", "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04"),
    ("plasma-workspace-wallpapers", "4:5.27.5-2", "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b"),
    ("sway-backgrounds", "1.7-6", "bbd637e4a27eb305beb88f2a5ba34ab53f86b2027066ffe3ed814d6b221220b5"),
    ("ukui-wallpapers", "20.04.3-1.1", "6d49be70152e6d603163458e177e501deb0be8f2916389ccbfcf59b0d7fc0262"),
    ("lomiri-wallpapers", "20.04.0-2", "6b75961132a2035f9c4db79f725a7290092619c5c8f672071c84cb5b10898e07"),
    ("lomiri-wallpapers-20.04", "20.04.0-2", "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709"),
    ("xfdesktop4-data", "4.18.1-1", "c7231a78ba5b0bbcbd1b9457ad770be9881e09eb4ecf7f7e7afe1979ba2656dc"),
    ("krita-data", "1:5.1.5+dfsg-2+deb12u1", "fa4092f3214e406c9354982b45709dc6e4696b940592177e1ea4414357053b47"),
    ("mypaint-data-extras", "2.0.1-9", "9d5971baa5eb411309940ea2cfe11aa7f6ec2c39e7f9ecd2bbef81fc6404b1d1"),
    ("tuxpaint-data", "1:0.9.28-sdl2-1", "f5d0de8f9a70d2efc1241d19f26168cb8bf279f1b77abd3631e7a1a55c40e5e5"),
    ("openclipart-png", "1:0.18+dfsg-19", "f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02"),
    ("colobot-common-textures", "0.2.0-2", "5b828825fe10602724e88865f2930719a61b0b90436e24ccfec3488a7fa49275"),
    ("flare-game", "1.14-1", "4ab6a8298276013d35a0806257e130d992761af1b749041433b409c3dafec508"),
    ("wesnoth-1.16-data", "1:1.16.9-1", "1012b964bd412a6770685e3324ae3b61e176caff7846192d1ee63d55cd621e26"),
    ("wesnoth-1.16-did", "1:1.16.9-1", "774619f5aaeb7eb4c848e1cc1758795a8c58e96bd270cceecc9d847dbcc769b3"),
    ("wesnoth-1.16-dm", "1:1.16.9-1", "1997ad4d91e8de36415db2a3445904288f588a76d75111222d2aace409ace5c6"),
    ("wesnoth-1.16-dw", "1:1.16.9-1", "47982e08b2a5d5fd79f400a5453f32c6d7dd56f2ccc10412a9e47dec8a9b3ca4"),
    ("wesnoth-1.16-ei", "1:1.16.9-1", "687abe111ee662b7324336ddadc209758f68d2eeb1ccbf630238f27a0e3c6404"),
    ("wesnoth-1.16-httt", "1:1.16.9-1", "05b16a3f8f8204278794aae14d8e6a7c95d2b2faef7337c4997c827a146d1bbd"),
    ("wesnoth-1.16-l", "1:1.16.9-1", "5383c79046df6121929bc36a8ec3f970ab4cf9c1239ed9b31868201c27f4266d"),
    ("wesnoth-1.16-low", "1:1.16.9-1", "2f304551b97b7fb76a2adb5ad8ffcac3e78476bc8ade17532c90714065c9bf9f"),
    ("wesnoth-1.16-nr", "1:1.16.9-1", "13edcf1bdd23708f531ba81c67100c5800363a119f10155c7f9e146fe7dced34"),
    ("wesnoth-1.16-sof", "1:1.16.9-1", "b6f1ddffdbd1a977f3965dae944e4fb11c147627471f1cfc71c92d1e69efb555"),
    ("wesnoth-1.16-sota", "1:1.16.9-1", "fa44304ff53d259f3c5fe13c03cb8166e55e9c307807d1a5663048c396645ba6"),
    ("wesnoth-1.16-sotbe", "1:1.16.9-1", "877a2f4a7fd8df54fd3b4561ffbd5fa95d0390d7c7372f3cb66367c8007918cb"),
    ("wesnoth-1.16-thot", "1:1.16.9-1", "79d9ec6e43300ea9f41295ccf3fb451e8eeaefc17007123f65d77eb05cb88695"),
    ("wesnoth-1.16-trow", "1:1.16.9-1", "b5009e964ac7157a46d50de911e4f56f5bb4389d60b82a513b5f382671d180d7"),
    ("wesnoth-1.16-tsg", "1:1.16.9-1", "38b5f564253b8e0d9c093b2b7c58aabfef24f688968d9cbaf42abfc1e76d8288"),
    ("wesnoth-1.16-ttb", "1:1.16.9-1", "d0d45693665305191488553ade8dc1d0aa26ab17d4bffae3bf6969db4a766329"),
    ("wesnoth-1.16-utbs", "1:1.16.9-1", "81e05717bebbfb6348c0bed2cd6ce2560c4fd9205ed419c2e7bc039b4a70e228"),
]

# KDE wallpapers that are photographs, not artwork
PLASMA_PHOTOS = ("Path", "Grey", "FallenLeaf", "Kite", "ColdRipple", "OneStandsOut", "DarkestHour", "EveningGlow",
                 "summer_1am", "BytheWater", "ColorfulCups")
WESNOTH = "GPL-2+"  # debian/copyright of every wesnoth package is free text: "GNU GPL version 2 or later"
WESNOTH_BY = "Battle for Wesnoth artists"
CAMPAIGN = "usr/share/games/wesnoth/1.16/data/campaigns/*/images/"
RULES = [
    Rule("desktop-base", ("usr/share/plymouth/themes/*/*background*.png",)),  # grub's are the same pictures
    # gnome-backgrounds' debian/copyright is free text: adwaita* by Jakub Steiner, CC-BY-SA-3.0; the package GPL-2+
    Rule("gnome-backgrounds", ("usr/share/backgrounds/gnome/adwaita-*.webp",), license="CC-BY-SA-3.0",
         author="Jakub Steiner"),
    Rule("gnome-backgrounds", ("usr/share/backgrounds/gnome/*.webp",), ("*/adwaita-*",), license="GPL-2+",
         author="GNOME design team"),
    Rule("mate-backgrounds", ("usr/share/backgrounds/mate/abstract/*", "usr/share/backgrounds/mate/desktop/*"),
         ("*/MATE-Stripes-*", "*/GreenTraditional*")),  # nature/: photographs; these two: the logo
    Rule("plasma-workspace-wallpapers", ("usr/share/wallpapers/*/contents/images*/*",),
         tuple(f"*/wallpapers/{w}/*" for w in PLASMA_PHOTOS), meta="plasma", one_per_folder=True),
    Rule("sway-backgrounds", ("usr/share/backgrounds/sway/*",)),
    Rule("ukui-wallpapers", ("usr/share/backgrounds/*",)),
    Rule("lomiri-wallpapers", ("usr/share/backgrounds/*",)),
    Rule("lomiri-wallpapers-20.04", ("usr/share/backgrounds/*",), ("*/Kleiber_*",)),  # a photograph
    Rule("xfdesktop4-data", ("usr/share/backgrounds/xfce/*",)),
    Rule("krita-data", ("usr/share/krita/patterns/*",)),
    Rule("mypaint-data-extras", ("usr/share/mypaint/backgrounds/*/*",)),
    Rule("tuxpaint-data", ("usr/share/tuxpaint/starters/*",),  # the line drawings; not frames, grids, maps, photos
         ("*/frame_*", "*/grid_*", "*/jigsaw*", "*/worldmap*", "*/reef*", "*/skyline*", "*/chessboard*")),
    Rule("openclipart-png", ("usr/share/openclipart/png/*",), ("*/computer/*", "*/signs_and_symbols/*", "*/shapes/*",
         "*/logos/*", "*/buttons/*", "*/special/*", "*/office/*", "*/martin_luther*"), cap=40, license="public-domain",
         author="Open Clip Art Library contributors"),
    Rule("colobot-common-textures", ("usr/share/games/colobot/textures/*",),  # terrain, not model atlases or fonts
         ("*/interface/*", "*/objects/*", "*/planets/*", "*/effect*", "*/back*"), cap=30),
    Rule("flare-game", ("*/images/portraits/*", "*/images/menus/backgrounds/*", "*/images/parallax/*",
                        "*/images/cutscenes/*"), cap=40),
    Rule("wesnoth-1.16-data", ("*/images/story/*", "*/images/maps/*", "*/images/portraits/*"),
         ("*/l10n/*", "*/transparent/*"), cap=90, license=WESNOTH, author=WESNOTH_BY),
    *[Rule(name, (CAMPAIGN + "story/*", CAMPAIGN + "maps/*", CAMPAIGN + "portraits/*"), ("*/l10n/*", "*/transparent/*"),
           cap=12, license=WESNOTH, author=WESNOTH_BY)
      for name, _, _ in PACKAGES if name.startswith("wesnoth-1.16-") and name != "wesnoth-1.16-data"],
]
assert not EXCLUDED & {name for name, _, _ in PACKAGES} and not EXCLUDED & {r.package for r in RULES}


class Corpus:
    """The images accepted so far, kept in memory (a few hundred JPEGs of ~60 kB) until the end."""

    def __init__(self, heldout_percent: float):
        self.heldout_percent = heldout_percent
        self.entries: list[Entry] = []
        self.tally = Tally()

    def add(self, image_source: Path | bytes, label: str, name: str, row: dict[str, str],
            split: str | None = None) -> bool:
        """Take one image (True), or count why not; `split` None: by the hash of `name`."""
        try:
            img = prepared(image_source, label)
        except Skip as e:
            self.tally.skip(e.reason, f"skip {label}: {e.reason}" if e.loud else None)
            return False
        h = Print.of(img)
        twin = next((e for e in self.entries if e.print is not None and h.near(e.print)), None)
        if twin is not None:
            self.tally.skip("near-duplicate", f"skip {label}: near-duplicate of {twin.name}")
            return False
        split = split or split_of(name, self.heldout_percent)
        self.entries.append(Entry(name, split, jpeg_bytes(img), {**row, "file": f"{split}/{name}"}, h))
        return True

    def taken(self) -> set[str]:
        return {e.name for e in self.entries}


def add_assets(corpus: Corpus) -> None:
    """fst's own paintings, held out, with their attribution rows as fst/assets/ATTRIBUTION.tsv has them."""
    with open(ASSETS / "ATTRIBUTION.tsv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["file"].startswith("styles/")]
    for row in rows:
        name = f"fst-assets__{Path(row['file']).stem}.jpg"
        corpus.add(ASSETS / row["file"], f"fst/assets/{row['file']}", name, row, split="heldout")


def add_package(corpus: Corpus, tree: Path, package: str, version: str, rules: list[Rule]) -> None:
    """The images the rules pick from an unpacked package `tree`."""
    copyright_path = tree / "usr/share/doc" / package / "copyright"
    copyright_text = copyright_path.read_text(encoding="utf-8", errors="replace") if copyright_path.is_file() else ""
    for rule in rules:
        added = 0
        for path in candidates(tree, rule):
            if rule.cap is not None and added >= rule.cap:
                break
            size = header_size(path)
            if size is not None and min(size) < MIN_SIDE:
                corpus.tally.skip(f"short side under {MIN_SIDE} px")
                continue
            rel = path.relative_to(tree).as_posix()
            lic = licence_for(rule, tree, path, copyright_text)
            row = {"title": lic.title or title_of(rel), "author": lic.author, "license": lic.license,
                   "source": f"Debian package {package} {version}, {rel}; licence: {lic.how}"}
            added += corpus.add(path, f"{package}:{rel}", corpus_name(package, rel, corpus.taken()), row)


def fetch_deb(package: str, version: str, sha256: str, downloads: Path) -> Path:
    """The pinned .deb, downloaded by apt-get once into `downloads` and checked against its sha256."""
    deb = downloads / f"{package}_{version.replace(':', '%3a')}_all.deb"
    if not deb.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=downloads,
                             capture_output=True, text=True, timeout=1800)
        if res.returncode != 0 or not deb.is_file():
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise FstError(f"apt-get download {package}={version} failed: {last} (run apt-get update once?)")
    check_sha256(deb, sha256)
    return deb


def unpacked(deb: Path, into: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True, capture_output=True, timeout=1800)
    return into


def write_corpus(corpus: Corpus, out: Path) -> None:
    """Everything written into a hidden folder beside `out`, which then takes `out`'s place: a reader
    sees the old corpus or the new one, never a mix."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.building-{secrets.token_hex(4)}"
    try:
        for e in corpus.entries:
            write_atomic(staging / e.split / e.name, e.jpeg)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, COLUMNS, delimiter="\t", lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(sorted((e.row for e in corpus.entries), key=lambda r: r["file"]))
        write_atomic(staging / "ATTRIBUTION.tsv", buf.getvalue())
        old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_out(out: Path) -> None:
    """Refuse an `out` that holds anything but an earlier corpus (it is replaced whole) or fst's assets."""
    if out.resolve().is_relative_to(ASSETS.resolve()) or ASSETS.resolve().is_relative_to(out.resolve()):
        raise FstError(f"{out}: would replace fst's own assets")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "ATTRIBUTION.tsv").is_file())):
        raise FstError(f"{out}: exists and is not a style corpus (no ATTRIBUTION.tsv); choose another --out")


def report(corpus: Corpus) -> None:
    splits = Counter(e.split for e in corpus.entries)
    print(f"\n{len(corpus.entries)} images: {splits['train']} train, {splits['heldout']} heldout")
    for title, key in (("by licence", "license"), ("by source", "source")):
        print(f"{title}:")
        counts = Counter(e.row[key] if key == "license" else e.name.split("__")[0] for e in corpus.entries)
        for k, n in counts.most_common():
            print(f"  {n:5d}  {k}")
    print("skipped: " + ", ".join(f"{n} {r}" for r, n in sorted(corpus.tally.skipped.items())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="corpus folder (default $FST_CACHE/style_corpus)")
    p.add_argument("--downloads", type=Path, help="where the .debs are kept (default $FST_CACHE/style_corpus_debs)")
    p.add_argument("--heldout-percent", type=float, default=10.0,
                   help="share of the package images held out (default 10)")
    args = p.parse_args(argv)
    out = args.out or cache_dir() / "style_corpus"
    downloads = args.downloads or cache_dir() / "style_corpus_debs"
    try:
        check_out(out)
        corpus = Corpus(args.heldout_percent)
        add_assets(corpus)
        for package, version, sha256 in PACKAGES:
            deb = fetch_deb(package, version, sha256, downloads)
            with tempfile.TemporaryDirectory(prefix="style-corpus-") as tmp:
                add_package(corpus, unpacked(deb, Path(tmp)), package, version,
                            [r for r in RULES if r.package == package])
            print(f"{package}: {sum(e.name.startswith(package + '__') for e in corpus.entries)} images", flush=True)
        write_corpus(corpus, out)
    except FstError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report(corpus)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
