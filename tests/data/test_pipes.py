"""fst.data.pipes: a `pipe:` command, every process of it, never outlives its reader, even a reader
killed with SIGKILL (which runs no code of its own), and it still delivers its data and status.

The reader is a `python -c` process; the command is a pipeline, so that a process the command's
shell started itself is checked too. The waits are bounds that only a failure reaches."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fst.data import pipes

from processes import wait_until
from runs import ROOT

BOUND_S = 60  # a safety net: the kernel signals the command's guard as its reader dies


def group(pgid: int) -> dict[int, str]:
    """The living processes of process group `pgid` (read from /proc): pid -> program name."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            name, rest = stat.read_text().split(" (", 1)[1].rsplit(")", 1)
            fields = rest.split()
            if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                found[int(stat.parent.name)] = name
    return found


READER = """
import os, sys, time
from fst.core import signals
from fst.data import pipes
if sys.argv[1] == "worker" and os.fork() != 0:
    time.sleep(600)  # the main process, killed by the test
if sys.argv[1] == "worker":  # set up as ShardDataModule sets up its loader workers
    signals.loader_worker(os.getppid(), pipes.kill_all, 0)
stream = pipes.open_pipe("sleep 600 | cat")
print(stream.raw.proc.pid, flush=True)
stream.read(1)
"""


@pytest.mark.parametrize("killed", ["reader", "worker"])
def test_a_command_dies_with_its_reader_killed_by_sigkill(killed: str) -> None:
    """`sleep | cat` stalls like a download. Its reader is killed with SIGKILL while it waits on it,
    which runs no code of the reader's: the reader itself (a loader worker killed, or a main process
    reading with no workers), or the main process of a loader worker reading it (the kernel then
    kills the worker). Every process of the command ends: its shell, `sleep` and `cat`."""
    proc = subprocess.Popen([sys.executable, "-c", READER, killed], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    command = 0
    try:
        command = int(proc.stdout.readline())
        wait_until(lambda: {"sleep", "cat"} <= set(group(command).values()), BOUND_S, "sleep and cat to start")
        proc.kill()
        proc.wait()
        wait_until(lambda: not group(command), BOUND_S, f"the command to end with its {killed}")
    finally:
        for pid in group(command) if command else set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def test_a_guarded_command_delivers_its_output_and_its_status(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB through a pipeline
    (tmp_path / "x").write_bytes(data)
    with pipes.open_pipe(f"cat {tmp_path / 'x'} | cat") as stream:
        assert stream.read() == data
    with pipes.open_pipe("printf abc; exit 3") as stream, pytest.raises(OSError, match="exited with status 3"):
        stream.read()


def test_closing_a_stream_ends_every_process_of_its_command() -> None:
    stream = pipes.open_pipe("sleep 600 | cat")
    command = stream.raw.proc.pid
    wait_until(lambda: {"sleep", "cat"} <= set(group(command).values()), BOUND_S, "sleep and cat to start")
    stream.close()
    wait_until(lambda: not group(command), BOUND_S, "the command to end with its stream")
