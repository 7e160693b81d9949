"""Outputs checked by identity and kind (fst.io.targets), and the shared write path that refuses to
replace anything but a regular file (fst.io.files)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crafted import char_device

from fst.core.errors import FstError
from fst.io.files import write_atomic, writing
from fst.io.targets import check_outputs, check_outside


def test_an_input_through_a_hard_link_a_symlink_or_a_symlinked_folder_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in.jpg"
    src.write_bytes(b"photo")
    os.link(src, tmp_path / "hard.jpg")
    (tmp_path / "soft.jpg").symlink_to(src)
    (tmp_path / "alias").symlink_to(tmp_path)
    for out in (src, tmp_path / "hard.jpg", tmp_path / "soft.jpg", tmp_path / "alias" / "in.jpg"):
        with pytest.raises(FstError, match=rf"^{out}: is an input of this command \({src}\); choose another output$"):
            check_outputs([tmp_path / "new.jpg", out], [tmp_path / "missing.jpg", None, src])
    # A symlink as the input, the file itself as the output: the same file too.
    with pytest.raises(FstError, match="is an input of this command"):
        check_outputs([src], [tmp_path / "soft.jpg"])
    check_outputs([tmp_path / "other.jpg", tmp_path / "new.jpg"], [src])  # a copy elsewhere is fine
    (tmp_path / "copy.jpg").write_bytes(b"photo")
    check_outputs([tmp_path / "copy.jpg"], [src])


def test_an_output_that_is_no_regular_file_is_refused_unopened(tmp_path: Path) -> None:
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)  # opening it would wait for a reader forever
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "to_fifo.json").symlink_to(fifo)
    cases = {fifo: "a FIFO", tmp_path / "dir.png": "a folder", tmp_path / "to_fifo.json": "a FIFO"}
    for out, kind in cases.items():
        with pytest.raises(FstError, match=rf"^{out}: is {kind}, not a regular file; choose another output$"):
            check_outputs([out], [])
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    (tmp_path / "dangling.json").symlink_to(tmp_path / "gone")
    check_outputs([tmp_path / "dangling.json"], [])  # nothing there to lose


def test_the_shared_write_path_never_replaces_a_fifo_a_device_or_a_folder(tmp_path: Path) -> None:
    """Seen: `fst export --out /dev/null` as root renamed a regular file over the device."""
    fifo, device, folder = tmp_path / "f.pt", char_device(tmp_path / "null.pt"), tmp_path / "d.pt"
    os.mkfifo(fifo)
    folder.mkdir()
    for path, test in ((fifo, stat.S_ISFIFO), (device, stat.S_ISCHR), (folder, stat.S_ISDIR)):
        with pytest.raises(FstError, match=f"^{path}: is a .*, not a regular file"):
            with writing(path) as tmp:
                tmp.write_bytes(b"data")
        with pytest.raises(FstError, match="not a regular file"):
            write_atomic(path, "data")
        assert test(os.stat(path).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pt", "f.pt", "null.pt"]  # no temp file left
    write_atomic(tmp_path / "ok.pt", "data")  # a regular file is still replaced
    write_atomic(tmp_path / "ok.pt", "more")
    assert (tmp_path / "ok.pt").read_text() == "more"


def test_an_input_inside_a_folder_the_command_replaces_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "painting.jpg").write_bytes(b"x")
    (tmp_path / "link").symlink_to(run)
    with pytest.raises(FstError, match=rf"^{tmp_path / 'link' / 'painting.jpg'}: an input of this command, is inside "
                                       rf"{run}, a replaced folder; move it elsewhere$"):
        check_outside([tmp_path / "runs" / "b", run], [tmp_path / "link" / "painting.jpg"], "a replaced folder")
    check_outside([run], [tmp_path / "elsewhere.jpg", None], "a replaced folder")
