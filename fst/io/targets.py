"""Output paths, checked before any work: an output is never one of its command's inputs, and fst
replaces nothing but a regular file.

A file is known by its identity (device and inode), not its name: an output that is the input
through a symlink, a hard link or another spelling of its folder is the same file, and so refused.
An existing output that is a device, a FIFO, a socket or a folder is refused from its stat alone,
never opened: opening a FIFO waits for a peer forever, and renaming a temp file over /dev/null (as
root) replaces the device with a regular file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from fst.core.errors import FstError

SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                 (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def special_kind(mode: int) -> str | None:
    """What a stat mode names when it is not a regular file ("a FIFO", "a folder", ...), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in SPECIAL_KINDS if test(mode)), "a special file")


def _stat(path: Path) -> os.stat_result | None:
    """`path`'s stat (symlinks followed), None where nothing is there to replace."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # absent, or a dangling symlink: nothing to lose
        return None
    except OSError as e:  # a symlink loop, a folder we may not search
        raise FstError(f"{path}: cannot use as an output ({e.strerror or e})") from None


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file `path` names, None where there is none."""
    st = _stat(path)
    return None if st is None else (st.st_dev, st.st_ino)


def check_replaceable(out: Path) -> None:
    """Refuse an existing `out` that is not a regular file: only a regular file is ever replaced."""
    st = _stat(out)
    kind = None if st is None else special_kind(st.st_mode)
    if kind is not None:
        raise FstError(f"{out}: is {kind}, not a regular file; choose another output")


def check_outputs(outputs: Iterable[Path], inputs: Iterable[Path | None]) -> None:
    """Refuse, before any work, outputs that `check_replaceable` refuses or that are one of `inputs`
    (by identity). Only outputs that exist can be an input, so inputs are stat'ed only then."""
    existing: dict[tuple[int, int], Path] = {}
    for out in outputs:
        check_replaceable(out)
        ident = identity(out)
        if ident is not None:
            existing.setdefault(ident, out)
    if not existing:
        return
    for path in inputs:
        try:
            ident = identity(path) if path is not None else None
        except FstError:
            continue  # an input that cannot be stat'ed is reported by its reader
        if ident in existing:
            raise FstError(f"{existing[ident]}: is an input of this command ({path}); choose another output")


def check_outside(folders: Iterable[Path], inputs: Iterable[Path | None], why: str) -> None:
    """Refuse an input that lies in one of `folders`, which the command deletes or replaces whole."""
    owned = {ident: folder for folder in folders if (ident := identity(folder)) is not None}
    if not owned:
        return
    for path in inputs:
        if path is None:
            continue
        for parent in Path(os.path.realpath(path)).parents:
            ident = identity(parent)
            if ident in owned:
                raise FstError(f"{path}: an input of this command, is inside {owned[ident]}, {why}; "
                               "move it elsewhere")
