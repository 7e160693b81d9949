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

from fst.core.errors import FstError
from fst.io.targets import check_replaceable

NAME_MAX = 255  # bytes in one file name on Linux file systems
TEMP_EXTRA = len(".12345678.tmp") + 1  # what `temp_name` adds to a name


def temp_stem(out: Path) -> str:
    """`out`'s stem, cut (at a character) so that its temp name still fits in NAME_MAX bytes. Names
    are bytes to the OS: one that is not UTF-8 keeps its bytes (os.fsencode, not str.encode)."""
    stem = os.fsencode(out.stem)
    cut = len(stem[:NAME_MAX - TEMP_EXTRA - len(os.fsencode(out.suffix))])
    while 0 < cut < len(stem) and stem[cut] & 0xC0 == 0x80:  # not inside a UTF-8 character
        cut -= 1
    return os.fsdecode(stem[:cut])


def temp_name(out: Path) -> str:
    """The name `atomic_path` writes `out` under first: hidden, random, same suffix."""
    return f".{temp_stem(out)}.{secrets.token_hex(4)}.tmp{out.suffix}"


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
    soon after can leave `out` renamed but empty on ext4/xfs.

    An existing `out` that is not a regular file (a device, a FIFO, a folder) is refused first: the
    rename would replace it (`/dev/null` as root), and nothing else must ever open it."""
    out = Path(out)
    check_replaceable(out)
    tmp = out.parent / temp_name(out)
    try:
        yield tmp
        fsync(tmp)
        os.replace(tmp, out)
        fsync(out.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


@contextlib.contextmanager
def writing(out: Path) -> Iterator[Path]:
    """`atomic_path`, where a failed write (a full disk, a file-size limit, a folder that went
    read-only) is one FstError naming `out`; nothing is left under either name."""
    try:
        with atomic_path(out) as tmp:
            yield tmp
    except OSError as e:
        raise FstError(f"{out}: cannot write: {e.strerror or e}") from None


def write_atomic(path: Path, data: str | bytes) -> None:
    """`data` (text as UTF-8) to `path` through `writing`, making its folder if needed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FstError(f"{path.parent}: cannot create folder: {e.strerror or e}") from None
    with writing(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def remove_temps(out: Path) -> None:
    """Delete the temp files a killed writer of `out` left beside it: names only `atomic_path`
    gives (hidden, `out`'s stem, 8 random hex digits, `.tmp`), regular files only."""
    pattern = re.compile(temp_name_pattern(re.escape(temp_stem(out)), out.suffix))
    for path in out.parent.iterdir():
        if pattern.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)


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
