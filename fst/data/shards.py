"""`fst shards`: pack photos (a COCO root or any folder of images) into webdataset shards.

Each sample is img2dataset-shaped: `KEY.jpg` (RGB JPEG, short side <= --max-size), `KEY.json`
(key, id, source, width, height, original size, captions) and, when captions are known,
`KEY.txt` (the first caption). Every file is decoded before it is written; files that cannot be
used are skipped and listed with their reason in `manifest.json`, never abort the run.

Output is deterministic (sorted input, fixed keys, fixed tar member metadata), each shard is
written under a temporary name and renamed, and the manifest records a sha256 per shard, so a
rerun only redoes shards that are missing, damaged or not yet written.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import multiprocessing
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from PIL import ExifTags, Image
from tqdm import tqdm

from fst.arguments import ArgumentParser
from fst.assets import sample_photos_dir
from fst.errors import FstError
from fst.files import atomic_path, cache_dir, sha256_file, temp_name_pattern, write_atomic
from fst.images import IMAGE_SUFFIXES, ImageError, image_paths, open_image, read_file, to_rgb
from fst.output_dir import writable_dir

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SAMPLE_SHARD_SIZE = 25  # 100 embedded photos -> 4 shards: splits evenly over 2 ranks x 2 workers
SAMPLE_PREFIX = "sample"
_COCO_SPLIT = re.compile(r"^(train|val|test)(\d{4})$")


@dataclass(frozen=True)
class Source:
    """One input image: where it is, how it is named in the shards, what COCO knows about it."""

    path: Path
    rel: str
    id: int | None = None
    captions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    prefix: str
    shard_size: int
    max_size: int
    quality: int


@dataclass
class Prepared:
    """A worker's answer for one source: JPEG bytes and metadata, or the reason it was skipped."""

    jpg: bytes = b""
    meta: dict = field(default_factory=dict)
    reason: str | None = None


# ---------------------------------------------------------------- sample data shipped in the repo


def sample_shards(out: Path | str | None = None) -> Path:
    """Shards of the embedded photos in `out` (default `$FST_CACHE/sample_shards`), built or
    repaired if missing or incomplete. Returns the directory."""
    out = Path(out) if out is not None else cache_dir() / "sample_shards"
    settings = Settings(prefix=SAMPLE_PREFIX, shard_size=SAMPLE_SHARD_SIZE, max_size=512, quality=95)
    build_shards(sample_photos_dir(), out, settings, workers=1, progress=False)
    return out


# ---------------------------------------------------------------- finding the inputs


def find_sources(root: Path, splits: list[str] | None = None) -> tuple[str, list[Source]]:
    """("coco", sources) for a COCO root, else ("folder", every image under `root`), sorted."""
    if not root.exists():
        raise FstError(f"input folder {root} does not exist")
    if not root.is_dir():
        raise FstError(f"input {root} is not a folder")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and _COCO_SPLIT.match(p.name))
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
        data = json.loads(path.read_text(encoding="utf-8"))
        ids = {im["file_name"]: int(im["id"]) for im in data["images"]}
        by_id: dict[int, list[tuple[int, str]]] = {}
        for ann in data.get("annotations", []):
            by_id.setdefault(int(ann["image_id"]), []).append((int(ann.get("id", 0)), ann["caption"].strip()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FstError(f"{path}: not a COCO captions file ({type(e).__name__}: {e})") from None
    return ids, {k: tuple(c for _, c in sorted(v)) for k, v in by_id.items()}


def _id_from_name(name: str) -> int | None:
    digits = re.findall(r"\d+", Path(name).stem)
    return int(digits[-1]) if digits else None


# ---------------------------------------------------------------- one image (runs in the workers)


def prepare(source: Source, max_size: int, quality: int) -> Prepared:
    """Decode, orient, convert to RGB and shrink one image; keep the original JPEG bytes when
    nothing had to change (no generation loss)."""
    try:
        data = read_file(source.path, source.rel)
        img = open_image(data, name=source.rel)
        rgb = to_rgb(img, source.rel)
    except ImageError as e:
        return Prepared(reason=e.reason)
    original = rgb.size
    resized = _shrink(rgb, max_size)
    if resized is rgb and img.mode == "RGB" and _is_upright_jpeg(data):
        jpg = data
    else:
        buf = io.BytesIO()
        resized.save(buf, "JPEG", quality=quality)
        jpg = buf.getvalue()
    meta = {
        "id": source.id,
        "source": source.rel,
        "width": resized.width,
        "height": resized.height,
        "original_width": original[0],
        "original_height": original[1],
    }
    if source.captions:
        meta["captions"] = list(source.captions)
        meta["caption"] = source.captions[0]
    return Prepared(jpg=jpg, meta=meta)


def _shrink(img: Image.Image, max_size: int) -> Image.Image:
    w, h = img.size
    if max_size <= 0 or min(w, h) <= max_size:
        return img
    scale = max_size / min(w, h)
    size = (max_size, round(h * scale)) if w <= h else (round(w * scale), max_size)
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _is_upright_jpeg(data: bytes) -> bool:
    if not data.startswith(b"\xff\xd8"):
        return False
    return Image.open(io.BytesIO(data)).getexif().get(ExifTags.Base.Orientation, 1) == 1


# ---------------------------------------------------------------- writing shards


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}.tar"


def write_shard(path: Path, samples: list[tuple[str, Prepared]]) -> str:
    """Write `(key, prepared)` samples to `path` via a temporary name; return its sha256."""
    from webdataset import TarWriter  # lazy: webdataset imports torch, which `--help` and the workers don't need

    with atomic_path(path) as tmp:
        # Fixed mtime/owner/mode: the same samples always give the same bytes.
        with TarWriter(str(tmp), user="fst", group="fst", mtime=0, encoder=False) as sink:
            for key, p in samples:
                sample = {"__key__": key, "jpg": p.jpg, "json": _json_bytes({"key": key, **p.meta})}
                if "caption" in p.meta:
                    sample["txt"] = p.meta["caption"].encode("utf-8")
                sink.write(sample)
        digest = sha256_file(tmp)
    return digest


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------- the build (resumable)


def build_shards(
    input_dir: Path | str,
    out_dir: Path | str,
    settings: Settings,
    *,
    workers: int = 1,
    splits: list[str] | None = None,
    progress: bool = True,
) -> dict:
    """Pack the images under `input_dir` into shards in `out_dir`; return the manifest.

    Shards whose sha256 matches a manifest made from the same input and settings are kept;
    missing or damaged ones are rebuilt from their recorded input range; the rest is appended.
    """
    root, out = Path(input_dir), Path(out_dir)
    layout, sources = find_sources(root, splits)
    if not sources:
        raise FstError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {root}")
    writable_dir(out, "shard folder")
    with _locked(out):
        state = _resume_state(out, _fresh_manifest(root, layout, settings, sources))
        redo = [s for s in state["shards"] if not (out / s["name"]).is_file() or sha256_file(out / s["name"]) != s["sha256"]]
        todo = [i for s in redo for i in range(s["start"], s["end"])] + list(range(state["next"], len(sources)))
        work = partial(prepare, max_size=settings.max_size, quality=settings.quality)
        with _mapper(workers) as imap, tqdm(total=len(todo), unit="img", disable=not progress, desc="shards") as bar:
            results = _progress(imap(work, [sources[i] for i in todo]), bar)
            for shard in redo:
                _rebuild(out, state, shard, sources, results)
            _append(out, state, sources, results)
        _remove_stale(out, settings.prefix, state)
    return state


def _fresh_manifest(root: Path, layout: str, settings: Settings, sources: list[Source]) -> dict:
    return {
        "version": MANIFEST_VERSION,
        "input": str(root.resolve()),
        "layout": layout,
        "settings": vars(settings),
        "fingerprint": _fingerprint(settings, sources),
        "files": len(sources),
        "samples": 0,
        "next": 0,  # inputs [0, next) are in shards or skipped
        "complete": False,
        "shards": [],
        "skipped": [],
    }


def _fingerprint(settings: Settings, sources: list[Source]) -> str:
    h = hashlib.sha256(_json_bytes(vars(settings)))
    for s in sources:
        h.update(_json_bytes([s.rel, _size(s.path), s.id, s.captions]))
    return h.hexdigest()


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:  # a dangling symlink: skipped later, with its reason
        return None


def _resume_state(out: Path, fresh: dict) -> dict:
    try:
        old = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fresh
    same = isinstance(old, dict) and all(old.get(k) == fresh[k] for k in ("version", "fingerprint", "settings"))
    if not same or not all(k in old for k in fresh):
        print(f"fst shards: {out / MANIFEST} is for other input or settings; rebuilding", file=sys.stderr)
        return fresh
    # Skips past `next` belong to a shard that was never written: they will be seen again.
    old["skipped"] = [s for s in old["skipped"] if s["index"] < old["next"]]
    return old


def _rebuild(out: Path, state: dict, shard: dict, sources: list[Source], results: Iterator[Prepared]) -> None:
    index_range = range(shard["start"], shard["end"])
    state["skipped"] = [s for s in state["skipped"] if s["index"] not in index_range]
    good = _collect(state, sources, index_range, results)
    first_key = shard["index"] * state["settings"]["shard_size"]
    shard["sha256"] = write_shard(out / shard["name"], _keyed(good, first_key))
    shard["count"] = len(good)
    _save(out, state)


def _append(out: Path, state: dict, sources: list[Source], results: Iterator[Prepared]) -> None:
    if state["complete"]:
        return
    size = state["settings"]["shard_size"]
    pending: list[Prepared] = []
    start = state["next"]
    for i in range(state["next"], len(sources)):
        pending += _collect(state, sources, [i], results)
        if len(pending) == size or (i == len(sources) - 1 and pending):
            index = len(state["shards"])
            name = shard_name(state["settings"]["prefix"], index)
            digest = write_shard(out / name, _keyed(pending, index * size))
            state["shards"].append(
                {"index": index, "name": name, "count": len(pending), "sha256": digest, "start": start, "end": i + 1}
            )
            pending, start, state["next"] = [], i + 1, i + 1
            _save(out, state)
    state["next"] = len(sources)
    state["complete"] = True
    _save(out, state)


def _collect(state: dict, sources: list[Source], indices, results: Iterator[Prepared]) -> list[Prepared]:
    """The next results for `indices`: good ones returned, bad ones recorded as skipped."""
    good = []
    for i in indices:
        p = next(results)
        if p.reason is None:
            good.append(p)
        else:
            state["skipped"].append({"index": i, "path": sources[i].rel, "reason": p.reason})
    return good


def _keyed(samples: list[Prepared], first: int) -> list[tuple[str, Prepared]]:
    return [(f"{first + j:09d}", p) for j, p in enumerate(samples)]


def _save(out: Path, state: dict) -> None:
    state["samples"] = sum(s["count"] for s in state["shards"])
    state["skipped"].sort(key=lambda s: s["index"])
    write_atomic(out / MANIFEST, json.dumps(state, indent=1, ensure_ascii=False) + "\n")


def _remove_stale(out: Path, prefix: str, state: dict) -> None:
    """Drop our own leftovers: shards of an earlier, larger build and temp files of killed runs."""
    keep = {s["name"] for s in state["shards"]}
    shard = rf"{re.escape(prefix)}-\d{{6}}"
    manifest = Path(MANIFEST)
    ours = re.compile("^(" + "|".join([
        rf"\.?{shard}\.tar",  # shards (and hidden ones of old fst versions)
        temp_name_pattern(shard, ".tar"), temp_name_pattern(re.escape(manifest.stem), manifest.suffix),
        rf"\.?{shard}\.tar\.tmp-\d+", rf"\.{re.escape(MANIFEST)}\.tmp-\d+",  # temp names of old fst versions
    ]) + ")$")
    for p in out.iterdir():
        if ours.match(p.name) and p.name not in keep:
            p.unlink(missing_ok=True)


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    # Two builders (say two DDP ranks asking for the sample shards) must not interleave.
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def _mapper(workers: int):
    """An ordered, lazy `imap`: in-process for one worker, a process pool otherwise."""
    if workers <= 1:
        yield map
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        yield partial(pool.imap, chunksize=4)


def _progress(results: Iterator[Prepared], bar: tqdm) -> Iterator[Prepared]:
    for r in results:
        bar.update(1)
        yield r


# ---------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="fst shards",
        description=(
            "Pack photos into webdataset shards (PREFIX-000000.tar, ...) plus manifest.json.\n\n"
            "INPUT is a COCO root (train2017/, train2014/, val2017/ ... with optional\n"
            "annotations/captions_SPLIT.json) or any folder of images, searched recursively\n"
            f"({' '.join(IMAGE_SUFFIXES)}). Each sample is KEY.jpg + KEY.json (+ KEY.txt caption).\n"
            "Unusable files are skipped and listed with their reason in the manifest;\n"
            "rerunning resumes (complete shards are verified by sha256 and kept)."
        ),
        epilog=(
            "examples:\n  fst shards /data/coco --out /data/coco-shards\n"
            "  fst shards ~/photos --out shards/ --max-size 384 --shard-size 500\n"
            "  fst shards --sample            # the embedded photos, into $FST_CACHE/sample_shards"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="?", type=Path, help="COCO root or folder of images")
    p.add_argument("--out", type=Path, help="output folder (required unless --sample)")
    p.add_argument("--sample", action="store_true", help="shard the embedded sample photos instead of INPUT")
    p.add_argument("--prefix", help="shard file name prefix (default: coco for a COCO root, else shard)")
    p.add_argument("--shard-size", type=_positive, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--max-size", type=_non_negative, default=512, help="shrink short sides above this, px (default 512; 0: never)")
    p.add_argument("--quality", type=_percent, default=95, help="JPEG quality of re-encoded images, 1-100 (default 95)")
    p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1, help="decoding processes (default: all CPUs)")
    p.add_argument("--splits", help="COCO splits to pack, comma-separated (default: the newest train split)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _percent(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 1-100, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.sample:
        if args.input is not None:
            parser.error("--sample takes no INPUT")
        out = sample_shards(args.out)
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    else:
        if args.input is None or args.out is None:
            parser.error("INPUT and --out are required (or use --sample)")
        splits = args.splits.split(",") if args.splits else None
        prefix = args.prefix or ("coco" if splits or _looks_like_coco(args.input) else "shard")
        settings = Settings(prefix, args.shard_size, args.max_size, args.quality)
        out = args.out
        manifest = build_shards(args.input, out, settings, workers=args.workers, splits=splits, progress=not args.quiet)
    print(
        f"{manifest['samples']} samples in {len(manifest['shards'])} shards in {out}; "
        f"{len(manifest['skipped'])} files skipped (listed in {out / MANIFEST})"
    )
    if manifest["samples"] == 0:
        raise FstError(f"no usable images in {manifest['input']} (see {out / MANIFEST})")
    return 0


def _looks_like_coco(root: Path) -> bool:
    return root.is_dir() and any(p.is_dir() and _COCO_SPLIT.match(p.name) for p in root.iterdir())
