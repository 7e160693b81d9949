"""Never hang, never half-write: real faults against real `fst` processes.

Unreadable shards, stop signals (SIGTERM, SIGINT, SIGKILL), a stalled `pipe:` data source, a full
disk (a small tmpfs, and RLIMIT_FSIZE as a root-free second fault), and two runs into one folder.
Every wait is bounded, and every process a test starts is killed when the test ends, pass or fail.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fst.artefacts.checkpoint import load_checkpoint
from fst.cli import main as cli
from fst.core import signals
from fst.core.errors import FstError
from fst.data import pipes
from fst.data.batches import MainProcess
from fst.data.datamodule import ShardDataModule
from fst.data.manifest import Settings
from fst.data.shards import sample_shards

from disks import tmpfs
from nets import random_photo_shards, save_checkpoint
from processes import STOP_WITHIN_S, alive, children, finish, fst_process, one_error_line, wait_until
from runs import ROOT, run_args

SLOW = ["--trainer.callbacks+=fst_test_callbacks.SlowDown", "--trainer.callbacks.seconds", "0.3"]


# ---------------------------------------------------------------- helpers


def wait_for_checkpoint(proc: subprocess.Popen, path: Path, timeout: float = 240) -> None:
    wait_until(lambda: path.exists() or proc.poll() is not None, timeout, f"{path.name}")
    assert path.exists(), proc.communicate(timeout=10)[0][-3000:]


def newest_step(folder: Path) -> int:
    """The highest step of the periodic checkpoints (stepNNNNNNN.ckpt) in `folder`; -1 if none."""
    steps = [int(p.stem[4:]) for p in folder.glob("step*.ckpt") if p.stem[4:].isdigit()]
    return max(steps, default=-1)


# ---------------------------------------------------------------- unreadable shards


@pytest.fixture(scope="module")
def bad_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three shards none of which holds a readable sample: random bytes, a tar cut inside its
    first member, an empty tar."""
    folder = tmp_path_factory.mktemp("bad")
    (folder / "random-000000.tar").write_bytes(np.random.default_rng(0).bytes(20_000))
    good = sorted(sample_shards().glob("*.tar"))[0].read_bytes()
    (folder / "truncated-000000.tar").write_bytes(good[:2000])
    with tarfile.open(folder / "empty-000000.tar", "w"):
        pass
    return folder


@pytest.fixture(scope="module")
def good_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_photo_shards(tmp_path_factory.mktemp("good"), [(40, 48)] * 8, Settings("g", 4, 512, 90))


@pytest.mark.slow
@pytest.mark.parametrize("resampled,workers", [("true", "0"), ("true", "2"), ("false", "0"), ("false", "2")])
def test_unreadable_shards_stop_the_run_with_one_line(tmp_path: Path, bad_shards: Path, resampled: str, workers: str) -> None:
    args = run_args(tmp_path, "--data.train_shards", str(bad_shards), "--data.resampled", resampled,
                    "--data.num_workers", workers)
    with fst_process(args) as proc:
        _, out = finish(proc, timeout=120)
    line = one_error_line(out)
    assert proc.returncode == 2
    assert line.startswith("fst fit: error: no readable sample in ")
    for name in ("random-000000.tar", "truncated-000000.tar", "empty-000000.tar"):
        assert name in line
    assert not list((tmp_path / "ckpt").glob("*.ckpt"))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_few_unreadable_shards_among_good_ones_are_skipped(good_shards: Path, bad_shards: Path, workers: int) -> None:
    """The bound on tries is not a bound on errors: a resampled stream drawing bad shards half of
    the time keeps training."""
    urls = ",".join([str(good_shards), str(bad_shards / "random-000000.tar"), str(bad_shards / "empty-000000.tar")])
    dm = ShardDataModule(urls, val_photos=None, crop_size=16, batch_size=2, num_workers=workers,
                         resampled=True, epoch_length=30)
    dm.setup("fit")
    with pytest.warns(UserWarning, match="skipping unreadable shard data") if workers == 0 else contextlib.nullcontext():
        batches = list(dm.train_dataloader())
    assert len(batches) == 30 and all(b["image"].shape == (2, 3, 16, 16) for b in batches)


def test_undecodable_samples_only_stop_the_loader(tmp_path: Path) -> None:
    """A readable tar whose every image is broken: the loader stops after MAX_TRIES samples in a
    row, naming the shard, instead of skipping on (forever, when resampled)."""
    import webdataset as wds

    shard = tmp_path / "broken-000000.tar"
    with wds.TarWriter(str(shard), encoder=False) as sink:
        for i in range(120):
            sink.write({"__key__": f"{i:04d}", "jpg": b"not a jpeg"})
    # Finite, so that a loader without the bound ends (with no batch) instead of hanging the test.
    dm = ShardDataModule(str(shard), val_photos=None, crop_size=16, batch_size=2, num_workers=0, shuffle_buffer=0)
    dm.setup("fit")
    with pytest.warns(UserWarning, match="skipping bad sample"), pytest.raises(FstError, match="no decodable image in 100 samples in a row from .*broken-000000.tar"):
        list(dm.train_dataloader())


# ---------------------------------------------------------------- stop signals


@pytest.mark.slow
@pytest.mark.parametrize("signame,workers", [("SIGTERM", "0"), ("SIGINT", "2")])
def test_stop_signal_saves_last_checkpoint_and_resume_continues(tmp_path: Path, signame: str, workers: str) -> None:
    signum = getattr(signal, signame)
    ckpt = tmp_path / "ckpt"
    args = run_args(tmp_path, "--trainer.max_steps", "200", "--trainer.val_check_interval", "1000",
                    "--data.num_workers", workers, *SLOW)
    with fst_process(args) as proc:
        wait_for_checkpoint(proc, ckpt / "step0000004.ckpt")
        workers_before = children(proc.pid)
        proc.send_signal(signum)
        _, out = finish(proc, timeout=STOP_WITHIN_S)
        assert not alive(workers_before), "loader workers outlived the main process"
    line = one_error_line(out)
    assert proc.returncode == 128 + signum, out[-3000:]
    last = load_checkpoint(ckpt / "last.ckpt")
    step = last["global_step"]
    assert step >= 4
    assert line == (f"fst fit: interrupted by {signame}; saved {ckpt / 'last.ckpt'} at step {step} "
                    "(resume with --ckpt_path last)")
    assert not [p.name for p in ckpt.iterdir() if ".tmp" in p.name]

    target = step + 2 + step % 2  # a multiple of the checkpoint interval (2), so the end is saved
    with fst_process(run_args(tmp_path, "--trainer.max_steps", str(target), "--ckpt_path", "last",
                              "--trainer.val_check_interval", "1000")) as resume:
        _, out = finish(resume, timeout=300)
    assert resume.returncode == 0, out[-3000:]
    final = load_checkpoint(ckpt / "last.ckpt")
    assert final["global_step"] == target
    assert int(final["optimizer_states"][0]["state"][0]["step"]) == target  # Adam went on, not restarted


@contextlib.contextmanager
def stalled_fifo(folder: Path) -> Iterator[Path]:
    """A FIFO nobody writes to: `cat` on it blocks, like a download that stalls. Released at the
    end so that no `cat` is left waiting."""
    fifo = folder / "stalled"
    os.mkfifo(fifo)
    try:
        yield fifo
    finally:
        with contextlib.suppress(OSError):  # readers blocked in open() get EOF; none: ENXIO
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def pipe_commands(fifo: Path) -> set[int]:
    """The processes of `cat FIFO` commands: the shells (`sh -c "cat FIFO"`, and the guard that has
    it as an argument) and `cat FIFO` (not fst, whose arguments name the FIFO too)."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if f"cat {fifo}".encode() in args or args[:2] == [b"cat", str(fifo).encode()]:
                found.add(int(cmdline.parent.name))
    return alive(found)


def pipe_groups(fifo: Path) -> int:
    """How many `cat FIFO` commands run: each is a process group of its own."""
    groups = set()
    for pid in pipe_commands(fifo):
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    return len(groups)


class _Stalled(torch.utils.data.IterableDataset):
    """A data source whose every read stalls."""

    def __iter__(self) -> Iterator[dict]:
        time.sleep(3600)
        yield {}


def test_a_stop_during_a_wait_for_data_ends_the_workers_without_a_late_error() -> None:
    """Ctrl-C while the loop waits on a batch: the workers end at once, and their exit is not later
    taken for a crash (torch's SIGCHLD handler raised "DataLoader worker ... is killed by signal"
    in the middle of saving last.ckpt)."""
    loader = torch.utils.data.DataLoader(_Stalled(), batch_size=None, num_workers=2, worker_init_fn=functools.partial(
        signals.loader_worker, os.getpid(), pipes.kill_all))  # as ShardDataModule sets them up
    with signals.handled():
        workers = iter(loader)  # held, as Lightning holds the iterator while it handles the stop
        batches = MainProcess(["stalled"]).run(workers)
        signals.defer(True)
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        start = time.monotonic()
        with pytest.raises(signals.Interrupted):
            next(batches)
        assert time.monotonic() - start < STOP_WITHIN_S
        time.sleep(2)  # a SIGCHLD from a worker still counted as running would raise here
        signals.defer(False)
    assert not any(w.is_alive() for w in workers._workers)


@pytest.mark.slow
@pytest.mark.parametrize("signame,workers", [("SIGTERM", "0"), ("SIGTERM", "2"), ("SIGKILL", "0"), ("SIGKILL", "2")])
def test_a_stalled_data_source_neither_holds_a_stop_nor_outlives_it(tmp_path: Path, signame: str, workers: str) -> None:
    """Training waits on `pipe:cat FIFO` that never delivers: SIGTERM still ends the run within
    seconds, and after SIGTERM or SIGKILL neither a loader worker nor the pipe command is left."""
    signum = getattr(signal, signame)
    with stalled_fifo(tmp_path) as fifo, fst_process(run_args(
            tmp_path, "--data.train_shards", f"pipe:cat {fifo}", "--data.num_workers", workers)) as proc:
        expected = 1 if workers == "0" else int(workers)  # one command per worker, each blocked on it
        wait_until(lambda: pipe_groups(fifo) >= expected or proc.poll() is not None, 120, "the pipe commands")
        assert proc.poll() is None, proc.communicate(timeout=10)[0][-3000:]
        spawned = children(proc.pid)
        proc.send_signal(signum)
        if signum == signal.SIGKILL:
            # Orphans would hold the output pipe open, so wait on the process, not on its output.
            # Nothing of it runs after SIGKILL: the kernel kills the workers, and signals each pipe
            # command's guard, which kills the command (fst.core.signals.die_with_parent).
            proc.wait(timeout=STOP_WITHIN_S)
        else:
            _, out = finish(proc, timeout=STOP_WITHIN_S)
        # The kernel's signals take milliseconds; the bound is a safety net, not a wait for a poll.
        wait_until(lambda: not alive(spawned) and not pipe_commands(fifo), 30,
                   f"workers and pipe commands to end after {signame}")
    if signum == signal.SIGTERM:
        assert proc.returncode == 128 + signum
        assert one_error_line(out) == "fst fit: interrupted by SIGTERM; no step trained yet, nothing saved"


@pytest.mark.slow
def test_sigterm_ends_stylize_with_no_half_written_file(tmp_path: Path) -> None:
    ckpt = tmp_path / "tiny.ckpt"
    save_checkpoint(ckpt)
    out_dir = tmp_path / "out"
    photos = ROOT / "fst" / "assets" / "photos"
    with fst_process(["stylize", str(photos), "--model", str(ckpt), "--out", str(out_dir), "--quiet"]) as proc:
        wait_until(lambda: len(list(out_dir.glob("*.jpg"))) >= 2 or proc.poll() is not None, 120, "the first outputs")
        assert proc.poll() is None, proc.communicate(timeout=10)[0][-3000:]
        proc.send_signal(signal.SIGTERM)
        _, out = finish(proc, timeout=STOP_WITHIN_S)
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:]
    assert one_error_line(out, "stylize") == "fst stylize: interrupted by SIGTERM"
    written = sorted(out_dir.iterdir())
    assert written and len(written) < len(list(photos.glob("*.jpg")))
    assert all(not p.name.startswith(".") for p in written), written  # no temp file left
    for p in written:
        Image.open(p).load()  # every file there is whole


# ---------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 5 MiB filesystem: the tiny model's checkpoints are 1.8 MB, so step 2 and last.ckpt
    fit and step 4 does not."""
    with tmpfs(tmp_path / "disk", "5m") as mnt:
        yield mnt


@pytest.mark.slow
def test_full_disk_keeps_every_checkpoint_whole_and_resume_works(tmp_path: Path, small_disk: Path, capsys) -> None:
    ckpt = small_disk / "ckpt"
    args = run_args(tmp_path, "--checkpoint.dirpath", str(ckpt), "--trainer.val_check_interval", "1000")
    assert cli([*args, "--trainer.max_steps", "8"]) == 2
    err = capsys.readouterr().err
    line = one_error_line(err)
    assert line == (f"fst fit: error: cannot save checkpoint {ckpt / 'step0000004.ckpt'}: No space left on device; "
                    f"the last good checkpoint is {ckpt / 'last.ckpt'} (step 2)")
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.ckpt", "step0000002.ckpt"]  # no temp, no half file
    assert load_checkpoint(ckpt / "last.ckpt")["global_step"] == 2

    # Space is freed; the run resumes in the same folder from its last good checkpoint.
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    assert cli([*args, "--trainer.max_steps", "6", "--ckpt_path", "last"]) == 0
    assert load_checkpoint(ckpt / "last.ckpt")["global_step"] == 6
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.ckpt", "step0000002.ckpt", "step0000004.ckpt", "step0000006.ckpt"]


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # 1 MiB per file: no checkpoint fits


@pytest.mark.slow
def test_file_size_limit_fails_the_first_save_cleanly(tmp_path: Path) -> None:
    """The root-free twin of the full disk: RLIMIT_FSIZE makes every checkpoint write fail (EFBIG)."""
    sample_shards()  # built here, under no limit
    with fst_process(run_args(tmp_path), preexec_fn=_limit_file_size) as proc:
        _, out = finish(proc, timeout=300)
    assert proc.returncode == 2, out[-3000:]
    ckpt = tmp_path / "ckpt"
    assert one_error_line(out) == (f"fst fit: error: cannot save checkpoint {ckpt / 'step0000002.ckpt'}: "
                                   "File too large; this run saved no checkpoint before")
    assert not ckpt.exists() or not list(ckpt.iterdir())


# ---------------------------------------------------------------- two runs, one folder


@pytest.mark.slow
def test_second_run_into_the_same_folder_is_refused_and_kill_leaves_no_stale_lock(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    with fst_process(run_args(tmp_path, "--trainer.max_steps", "200", *SLOW)) as first:
        wait_for_checkpoint(first, ckpt / "step0000002.ckpt")
        with fst_process(run_args(tmp_path, "--trainer.max_steps", "4")) as second:
            _, out = finish(second, timeout=120)
        assert second.returncode == 2, out[-3000:]
        assert one_error_line(out) == (f"fst fit: error: {ckpt}: another fst fit (pid {first.pid}) is training "
                                       "into this folder; wait for it to end or choose another --checkpoint.dirpath")
        assert first.poll() is None  # the first run goes on...
        assert not (tmp_path / "tb" / "version_1").exists()  # ...and the second wrote nothing
        # So last.ckpt (step 2 or later) is whole. Any periodic checkpoint at step 4 or later will do: the
        # run keeps only its newest three, so step 4's own may be gone again by the time it is looked for.
        wait_until(lambda: newest_step(ckpt) >= 4 or first.poll() is not None, 240, "a checkpoint at step >= 4")
        assert newest_step(ckpt) >= 4, first.communicate(timeout=10)[0][-3000:]
        first.send_signal(signal.SIGKILL)
        finish(first, timeout=STOP_WITHIN_S)
    assert not list(ckpt.glob("last-v*.ckpt"))
    killed_at = load_checkpoint(ckpt / "last.ckpt")["global_step"]
    with fst_process(run_args(tmp_path, "--trainer.max_steps", str(killed_at + 2), "--ckpt_path", "last")) as third:
        _, out = finish(third, timeout=300)
    assert third.returncode == 0, out[-3000:]  # the kernel released the killed run's lock
    assert load_checkpoint(ckpt / "last.ckpt")["global_step"] == killed_at + 2
