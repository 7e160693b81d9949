"""Commands that fail leave nothing behind and say why in one line: a full disk under `fst export`
and `fst shards`, an export killed before its rename, a `fst fit` that cannot start (missing
checkpoint, painting, shards; a config that is not UTF-8 text; a setting Lightning refuses)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fst.artefacts.exported import SUFFIXES
from fst.cli import main as cli

from crafted import one_line_error
from disks import tmpfs
from nets import save_checkpoint
from runs import ROOT, TINY, run_args

PHOTOS = ROOT / "fst" / "assets" / "photos"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def test_export_into_a_full_disk_is_one_line_and_leaves_no_file(ckpt: Path, tmp_path: Path, capsys) -> None:
    """Seen: an `OSError: [Errno 28] No space left on device` traceback."""
    with tmpfs(tmp_path / "disk", "100k") as disk:
        err = one_line_error(["export", str(ckpt), "--out", str(disk / "m.pt")], capsys)
        assert f"{disk / 'm.pt'}: cannot write: No space left on device" in err
        assert list(disk.iterdir()) == []


def test_shards_into_a_full_disk_is_one_line_and_leaves_no_partial_shard(tmp_path: Path, capsys) -> None:
    """Seen: three chained ENOSPC tracebacks."""
    shutil.copytree(PHOTOS, tmp_path / "in", ignore=lambda _, names: names[4:])
    with tmpfs(tmp_path / "disk", "200k") as disk:
        err = one_line_error(["shards", str(tmp_path / "in"), "--out", str(disk / "sh"), "--shard-size", "2",
                              "--max-size", "0", "--quiet"], capsys)
        assert "cannot write: No space left on device" in err
        names = sorted(p.name for p in (disk / "sh").iterdir())
        assert all(n in (".lock", "manifest.json") or n.startswith("shard-") and n.endswith(".tar") for n in names), names
        assert not [n for n in names if ".tmp" in n]


KILLED_BEFORE_RENAME = """
import os, signal, sys
import fst.io.files
fst.io.files.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # the worst moment: all written, not renamed
from fst.artefacts.export import export_model
export_model(sys.argv[1], sys.argv[2], sys.argv[3])
"""


@pytest.mark.parametrize("fmt", ["torchscript", "export", "onnx"])
def test_a_rerun_clears_what_a_killed_export_left(fmt: str, ckpt: Path, tmp_path: Path) -> None:
    """Seen: `.NAME.*.tmp.pt` (and .tmp.onnx, .tmp.pt2) left by kill -9, never cleaned."""
    out = tmp_path / f"model{SUFFIXES[fmt]}"
    killed = subprocess.run([sys.executable, "-c", KILLED_BEFORE_RENAME, str(ckpt), str(out), fmt], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".model.")]
    assert len(left) == 1 and left[0].endswith(f".tmp{SUFFIXES[fmt]}"), left
    other = tmp_path / f".other.0123abcd.tmp{SUFFIXES[fmt]}"  # another output's temp: not this export's to clear
    other.write_bytes(b"x")
    assert cli(["export", str(ckpt), "--out", str(out), "--format", fmt]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, other.name])


def fit_args(tmp_path: Path, *extra: str) -> list[str]:
    return run_args(tmp_path / "run", *extra)


def fit_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """`fst fit` exits 2 with one error line (after its line on the precision chosen); returns it."""
    assert cli(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("fst fit: error: ") and all(line.startswith("fst") for line in lines), lines
    return lines[-1]


@pytest.mark.parametrize(("extra", "message"), [
    (["--ckpt_path", "/no/such.ckpt"], "/no/such.ckpt: checkpoint not found"),
    (["--model.style_image", "/no/painting.jpg"], "/no/painting.jpg: style image not found"),
    (["--data.train_shards", "/no/shards"], "missing shard /no/shards"),
    (["--data.val_photos", "/no/photos"], "val_photos folder /no/photos does not exist"),
    (["--trainer.max_steps", "-5"], "`max_steps` must be a non-negative integer or -1"),
])
def test_a_fit_that_cannot_start_creates_no_folder(extra: list[str], message: str, tmp_path: Path, capsys) -> None:
    """Seen: tensorboard/version_N, config.yaml and a lock file created first, one more per retry;
    `--trainer.max_steps -5` a MisconfigurationException traceback."""
    for _ in range(2):  # a retry adds nothing either
        assert message in fit_refused(fit_args(tmp_path, *extra), capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_config_that_is_not_utf8_text_is_one_line(tmp_path: Path, capsys) -> None:
    """Seen: a UnicodeDecodeError traceback naming no file."""
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_text(Path(TINY).read_text(), encoding="utf-16")
    err = one_line_error(["fit", "--config", str(utf16), "--trainer.default_root_dir", str(tmp_path / "run")], capsys)
    assert f"{utf16}: not UTF-8 text at byte 0" in err
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (2 << 20))
    assert "over 1 MiB" in one_line_error(["fit", f"--config={huge}"], capsys)
    err = one_line_error(["compare", "--out", str(tmp_path / "study"), "--baselines", str(utf16)], capsys)
    assert f"{utf16}: not UTF-8 text" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.yaml", "utf16.yaml"]
