"""Shard specs: what `train_shards` may name ("sample", a folder, a brace pattern, `pipe:` and
remote URLs, a comma-separated list), resolved to shard URLs before training starts.

A URL scheme is honoured only where the user typed it as the spec. Every local shard (a file named
in the spec, found by a brace pattern or listed in a folder) becomes an absolute path: a file named
`pipe:touch x;.tar` in the folder being read (`train_shards: .`) is then `/…/pipe:touch x;.tar`,
a name that neither `fst.data.stages` nor webdataset reads as a scheme, never a command."""

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
        if _is_remote(item):
            urls += wds.shardlists.expand_urls(item)
            continue
        path = Path(item).expanduser().absolute()
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.tar"))
            if not found:
                raise FstError(f"no *.tar shards in {path}")
            urls += found
        else:
            urls += [str(Path(u).absolute()) for u in wds.shardlists.expand_urls(str(path))]
    if not urls:
        raise FstError(f"no shards in {spec!r}")
    missing = [u for u in urls if is_local(u) and not Path(u).is_file()]
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


def _is_remote(item: str) -> bool:
    """Whether a spec item the user typed is a URL: `pipe:` or `scheme://`."""
    return item.startswith("pipe:") or "://" in item


def is_local(url: str) -> bool:
    """Whether a resolved shard URL is a local file: `resolve_shards` makes each one absolute."""
    return url.startswith("/")
