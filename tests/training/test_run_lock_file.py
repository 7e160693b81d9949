"""The run lock file is fst's own regular file: a symlink or a FIFO in its place is refused in one
line, and what a symlink points to is never written (fst.training.run_lock)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fst.core.errors import FstError
from fst.training.run_lock import held, lock_file


def test_a_symlink_in_place_of_the_lock_is_refused_and_its_target_kept(tmp_path: Path) -> None:
    """Seen: the lock's pid was written over the file a `.ckpt.lock` symlink pointed to."""
    victim = tmp_path / "notes.txt"
    victim.write_text("keep these notes")
    lock_file(tmp_path / "ckpt").symlink_to(victim)
    with pytest.raises(FstError, match=r"ckpt: cannot create the run lock .*\.ckpt\.lock \(Too many levels of symbolic links\)"):
        with held(tmp_path / "ckpt"):
            pass
    assert victim.read_text() == "keep these notes"


def test_a_fifo_in_place_of_the_lock_is_refused(tmp_path: Path) -> None:
    os.mkfifo(lock_file(tmp_path / "ckpt"))
    with pytest.raises(FstError, match=r"ckpt: the run lock .*\.ckpt\.lock is a FIFO, not a regular file; remove it"):
        with held(tmp_path / "ckpt"):
            pass
    assert stat.S_ISFIFO(os.lstat(lock_file(tmp_path / "ckpt")).st_mode)


def test_the_lock_is_still_taken_and_records_its_holder(tmp_path: Path) -> None:
    with held(tmp_path / "ckpt"):
        assert lock_file(tmp_path / "ckpt").read_text() == f"{os.getpid()}\n"
