"""Files: written so that no reader, and no crash, ever sees half of one; their sha256; and fst's
cache folder (weights, sample shards)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path


def temp_name(out: Path) -> str:
    """The name `atomic_path` writes `out` under first: hidden, random, same suffix."""
    return f".{out.stem}.{secrets.token_hex(4)}.tmp{out.suffix}"


def temp_name_pattern(stem_pattern: str, suffix: str) -> str:
    """A regex for `temp_name`s of files whose stem matches `stem_pattern` (to clear what a killed
    writer left behind)."""
    return rf"\.{stem_pattern}\.[0-9a-f]{{8}}\.tmp{re.escape(suffix)}"


@contextlib.contextmanager
def atomic_path(out: Path) -> Iterator[Path]:
    """A temp path beside `out` (same suffix, so writers pick the right format) that replaces
    `out` on success and vanishes on failure: readers never see a half-written file. The writer
    creates the file, so it gets the usual permissions (mkstemp's would be 0600).

    The data is fsynced before the rename and the rename after it: without that, a power cut
    soon after can leave `out` renamed but empty on ext4/xfs."""
    out = Path(out)
    tmp = out.parent / temp_name(out)
    try:
        yield tmp
        fsync(tmp)
        os.replace(tmp, out)
        fsync(out.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_atomic(path: Path, data: str | bytes) -> None:
    """`data` (text as UTF-8) to `path` through `atomic_path`, making its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        # Some filesystems cannot fsync a folder (EINVAL); the file's own fsync still happened.
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """``$FST_CACHE``, default ``~/.cache/fst``: the VGG weights and the sample shards."""
    return Path(os.environ.get("FST_CACHE") or "~/.cache/fst").expanduser()
