"""An output folder, made and proven writable before any work: a read-only or uncreatable
destination is then one line naming the folder, not a traceback after the work is done."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fst.core.errors import FstError


def writable_dir(path: Path, what: str = "output folder") -> Path:
    """`path`, created with its parents if missing, once a file could really be written in it."""
    if path.exists() and not path.is_dir():
        raise FstError(f"{path}: cannot use as {what} (not a folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FstError(f"{path}: cannot create {what} ({e.strerror or e})") from None
    try:
        # A real write, not os.access: permission bits do not stop root, and say nothing of quotas.
        # TemporaryFile leaves no name behind, not even if we are killed.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise FstError(f"{path}: cannot write to {what} ({e.strerror or e})") from None
    return path
