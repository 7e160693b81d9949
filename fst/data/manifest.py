"""A shard folder's `manifest.json`: the input and settings it was built from, each shard with its
input range and sha256, each skipped file with its reason. A rerun resumes from it."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from fst.data.shard_writer import json_bytes
from fst.data.sources import Source
from fst.io.files import temp_name_pattern, write_atomic

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Settings:
    prefix: str
    shard_size: int
    max_size: int
    quality: int


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


def resume_state(out: Path, fresh: dict) -> dict:
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


def save_manifest(out: Path, state: dict) -> None:
    state["samples"] = sum(s["count"] for s in state["shards"])
    state["skipped"].sort(key=lambda s: s["index"])
    write_atomic(out / MANIFEST, json.dumps(state, indent=1, ensure_ascii=False) + "\n")


def remove_stale(out: Path, prefix: str, state: dict) -> None:
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
