"""Shard specs: what `train_shards` may name ("sample", a folder, a brace pattern, `pipe:` and
remote URLs, a comma-separated list), resolved to shard URLs before training starts."""

from __future__ import annotations

from pathlib import Path

import webdataset as wds

from fst.core.errors import FstError

SAMPLE = "sample"


def resolve_shards(spec: str) -> list[str]:
    """Shard URLs from `spec`: "sample", a directory (its *.tar), a brace pattern
    (`/data/coco-{000000..000099}.tar`), `pipe:`/`scheme://` URLs, or a comma-separated list of
    these. Local shards must exist (one clear error before training, not a worker traceback)."""
    if spec.strip() == SAMPLE:
        from fst.data.shards import sample_shards

        spec = str(sample_shards())
    urls: list[str] = []
    for item in _split_top_level(spec):
        path = Path(item).expanduser()
        if not _is_remote(item) and path.is_dir():
            found = sorted(str(p) for p in path.glob("*.tar"))
            if not found:
                raise FstError(f"no *.tar shards in {path}")
            urls += found
        else:
            urls += wds.shardlists.expand_urls(item if _is_remote(item) else str(path))
    if not urls:
        raise FstError(f"no shards in {spec!r}")
    missing = [u for u in urls if not _is_remote(u) and not Path(u).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FstError(f"missing shard {missing[0]}{more}")
    return urls


def _split_top_level(spec: str) -> list[str]:
    """Split on commas that are not inside a {a,b} brace group."""
    items, depth, current = [], 0, ""
    for ch in spec:
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    return [s.strip() for s in [*items, current] if s.strip()]


def _is_remote(url: str) -> bool:
    return url.startswith("pipe:") or "://" in url
