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
import json
import multiprocessing
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from tqdm import tqdm

from fst.assets import sample_photos_dir, sample_styles_dir
from fst.core.arguments import ArgumentParser
from fst.core.errors import FstError
from fst.data.manifest import MANIFEST, Settings, fresh_manifest, remove_stale, resume_state, save_manifest
from fst.data.shard_writer import Prepared, prepare, shard_name, write_shard
from fst.data.sources import Source, find_sources, looks_like_coco
from fst.io.files import cache_dir, sha256_file
from fst.io.images import IMAGE_SUFFIXES
from fst.io.output_dir import writable_dir
from fst.io.targets import check_outputs

SAMPLE_SHARD_SIZE = 25  # 100 embedded photos -> 4 shards: splits evenly over 2 ranks x 2 workers
SAMPLE_PREFIX = "sample"
SHOWN_SKIPS = 50  # lines naming skipped files; the manifest lists every one
LOCK = ".lock"  # beside the shards: two builders into one folder take turns


def sample_shards(out: Path | str | None = None) -> Path:
    """Shards of the embedded photos in `out` (default `$FST_CACHE/sample_shards`), built or
    repaired if missing or incomplete. Returns the directory."""
    out = Path(out) if out is not None else cache_dir() / "sample_shards"
    settings = Settings(prefix=SAMPLE_PREFIX, shard_size=SAMPLE_SHARD_SIZE, max_size=512, quality=95)
    build_shards(sample_photos_dir(), out, settings, workers=1, progress=False)
    return out


def sample_style_shards(out: Path | str | None = None) -> Path:
    """Shards of fst's own sample paintings in `out` (default `$FST_CACHE/sample_style_shards`): the
    smallest style corpus, for `style_shards: sample` (fst/data/paintings.py)."""
    out = Path(out) if out is not None else cache_dir() / "sample_style_shards"
    settings = Settings(prefix=SAMPLE_PREFIX, shard_size=SAMPLE_SHARD_SIZE, max_size=512, quality=95)
    build_shards(sample_styles_dir(), out, settings, workers=1, progress=False)
    return out


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
    check_outputs(_outputs(out, settings.prefix), [s.path for s in sources])
    writable_dir(out, "shard folder")
    with _locked(out):
        state, recorded = resume_state(out, fresh_manifest(root, layout, settings, sources))
        redo = [s for s in state["shards"] if not (out / s["name"]).is_file() or sha256_file(out / s["name"]) != s["sha256"]]
        todo = [i for s in redo for i in range(s["start"], s["end"])] + list(range(state["next"], len(sources)))
        work = partial(prepare, max_size=settings.max_size, quality=settings.quality)
        with _mapper(workers) as imap, tqdm(total=len(todo), unit="img", disable=not progress, desc="shards") as bar:
            results = _progress(imap(work, [sources[i] for i in todo]), bar)
            for shard in redo:
                _rebuild(out, state, shard, sources, results)
            _append(out, state, sources, results)
        remove_stale(out, settings.prefix, state, recorded)
    return state


def _rebuild(out: Path, state: dict, shard: dict, sources: list[Source], results: Iterator[Prepared]) -> None:
    index_range = range(shard["start"], shard["end"])
    state["skipped"] = [s for s in state["skipped"] if s["index"] not in index_range]
    good = _collect(state, sources, index_range, results)
    first_key = shard["index"] * state["settings"]["shard_size"]
    shard["sha256"] = write_shard(out / shard["name"], _keyed(good, first_key))
    shard["count"] = len(good)
    save_manifest(out, state)


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
            save_manifest(out, state)
    state["next"] = len(sources)
    state["complete"] = True
    save_manifest(out, state)


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


def _outputs(out: Path, prefix: str) -> list[Path]:
    """What a build may replace or open in `out` (shards are numbered from 0 in order)."""
    if not out.is_dir():
        return []
    shards = [p for p in out.iterdir() if p.name.startswith(f"{prefix}-") and p.suffix == ".tar"]
    return [out / MANIFEST, out / LOCK, *sorted(shards)]


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    # Two builders (say two DDP ranks asking for the sample shards) must not interleave. Opened to
    # append: a lock file is never truncated, so a symlink planted in its place loses nothing.
    with open(out / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def _mapper(workers: int):
    """An ordered, lazy `imap`: in-process for one worker, a process pool otherwise."""
    if workers <= 1:
        yield map
        return
    # forkserver: a fork of a process whose threads hold locks (torch, tqdm) can deadlock its children
    with multiprocessing.get_context("forkserver").Pool(workers) as pool:
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
            "Unusable files are skipped, each named on stderr and listed with its reason in\n"
            "the manifest; rerunning resumes (complete shards are verified by sha256 and kept).\n"
            "A folder of paintings makes style shards (a universal network's data.style_shards)."
        ),
        epilog=(
            "examples:\n  fst shards /data/coco --out /data/coco-shards\n"
            "  fst shards ~/photos --out shards/ --max-size 384 --shard-size 500\n"
            "  fst shards ~/wikiart --out style-shards/   # paintings: a universal network's data.style_shards\n"
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
        prefix = args.prefix if args.prefix is not None else ("coco" if splits or looks_like_coco(args.input) else "shard")
        settings = Settings(prefix, args.shard_size, args.max_size, args.quality)
        out = args.out
        manifest = build_shards(args.input, out, settings, workers=args.workers, splits=splits, progress=not args.quiet)
    for skip in manifest["skipped"][:SHOWN_SKIPS]:  # in a folder of any images, one bad file is that file's line
        print(f"skipped {skip['path']}: {skip['reason']}", file=sys.stderr)
    if len(manifest["skipped"]) > SHOWN_SKIPS:
        print(f"... and {len(manifest['skipped']) - SHOWN_SKIPS} more skipped", file=sys.stderr)
    print(
        f"{manifest['samples']} samples in {len(manifest['shards'])} shards in {out}; "
        f"{len(manifest['skipped'])} files skipped (listed in {out / MANIFEST})"
    )
    if manifest["samples"] == 0:
        raise FstError(f"no usable images in {manifest['input']} (see {out / MANIFEST})")
    return 0
