"""Every command refuses, before any work, an output that is one of its inputs (by identity: the same
name, a symlink, a hard link) and an output path that is a FIFO, a device or a folder; nothing is
replaced. A FIFO is never opened: each run has a deadline as a safety net (a blocked open ends the
test instead of hanging it); what the tests assert is the exit and the message."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from fst.data.manifest import MANIFEST, Settings
from fst.io.files import cache_dir

from crafted import char_device, one_line_error
from nets import random_photo_shards, save_checkpoint

SAFETY_S = 120  # only ever reached by a command that blocks, which is the bug itself


class Blocked(BaseException):
    """Raised in a command that blocked (on a FIFO) past the safety deadline."""


@contextlib.contextmanager
def deadline(seconds: int = SAFETY_S) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise Blocked(f"still running after {seconds} s: blocked")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with deadline():
        return one_line_error(argv, capsys)


def photo_file(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def special(kind: str, path: Path) -> Path:
    if kind == "fifo":
        os.mkfifo(path)
        return path
    return char_device(path)


def still(kind: str, path: Path) -> bool:
    mode = os.lstat(path).st_mode
    return stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)


MESSAGE = {"fifo": "is a FIFO, not a regular file", "device": "is a character device, not a regular file"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 frames, 32x32, of a pan over noise."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    noise = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12, options={"crf": "1"})
        stream.height, stream.width, stream.pix_fmt = 32, 32, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 12)
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(noise[:, 2 * i:2 * i + 32]), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


# --- an output that is an input -------------------------------------------------------------------


def test_flicker_json_naming_a_clip_is_refused(clip: Path, tmp_path: Path, capsys) -> None:
    """Seen: `fst flicker IN STYLIZED --json IN` replaced the clip with the JSON."""
    stylized = tmp_path / "stylized.mp4"
    shutil.copy(clip, stylized)
    (tmp_path / "link.json").symlink_to(stylized)
    before = {p: digest(p) for p in (clip, stylized)}
    for out, what in ((clip, clip), (tmp_path / "link.json", stylized)):
        err = refused(["flicker", str(clip), str(stylized), "--frames", "4", "--size", "32", "--json", str(out)], capsys)
        assert f"{out}: is an input of this command ({what}); choose another output" in err
    assert {p: digest(p) for p in before} == before
    assert os.path.islink(tmp_path / "link.json")


def test_weights_slice_never_replaces_the_cached_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Seen: `fst weights slice --out ~/.cache/fst/vgg16.safetensors` replaced the 58 MB VGG with a slice;
    every later `fst fit` then failed. Here the cache is a copy in a temp folder."""
    real = cache_dir() / "vgg16.safetensors"
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(real, cache / "vgg16.safetensors")
    (cache / "vgg19.safetensors").write_bytes(b"stands for the other arch's weights")
    monkeypatch.setenv("FST_CACHE", str(cache))
    os.link(cache / "vgg16.safetensors", tmp_path / "hard.safetensors")
    (tmp_path / "soft.safetensors").symlink_to(cache / "vgg16.safetensors")
    before = {p.name: digest(p) for p in cache.iterdir()}
    for name in ("cache/vgg16.safetensors", "hard.safetensors", "soft.safetensors", "cache/vgg19.safetensors"):
        err = refused(["weights", "slice", "--up-to", "relu1_2", "--out", str(tmp_path / name)], capsys)
        assert f"{tmp_path / name}: is an input of this command (" in err
    assert {p.name: digest(p) for p in cache.iterdir()} == before
    assert (tmp_path / "hard.safetensors").stat().st_ino == (cache / "vgg16.safetensors").stat().st_ino
    assert "vgg16 up to relu1_2" in _ok(["weights", "slice", "--up-to", "relu1_2", "--out", str(tmp_path / "s.safetensors")],
                                        capsys)


def _ok(argv: list[str], capsys) -> str:
    from fst.cli import main as cli

    with deadline():
        assert cli(argv) == 0
    return capsys.readouterr().out


def test_export_out_a_hard_link_of_the_checkpoint_is_refused(ckpt: Path, tmp_path: Path, capsys) -> None:
    os.link(ckpt, tmp_path / "m.pt")
    before = digest(ckpt)
    err = refused(["export", str(ckpt), "--out", str(tmp_path / "m.pt")], capsys)
    assert f"{tmp_path / 'm.pt'}: is an input of this command ({ckpt}); choose another output" in err
    assert digest(ckpt) == before and (tmp_path / "m.pt").stat().st_ino == ckpt.stat().st_ino


def test_stylize_out_a_hard_link_of_an_input_or_of_the_model_is_refused(ckpt: Path, tmp_path: Path, capsys) -> None:
    """Seen: `--out b.png`, a hard link of the input a.png, was replaced (the names differ)."""
    photo = photo_file(tmp_path / "a.png")
    os.link(photo, tmp_path / "b.png")
    os.link(ckpt, tmp_path / "model.png")
    (tmp_path / "out").mkdir()
    os.link(photo, tmp_path / "out" / "a.png")  # a folder output whose planned file is the input
    cases = [(tmp_path / "b.png", photo, photo), (tmp_path / "model.png", ckpt, photo), (tmp_path / "out", photo, photo)]
    for out, what, src in cases:
        err = refused(["stylize", str(src), "--model", str(ckpt), "--out", str(out), "--device", "cpu"], capsys)
        assert "is an input of this command (" in err and f"({what})" in err
    assert (tmp_path / "b.png").stat().st_nlink == 3 and (tmp_path / "model.png").stat().st_ino == ckpt.stat().st_ino


def test_compare_refuses_an_input_among_its_report_files_or_in_a_run_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "study"
    (out / "runs" / "painting__gram").mkdir(parents=True)
    photos = tmp_path / "photos"
    photos.mkdir()
    photo_file(photos / "a.jpg")
    grid = photo_file(out / "grid_the_scream.jpg")  # a report file fst compare writes
    os.link(grid, photos / "b.jpg")
    painting = photo_file(out / "runs" / "painting__gram" / "painting.jpg")  # its own run's folder
    base = ["compare", "--out", str(out), "--losses", "gram", "--steps", "1", "--eval-count", "2"]
    err = refused([*base, "--styles", "sample:the_scream", "--eval-photos", str(photos)], capsys)
    assert f"{grid}: is an input of this command ({photos / 'b.jpg'})" in err
    (photos / "b.jpg").unlink()
    err = refused([*base, "--styles", str(painting), "--eval-photos", str(photos)], capsys)
    assert f"{painting}: an input of this command, is inside {painting.parent}" in err
    assert painting.is_file() and grid.is_file()


# --- an output that is a FIFO or a device -------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_export_out_a_fifo_or_a_device_is_refused_and_kept(kind: str, ckpt: Path, tmp_path: Path, capsys) -> None:
    """Seen: as root `fst export ... --out /dev/null` replaced the device with a regular file; an --out
    that is a FIFO blocked until a signal."""
    out = special(kind, tmp_path / "m.pt")
    err = refused(["export", str(ckpt), "--out", str(out)], capsys)
    assert f"{out}: {MESSAGE[kind]}; choose another output" in err
    assert still(kind, out) and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_every_command_refuses_a_fifo_or_a_device_as_an_output(kind: str, ckpt: Path, clip: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    photo = photo_file(tmp_path / "a.png")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "vgg16.safetensors").symlink_to(cache_dir() / "vgg16.safetensors")  # read only
    monkeypatch.setenv("FST_CACHE", str(cache))
    commands = {
        "o.png": ["stylize", str(photo), "--model", str(ckpt), "--device", "cpu", "--out", "{out}"],
        "f.json": ["flicker", str(clip), str(clip), "--frames", "4", "--size", "32", "--json", "{out}"],
        "s.safetensors": ["weights", "slice", "--up-to", "relu1_2", "--out", "{out}"],
        "cache/vgg19.safetensors": ["weights", "fetch", "--arch", "vgg19", "--from-archive", str(photo)],
    }
    for name, argv in commands.items():
        out = special(kind, tmp_path / name)
        err = refused([a.replace("{out}", str(out)) for a in argv], capsys)
        assert f"{out}: {MESSAGE[kind]}; choose another output" in err
        assert still(kind, out)


@pytest.mark.parametrize("name", [MANIFEST, ".lock", "t-000001.tar"])
def test_shards_refuse_a_fifo_in_the_shard_folder(name: str, tmp_path: Path, capsys) -> None:
    """A FIFO named manifest.json (read on a rerun) or .lock (opened to lock) blocked `fst shards`."""
    shards = random_photo_shards(tmp_path, [(40, 40)] * 4, Settings("t", 2, 512, 90))
    (shards / name).unlink(missing_ok=True)
    os.mkfifo(shards / name)
    err = refused(["shards", str(tmp_path / "photos"), "--out", str(shards), "--prefix", "t", "--shard-size", "2",
                   "--max-size", "512", "--quality", "90", "--workers", "1", "--quiet"], capsys)
    assert f"{shards / name}: is a FIFO, not a regular file; choose another output" in err
    assert stat.S_ISFIFO(os.lstat(shards / name).st_mode)


def test_shards_never_truncate_what_a_lock_symlink_points_to(tmp_path: Path, capsys) -> None:
    shards = random_photo_shards(tmp_path, [(40, 40)] * 4, Settings("t", 2, 512, 90))
    victim = tmp_path / "notes.txt"
    victim.write_text("keep")
    (shards / ".lock").unlink()
    (shards / ".lock").symlink_to(victim)
    _ok(["shards", str(tmp_path / "photos"), "--out", str(shards), "--prefix", "t", "--shard-size", "2",
         "--max-size", "512", "--quality", "90", "--workers", "1", "--quiet"], capsys)
    assert victim.read_text() == "keep"
