"""The images a shard build packs: every image under a folder, or the splits of a COCO root with
their ids and captions, sorted so that a build is deterministic."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from fst.core.errors import FstError, first_line
from fst.io.images import image_paths
from fst.untrusted.plain_data import MAX_DIGITS, describe

COCO_SPLIT = re.compile(r"^(train|val|test)(\d{4})$")
MAX_CAPTIONS_BYTES = 1 << 30  # COCO 2017's train captions are 91 MB


@dataclass(frozen=True)
class Source:
    """One input image: where it is, how it is named in the shards, what COCO knows about it."""

    path: Path
    rel: str
    id: int | None = None
    captions: tuple[str, ...] = ()


def find_sources(root: Path, splits: list[str] | None = None) -> tuple[str, list[Source]]:
    """("coco", sources) for a COCO root, else ("folder", every image under `root`), sorted."""
    if not root.exists():
        raise FstError(f"input folder {root} does not exist")
    if not root.is_dir():
        raise FstError(f"input {root} is not a folder")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and COCO_SPLIT.match(p.name))
    if found or splits:
        return "coco", coco_sources(root, splits or _default_splits(found))
    return "folder", folder_sources(root)


def folder_sources(root: Path) -> list[Source]:
    # FIFOs and dangling symlinks stay in: `prepare` skips them with their reason, in the manifest.
    files = image_paths(root)
    return sorted((Source(p, p.relative_to(root).as_posix()) for p in files), key=lambda s: s.rel)


def coco_sources(root: Path, splits: list[str]) -> list[Source]:
    sources = []
    for split in splits:
        if not (root / split).is_dir():
            raise FstError(f"COCO split folder {root / split} does not exist")
        ids, captions = _coco_captions(root / "annotations" / f"captions_{split}.json")
        for src in folder_sources(root / split):
            name = Path(src.rel).name
            image_id = ids.get(name, _id_from_name(name))
            sources.append(Source(src.path, f"{split}/{src.rel}", image_id, captions.get(image_id, ())))
    return sources


def _default_splits(found: list[str]) -> list[str]:
    # train2017 contains (almost all of) train2014: taking both would duplicate photos.
    train = [s for s in found if s.startswith("train")]
    return [max(train)] if train else [max(found)]


def _coco_captions(path: Path) -> tuple[dict[str, int], dict[int, tuple[str, ...]]]:
    """file name -> image id, image id -> captions (in annotation-id order), from a captions json."""
    if not path.exists():
        return {}, {}
    try:
        if path.stat().st_size > MAX_CAPTIONS_BYTES:
            raise ValueError(f"over {MAX_CAPTIONS_BYTES >> 20} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
        ids = {im["file_name"]: _id(im["id"], "image id") for im in data["images"]}
        by_id: dict[int, list[tuple[int, str]]] = {}
        for ann in data.get("annotations", []):
            by_id.setdefault(_id(ann["image_id"], "image_id"), []).append(
                (_id(ann.get("id", 0), "annotation id"), ann["caption"].strip()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise FstError(f"{path}: not a COCO captions file ({type(e).__name__}: {first_line(e)[:200]})") from None
    return ids, {k: tuple(c for _, c in sorted(v)) for k, v in by_id.items()}


def _id(value: object, what: str) -> int:
    """A COCO id: an integer from 0 to 2^63-1 (or its decimal text). JSON's 1e999 reads as inf,
    which int() refuses with an OverflowError; 1e300 would be a 997-bit id."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS:
        value = int(value)
    elif isinstance(value, float) and value.is_integer() and abs(value) < 2.0**63:
        value = int(value)
    if type(value) is not int or not 0 <= value < 1 << 63:
        raise ValueError(f"{what} {describe(value)} is not an integer from 0 to 2^63-1")
    return value


def _id_from_name(name: str) -> int | None:
    digits = re.findall(r"\d+", Path(name).stem)
    return int(digits[-1]) if digits else None


def looks_like_coco(root: Path) -> bool:
    return root.is_dir() and any(p.is_dir() and COCO_SPLIT.match(p.name) for p in root.iterdir())
