"""fst.io.files: atomic writes under any name the file system takes, and a killed writer's leftovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fst.core.errors import FstError
from fst.io.files import NAME_MAX, remove_temps, temp_name, writing


@pytest.mark.parametrize("stem", ["a" * 250, "é" * 124, "photo"])
def test_a_name_at_the_file_systems_limit_is_written_atomically(stem: str, tmp_path: Path) -> None:
    """Seen: an input named with ~242 bytes or more could not be stylised: its temp name (14 bytes
    longer) went past the 255 bytes of a file name."""
    out = tmp_path / f"{stem}.png"
    assert len(out.name.encode()) <= NAME_MAX and len(temp_name(out).encode()) <= NAME_MAX
    with writing(out) as tmp:
        tmp.write_bytes(b"whole")
    assert [p.name for p in tmp_path.iterdir()] == [out.name] and out.read_bytes() == b"whole"


def test_a_failed_write_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "gone" / "x.bin"  # its folder does not exist: the write fails
    with pytest.raises(FstError, match=r"x\.bin: cannot write: No such file or directory"):
        with writing(out) as tmp:
            tmp.write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []


def test_remove_temps_clears_only_this_outputs_temp_files(tmp_path: Path) -> None:
    out = tmp_path / ("b" * 250 + ".pt")
    left = tmp_path / temp_name(out)
    left.write_bytes(b"killed")
    others = [tmp_path / temp_name(tmp_path / "other.pt"), tmp_path / f".{out.stem[:10]}.notatemp.pt"]
    for other in others:
        other.write_bytes(b"keep")
    (tmp_path / "link.tmp.pt").symlink_to(left)
    remove_temps(out)
    assert not left.exists() and all(o.exists() for o in others)
