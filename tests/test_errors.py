"""Bad input gives one line, not a traceback (and never a hang): real fst processes on real FIFOs,
dangling symlinks, read-only mounts and out-of-range arguments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fst.core.errors import FstError
from fst.data.datamodule import ShardDataModule
from fst.losses.criterion import PerceptualLoss
from fst.models.transformer import TransformerNet
from fst.training.module import StyleTransferModule, min_image_side

from nets import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "fst" / "assets" / "photos" / "cat.jpg"
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
# How the OS refuses a write in the `read_only` folder: a read-only mount for root, permissions otherwise.
READ_ONLY = "Read-only file system" if os.geteuid() == 0 else "Permission denied"


def fst(*args: object, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`fst ARGS` as a user runs it. A hang fails the test with TimeoutExpired, and kills the process
    group: a stuck decoding worker would outlive its parent otherwise."""
    cmd = [sys.executable, "-m", "fst.cli", *map(str, args)]
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def only_error(run: subprocess.CompletedProcess, command: str) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fst {command}: error: "), run.stderr
    return lines[0]


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """An empty folder nobody can write to. Permission bits do not stop root (CI runs as root),
    so as root it is a read-only tmpfs mount."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A regular file: nothing can be created below it."""
    path = tmp_path / "file.txt"
    path.write_text("a file, not a folder")
    return path


def add_odd_entry(folder: Path, kind: str) -> tuple[str, str]:
    """Put a FIFO or a dangling symlink named like a photo in `folder`; (its name, why it is skipped)."""
    if kind == "fifo":
        os.mkfifo(folder / "x.jpg")  # opening it for reading blocks until a writer comes: none will
        return "x.jpg", "not a regular file (a FIFO)"
    (folder / "gone.jpg").symlink_to(folder / "deleted.jpg")
    return "gone.jpg", "dangling symlink"


@pytest.fixture
def odd_inputs(tmp_path: Path) -> Path:
    """A folder with one good photo, a FIFO and a dangling symlink."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(PHOTO.read_bytes())
    add_odd_entry(folder, "fifo")
    add_odd_entry(folder, "dangling")
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    save_checkpoint(path)
    return path


# ---------------------------------------------------------------- FIFOs and dangling symlinks


@pytest.mark.parametrize(("kind", "workers"), [("fifo", 1), ("fifo", 2), ("dangling", 1)])
def test_shards_skip_a_fifo_or_a_dangling_symlink_without_hanging(kind: str, workers: int, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(PHOTO.read_bytes())
    name, reason = add_odd_entry(folder, kind)
    run = fst("shards", folder, "--out", tmp_path / "out", "--quiet", "--workers", workers, timeout=60)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert "1 samples in 1 shards" in run.stdout and "1 files skipped" in run.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["skipped"] == [{"index": 1, "path": name, "reason": reason}]


def test_stylize_refuses_a_fifo_by_name(odd_inputs: Path, tmp_path: Path, ckpt: Path) -> None:
    fifo = odd_inputs / "x.jpg"
    line = only_error(fst("stylize", fifo, "--model", ckpt, "--out", tmp_path / "o.jpg", "--quiet", timeout=60), "stylize")
    assert line == f"fst stylize: error: {fifo}: not a regular file (a FIFO)"
    assert not (tmp_path / "o.jpg").exists()


def test_stylize_skips_a_fifo_and_a_dangling_symlink_in_a_folder(odd_inputs: Path, tmp_path: Path, ckpt: Path) -> None:
    fifo = odd_inputs / "x.jpg"
    run = fst("stylize", odd_inputs, "--model", ckpt, "--out", tmp_path / "out", "--quiet")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"skipped {fifo}: not a regular file (a FIFO)" in run.stderr
    assert f"skipped {odd_inputs / 'gone.jpg'}: dangling symlink" in run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cat.jpg"]


# ---------------------------------------------------------------- outputs that cannot be written


@pytest.fixture
def places(tmp_path: Path, read_only: Path, a_file: Path) -> Iterator[dict[str, str]]:
    """Names for the parametrized paths and messages below; afterwards, checks nothing was written."""
    yield {"tmp": str(tmp_path), "ro": str(read_only), "file": str(a_file), "refused": READ_ONLY}
    assert not any(read_only.iterdir()) and a_file.read_text() == "a file, not a folder"


@pytest.mark.parametrize(("out", "message"), [
    ("{ro}", "{ro}: cannot write to shard folder ({refused})"),
    ("{ro}/new", "{ro}/new: cannot create shard folder ({refused})"),
    ("{file}/sub", "{file}/sub: cannot create shard folder (Not a directory)"),
    ("{file}", "{file}: cannot use as shard folder (not a folder)"),
])
def test_shards_out_not_writable(out: str, message: str, places: dict[str, str]) -> None:
    run = fst("shards", PHOTO.parent, "--out", out.format(**places), "--quiet")
    assert only_error(run, "shards") == "fst shards: error: " + message.format(**places)


@pytest.mark.parametrize(("out", "message"), [
    ("{tmp}/new/dir", "{tmp}/new/dir: folder {tmp}/new does not exist"),
    ("{ro}/dir", "{ro}/dir: cannot create output folder ({refused})"),
    ("{ro}", "{ro}: cannot write to output folder ({refused})"),
    ("{file}/sub", "{file}/sub: {file} is not a folder"),
    ("{ro}/one.png", "{ro}: cannot write to output folder ({refused})"),  # one input, a file output
])
def test_stylize_out_not_creatable_or_writable(out: str, message: str, places: dict[str, str], ckpt: Path) -> None:
    inputs = [PHOTO] if out.endswith(".png") else [PHOTO, PHOTO.with_name("dog.jpg")]
    run = fst("stylize", *inputs, "--model", ckpt, "--out", out.format(**places), "--quiet")
    assert only_error(run, "stylize") == "fst stylize: error: " + message.format(**places)
    assert not Path(places["tmp"], "new").exists()


@pytest.mark.parametrize(("command", "cache", "message"), [
    ("weights fetch", "{ro}", "{ro}: cannot write to FST_CACHE folder ({refused})"),
    ("weights fetch", "{file}/sub", "{file}/sub: cannot create FST_CACHE folder (Not a directory)"),
    ("shards --sample --quiet", "{ro}", "{ro}/sample_shards: cannot create shard folder ({refused})"),
    ("shards --sample --quiet", "{file}/sub", "{file}/sub/sample_shards: cannot create shard folder (Not a directory)"),
])
def test_unwritable_cache(command: str, cache: str, message: str, places: dict[str, str]) -> None:
    # FST_OFFLINE: were the check missing, fail after one pip download rather than a torchvision one too.
    run = fst(*command.split(), env={"FST_CACHE": cache.format(**places), "FST_OFFLINE": "1"})
    assert only_error(run, command.split()[0]) == f"fst {command.split()[0]}: error: " + message.format(**places)


# ---------------------------------------------------------------- argument domains


@pytest.mark.parametrize(("extra", "message"), [
    (["--model.lr", "-1"], "lr must be > 0, got -1.0"),
    (["--data.crop_size", "1"], "crop_size must be >= 5, got 1"),
    (["--data.crop_size", "7"], "crop_size must be >= 8 for vgg16"),  # the transformer takes 7, VGG16 does not
])
def test_fit_with_an_argument_out_of_range_is_one_line_and_creates_nothing(extra: list[str], message: str, tmp_path: Path) -> None:
    root = tmp_path / "run"
    run = fst("fit", "--config", TINY, "--trainer.default_root_dir", root, *extra, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("fst fit: error: ")]
    assert errors == [run.stderr.splitlines()[-1]] and message in errors[0], run.stderr[-3000:]
    assert not root.exists()  # no log folder, no checkpoint folder


NO_WEIGHTS = "/no/such/vgg.safetensors"  # reaching the weights would fail with another message


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": 0.0}, "lr must be > 0"),
    ({"lr": float("inf")}, "lr must be > 0"),
    ({"content_weight": -1.0}, "content_weight must be >= 0"),
    ({"style_weight": float("nan")}, "style_weight must be >= 0"),
    ({"tv_weight": -1e-4}, "tv_weight must be >= 0"),
    ({"style_layer_weights": [1.0, -1.0, 1.0, 1.0]}, "style_layer_weights must be >= 0"),
    ({"style_size": -1}, "style_size must be >= 0"),
    ({"style_size": 7}, "style_size must be >= 8"),
    ({"style_size": 15, "arch": "vgg19"}, "style_size must be >= 16"),
    ({"channels": 0}, "channels must be >= 1"),
    ({"n_residual": -1}, "n_residual must be >= 0"),
    ({"preview_images": -1}, "preview_images must be >= 0"),
])
def test_model_arguments_are_checked_before_any_weights_load(kwargs: dict, message: str) -> None:
    with pytest.raises(FstError, match=message):
        StyleTransferModule(vgg_weights=NO_WEIGHTS, **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"crop_size": 4}, "crop_size must be >= 5"),
    ({"val_size": 0}, "val_size must be >= 5"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"num_workers": -1}, "num_workers must be >= 0"),
    ({"shuffle_buffer": -1}, "shuffle_buffer must be >= 0"),
    ({"epoch_length": 0}, "epoch_length must be >= 1"),
    ({"val_count": -1}, "val_count must be >= 0"),
])
def test_data_arguments_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(FstError, match=message):
        ShardDataModule(train_shards="/no/such/shards", **kwargs)


def test_min_image_side_is_the_real_minimum(vgg16_weights) -> None:
    """The bound the checks use, tried: a training step's forward pass works at it and fails below."""
    side = min_image_side("vgg16", None, None)
    assert side == 8
    net, criterion = TransformerNet(8, 1), PerceptualLoss("gram", "vgg16", vgg_weights=vgg16_weights)
    criterion.add_style(torch.rand(1, 3, side, side))
    x = torch.rand(1, 3, side, side)
    assert torch.isfinite(criterion(net(x), x)["total"])
    x = torch.rand(1, 3, side - 1, side - 1)
    with pytest.raises(RuntimeError):
        criterion(net(x), x)
    net(torch.rand(1, 3, 5, 5))  # the transformer alone takes 5, not 4
    with pytest.raises(RuntimeError):
        net(torch.rand(1, 3, 4, 4))


@pytest.mark.parametrize("argv", [["shards", "--bogus"], ["compare", "--bogus"], ["weights", "--bogus"],
                                  ["losses", "--bogus"], ["export", "x.ckpt"], ["stylize", "--out", "o"]])
def test_every_commands_usage_error_is_one_line(argv, capsys):
    from fst.cli import main as cli

    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fst {argv[0]}: error: "), err
