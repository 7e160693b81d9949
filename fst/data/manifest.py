"""A shard folder's `manifest.json`: the input and settings it was built from, each shard with its
input range and sha256, each skipped file with its reason. A rerun resumes from it.

A manifest on disk is data anyone may have edited: it is read bounded and checked field by field
(every shard name is the one fst gives that index, so no name can leave the folder) before a rerun
writes or deletes anything by it. A stale shard is deleted only where the file is the one a valid
manifest recorded (same name, same sha256): fst deletes nothing it cannot show it wrote."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fst.core.errors import FstError
from fst.data.shard_writer import json_bytes, json_text, shard_name
from fst.data.sources import Source
from fst.io.files import sha256_file, temp_name_pattern, write_atomic

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# COCO's 118k photos with every one skipped and listed take ~20 MB of JSON.
MAX_MANIFEST_BYTES = 256 << 20
PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SHA256 = re.compile(r"[0-9a-f]{64}")
KEYS = ("version", "input", "layout", "settings", "fingerprint", "files", "samples", "next", "complete", "shards", "skipped")


@dataclass(frozen=True)
class Settings:
    """How a build packs its shards; every value checked, since a manifest hands them back."""

    prefix: str
    shard_size: int
    max_size: int
    quality: int

    def __post_init__(self) -> None:
        if not (isinstance(self.prefix, str) and PREFIX.fullmatch(self.prefix)):
            raise FstError(f"shard prefix {self.prefix!r} is not a file-name stem (letters, digits, '.', '_', '-', "
                           "starting with a letter or digit; no '/')")
        for name, low, high in (("shard_size", 1, 10**9), ("max_size", 0, 10**6), ("quality", 1, 100)):
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise FstError(f"shard {name} must be an integer in [{low}, {high}], got {value!r}")


def fresh_manifest(root: Path, layout: str, settings: Settings, sources: list[Source]) -> dict:
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
    h = hashlib.sha256(json_bytes(vars(settings)))
    for s in sources:
        h.update(json_bytes([s.rel, _size(s.path), s.id, s.captions]))
    return h.hexdigest()


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:  # a dangling symlink: skipped later, with its reason
        return None


def resume_state(out: Path, fresh: dict) -> tuple[dict, dict[str, str]]:
    """The state to continue from (the manifest on disk when it is for the same input and settings,
    else `fresh`), and {name: sha256} of the shards a valid manifest on disk recorded."""
    path = out / MANIFEST
    old = read_manifest(path)
    if old is None:
        return fresh, {}
    recorded = {s["name"]: s["sha256"] for s in old["shards"]}
    if any(old.get(k) != fresh[k] for k in ("version", "fingerprint", "settings")):
        print(f"fst shards: {path} is for other input or settings; rebuilding", file=sys.stderr)
        return fresh, recorded
    # Skips past `next` belong to a shard that was never written: they will be seen again.
    old["skipped"] = [s for s in old["skipped"] if s["index"] < old["next"]]
    return old, recorded


def read_manifest(path: Path) -> dict | None:
    """The manifest at `path`, checked; None where there is none (or a truncated one, which a
    killed build of an old fst could leave); an FstError where it is not one fst wrote."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FstError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise FstError(f"{path}: over {MAX_MANIFEST_BYTES:,} bytes, not a manifest fst wrote; move it away to rebuild")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    problem = manifest_problem(manifest)
    if problem:
        raise FstError(f"{path}: not a manifest fst wrote ({problem}); move it away to rebuild the shards")
    return manifest


def manifest_problem(m: Any) -> str | None:
    """What makes `m` something other than a manifest fst wrote, or None."""
    if not isinstance(m, dict) or m.get("version") != MANIFEST_VERSION:
        return f"not a version {MANIFEST_VERSION} manifest"
    missing = [k for k in KEYS if k not in m]
    if missing:
        return f"no {missing[0]!r}"
    try:
        settings = Settings(**m["settings"]) if isinstance(m["settings"], dict) else None
    except (FstError, TypeError) as e:
        return f"settings: {e}"
    if settings is None or not all(_count(m[k]) for k in ("files", "next", "samples")) or m["next"] > m["files"]:
        return "settings or counts are not what fst writes"
    if type(m["complete"]) is not bool or not isinstance(m["shards"], list) or not isinstance(m["skipped"], list):
        return "its lists are not what fst writes"
    end = 0
    for index, shard in enumerate(m["shards"]):
        problem = _shard_problem(shard, index, settings.prefix, end, m["next"])
        if problem:
            return problem
        end = shard["end"]
    for skip in m["skipped"]:
        if not (isinstance(skip, dict) and _count(skip.get("index")) and skip["index"] < m["files"]
                and isinstance(skip.get("path"), str) and isinstance(skip.get("reason"), str)):
            return "a skipped entry is not what fst writes"
    return None


def _shard_problem(shard: Any, index: int, prefix: str, start: int, next_: int) -> str | None:
    if not isinstance(shard, dict):
        return f"shard {index} is not a record"
    if shard.get("name") != shard_name(prefix, index):
        return f"shard {index} is named {str(shard.get('name'))[:80]!r}, not {shard_name(prefix, index)!r}"
    fields_ok = (shard.get("index") == index and _count(shard.get("count")) and isinstance(shard.get("sha256"), str)
                 and SHA256.fullmatch(shard["sha256"]) is not None and shard.get("start") == start
                 and _count(shard.get("end")) and start <= shard["end"] <= next_)
    return None if fields_ok else f"shard {index}'s record is not what fst writes"


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def save_manifest(out: Path, state: dict) -> None:
    state["samples"] = sum(s["count"] for s in state["shards"])
    state["skipped"].sort(key=lambda s: s["index"])
    write_atomic(out / MANIFEST, json_text(state, indent=1) + "\n")


def remove_stale(out: Path, prefix: str, state: dict, recorded: dict[str, str]) -> None:
    """Drop our own leftovers: temp files of killed runs (their names are fst's alone), and shards
    of an earlier, larger build that its valid manifest recorded with this very content."""
    keep = {s["name"] for s in state["shards"]}
    for name, digest in recorded.items():
        path = out / name
        if name not in keep and path.is_file() and not path.is_symlink() and sha256_file(path) == digest:
            path.unlink(missing_ok=True)
    shard = rf"{re.escape(prefix)}-\d{{6}}"
    manifest = Path(MANIFEST)
    temp = re.compile("^(" + "|".join([
        temp_name_pattern(shard, ".tar"), temp_name_pattern(re.escape(manifest.stem), manifest.suffix),
        rf"\.?{shard}\.tar\.tmp-\d+", rf"\.{re.escape(MANIFEST)}\.tmp-\d+",  # temp names of old fst versions
    ]) + ")$")
    for p in out.iterdir():
        if temp.match(p.name) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
