"""What `build_style_corpus.py` does to the files of one unpacked package, without the network: which
files a rule picks, the licence debian/copyright gives each, how an image is cleaned and shrunk, when
two images count as one, and which images are held out. Kept apart from the pinned table and the
downloads so that a test can run it on a fake package made in a temp folder.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fst.io.images import IMAGE_SUFFIXES, ImageError, alpha_channel, not_regular, open_image, to_rgb

MIN_SIDE = 256  # a shorter image is an icon or a tile, not a painting
MAX_SIDE = 512  # short side of what is written: the corpus stays small, training crops 256
MIN_STD = 6.0  # grey-level spread below which an image is one flat colour
NEAR = 5  # dHash bits within which two images may be the same picture (resized, re-encoded)...
NEAR_PIXELS = 10.0  # ...if their 16x16 colour thumbnails also differ by under this (mean, 0-255): smooth
# gradients of different colours share a dHash, and a recoloured variant is a picture of its own
QUALITY = 90
MAX_JSON = 1 << 20  # a wallpaper's metadata.json, read bounded


@dataclass(frozen=True)
class Rule:
    """Which files of a package go in: `include` and `exclude` are fnmatch patterns on the path
    inside the package; `cap` keeps that many at most (chosen by a hash of the path, so the choice
    is spread and deterministic); `license`/`author` replace what debian/copyright says where that
    file is not machine-readable or too coarse; `meta="plasma"` reads a KDE wallpaper's metadata.json."""

    package: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    cap: int | None = None
    license: str | None = None
    author: str | None = None
    meta: str | None = None
    one_per_folder: bool = False  # a wallpaper shipped at several sizes: keep the largest landscape one


@dataclass(frozen=True)
class Licence:
    license: str
    author: str
    how: str  # where the licence was read, for the source column
    title: str | None = None


@dataclass
class Entry:
    """One image of the corpus: its file name, its split, its JPEG bytes and its attribution row."""

    name: str
    split: str
    jpeg: bytes
    row: dict[str, str]
    print: Print | None = None


@dataclass
class Tally:
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, line: str | None = None) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if line:
            print(line, flush=True)


# ---------------------------------------------------------------- licences (debian/copyright)

def dep5_paragraphs(text: str) -> list[dict[str, str]] | None:
    """The paragraphs of a machine-readable debian/copyright (DEP-5), or None if it is free text."""
    if not text.lstrip().startswith("Format:"):
        return None
    paragraphs, current, key = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    return paragraphs


def dep5_licence(text: str, path: str) -> Licence | None:
    """The licence of installed file `path` by debian/copyright: the last `Files:` paragraph with a
    pattern that matches the end of `path` (copyright names source paths; a package installs them
    under another prefix). None if the file is not machine-readable or nothing matches."""
    paragraphs = dep5_paragraphs(text)
    if paragraphs is None:
        return None
    by_path = by_name = None  # (paragraph's licence, the pattern that matched)
    for p in paragraphs:
        for pattern in p.get("files", "").split():
            found = Licence(p.get("license", "").split("\n")[0].strip(), author_of(p.get("copyright", "")),
                            f"debian/copyright, Files: {pattern}")
            if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, "*/" + pattern.lstrip("/")):
                by_path = (found, pattern)
            elif "*" not in (last := pattern.rsplit("/", 1)[-1]) and last == path.rsplit("/", 1)[-1]:
                by_name = (found, pattern)  # installed into another folder than the source's, under its own name
    # a file named exactly beats a wildcard that covers the whole package
    if by_name and (by_path is None or "*" in by_path[1].rsplit("/", 1)[-1]):
        by_path = by_name
    found = by_path[0] if by_path else None
    return found if found and found.license else None


def author_of(copyright_field: str) -> str:
    """`2011 Jakub Steiner <jimmac@gmail.com>` -> `Jakub Steiner`: the first holder, no years or mail."""
    first = copyright_field.split("\n")[0]
    first = re.sub(r"(?i)^(copyright\s*)?(\(c\)|©)?\s*", "", first)
    first = re.sub(r"^[\d\s,\-–]+", "", first)
    first = re.sub(r"<[^>]*>|\bby\b", "", first)
    return re.sub(r"\s+", " ", first).strip(" ,.") or "unknown"


def plasma_meta(image: Path, tree: Path) -> Licence | None:
    """Title, author and licence of a KDE wallpaper from the metadata.json above its contents/ folder."""
    for parent in image.parents:
        if parent == tree:
            return None
        for meta in (parent / "metadata.json", parent / "metadata.desktop"):
            if meta.is_file() and not meta.is_symlink() and meta.stat().st_size <= MAX_JSON:
                try:
                    title, authors, licence = _kde_fields(meta)
                except (OSError, ValueError, KeyError, TypeError):
                    return None
                return Licence(licence, authors or "unknown", meta.relative_to(tree).as_posix(), title)
    return None


def _kde_fields(meta: Path) -> tuple[str, str, str]:
    """(name, authors, licence) of a KDE plugin's metadata.json, or of its older metadata.desktop."""
    text = meta.read_text(encoding="utf-8")
    if meta.suffix == ".json":
        plugin = json.loads(text)["KPlugin"]
        return str(plugin["Name"]), ", ".join(str(a["Name"]) for a in plugin.get("Authors", [])), str(plugin["License"])
    keys = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return keys["Name"], keys.get("X-KDE-PluginInfo-Author", ""), keys["X-KDE-PluginInfo-License"]


def licence_for(rule: Rule, tree: Path, path: Path, copyright_text: str) -> Licence:
    rel = path.relative_to(tree).as_posix()
    if rule.meta == "plasma" and (meta := plasma_meta(path, tree)):
        return meta
    read = dep5_licence(copyright_text, rel)
    if rule.license:
        return Licence(rule.license, rule.author or (read.author if read else "unknown"),
                       "this script's table (debian/copyright " + ("too coarse" if read else "is free text") + ")")
    if read is None:
        return Licence("unknown", "unknown", "debian/copyright names no licence for it")
    return Licence(read.license, rule.author or read.author, read.how)


# ---------------------------------------------------------------- picking files

def candidates(tree: Path, rule: Rule) -> list[Path]:
    """The files of `tree` the rule picks, regular image files only, in the order to try them."""
    picked = []
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.is_symlink() or not_regular(path) or path.is_dir():
            continue
        if any(fnmatch.fnmatchcase(rel, p) for p in rule.include) and not any(
                fnmatch.fnmatchcase(rel, p) for p in rule.exclude):
            picked.append(path)
    if rule.one_per_folder:
        picked = largest_per_folder(picked)
    if rule.cap is not None:  # spread the choice over the folder, not its first files by name
        return sorted(picked, key=lambda p: _digest(p.relative_to(tree).as_posix()))
    return picked


def largest_per_folder(paths: list[Path]) -> list[Path]:
    """The largest landscape image of each folder (the largest of any shape where none is landscape)."""
    best: dict[Path, tuple[tuple[bool, int], Path]] = {}
    for path in paths:
        w, h = header_size(path) or (0, 0)
        key = (w >= h, w * h)
        if path.parent not in best or key > best[path.parent][0]:
            best[path.parent] = (key, path)
    return sorted(p for _, p in best.values())


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def header_size(path: Path) -> tuple[int, int] | None:
    """The size a file's header claims (no decoding), None if PIL does not know it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # open_image applies fst's limit
            with Image.open(path) as im:
                return im.size
    except Exception:  # decoding proper reports the reason later
        return None


# ---------------------------------------------------------------- images

class Skip(Exception):
    """An image left out, with the reason (short phrase) and whether it is worth a line of its own."""

    def __init__(self, reason: str, loud: bool = False):
        super().__init__(reason)
        self.reason, self.loud = reason, loud


def prepared(source: Path | bytes, name: str) -> Image.Image:
    """RGB, transparent margins cropped and the rest laid on white, short side at most MAX_SIDE."""
    try:
        img = open_image(source, name=name)
        alpha = alpha_channel(img)
        rgb = to_rgb(img, name)
    except ImageError as e:
        raise Skip(e.reason, loud=True) from None
    if alpha is not None:
        box = alpha.point(lambda v: 255 if v > 8 else 0).getbbox()
        if box is None:
            raise Skip("fully transparent")
        rgb, alpha = rgb.crop(box), alpha.crop(box)
        rgb = Image.composite(rgb, Image.new("RGB", rgb.size, "white"), alpha)
    if min(rgb.size) < MIN_SIDE:
        raise Skip(f"short side under {MIN_SIDE} px")
    if float(np.asarray(rgb.convert("L"), dtype=np.float32).std()) < MIN_STD:
        raise Skip("one flat colour")
    scale = MAX_SIDE / min(rgb.size)
    if scale < 1:
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.LANCZOS, reducing_gap=3.0)
    return rgb


def jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=QUALITY, optimize=True)
    return buf.getvalue()


@dataclass(frozen=True)
class Print:
    """What two images are compared by: a 64-bit difference hash (which of two neighbouring cells of
    a 9x8 grey thumbnail is brighter) and a 16x16 colour thumbnail."""

    dhash: int
    thumb: np.ndarray

    @classmethod
    def of(cls, img: Image.Image) -> Print:
        small = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
        bits = (small[:, 1:] > small[:, :-1]).flatten()
        thumb = np.asarray(img.resize((16, 16), Image.Resampling.BOX), dtype=np.float32)
        return cls(int("".join("1" if b else "0" for b in bits), 2), thumb)

    def near(self, other: Print) -> bool:
        return (self.dhash ^ other.dhash).bit_count() <= NEAR and \
            float(np.abs(self.thumb - other.thumb).mean()) < NEAR_PIXELS


# ---------------------------------------------------------------- names and split

def slug(text: str, limit: int = 90) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")[:limit] or "image"


def corpus_name(package: str, rel: str, taken: set[str]) -> str:
    """`<package>__<path below usr/share, its end if long>.jpg`, made unique with a hash of the path if needed."""
    tail = re.sub(r"^usr/share/(games/)?", "", str(Path(rel).with_suffix("").as_posix())).replace("/", "_")
    name = f"{slug(package, 40)}__{slug(tail[-90:])}.jpg"
    if name in taken:
        name = f"{name[:-4]}-{_digest(package + '/' + rel)[:8]}.jpg"
    return name


VARIANT = re.compile(r"(-[dl]|_dark)(?=[_.])")  # GNOME's -d/-l and KDE's images_dark: one picture recoloured


def split_of(name: str, heldout_percent: float) -> str:
    """`heldout` for about `heldout_percent` % of names (by their sha256), else `train`: the same name
    always falls on the same side, whatever else the corpus holds, and so do the dark and light
    versions of one wallpaper (a held-out painting must not be trained on in another colour)."""
    return "heldout" if int(_digest(VARIANT.sub("", name))[:8], 16) % 10_000 < heldout_percent * 100 else "train"


def title_of(rel: str) -> str:
    return re.sub(r"[_\-]+", " ", Path(rel).stem).strip() or Path(rel).stem
