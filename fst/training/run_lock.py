"""One training run per checkpoint folder at a time.

Two `fst fit` writing into one folder both "succeeded", their checkpoints mixed (last.ckpt from one,
last-v1.ckpt from the other). A run therefore holds an exclusive flock on a lock file beside its
checkpoint folder (``<parent>/.<folder>.lock``, so the folder itself stays empty for Lightning's
"folder not empty" check) from before anything is written until it ends; a second run refuses with
one line naming the folder and the holder's pid. The kernel drops the lock when its holder ends in
any way, SIGKILL included: a lock is never stale. The file stays (removing it would let a third run
lock a new file while the second still holds the old one).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from fst.core.errors import FstError
from fst.io.targets import special_kind


def lock_file(folder: Path) -> Path:
    folder = Path(folder).expanduser().absolute()
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def held(folder: Path) -> Iterator[None]:
    """Inside: this process alone trains into `folder`."""
    path = lock_file(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Never through a symlink (the pid written below would replace what it points to), never
        # waiting on a FIFO: the lock is fst's own regular file or nothing.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        raise FstError(f"{folder}: cannot create the run lock {path} ({e.strerror or e})") from None
    try:
        kind = special_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise FstError(f"{folder}: the run lock {path} is {kind}, not a regular file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FstError(f"{folder}: another fst fit (pid {holder}) is training into this folder; "
                           "wait for it to end or choose another --checkpoint.dirpath") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
