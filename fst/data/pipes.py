"""`pipe:` shards: a command writes the shard to its stdout (``pipe:aws s3 cp s3://b/x.tar -``).

The command never outlives its reader and never makes it wait. webdataset's own Pipe waits up to
two hours for the command to exit when its stream is closed, so a stalled download held a stopping
run that long, and a loader worker that died left the command running. Here each command runs in
a process group of its own, killed as soon as its stream is closed (end of the shard, an error, a
stop signal) or its reader ends (`kill_all`, which a loader worker runs on SIGTERM).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess

from fst.core import signals

EXIT_WAIT_S = 10.0  # after end of data, how long a command may take to exit before it is killed
_running: set[subprocess.Popen] = set()


class PipeStream(io.RawIOBase):
    """The stdout of `command` (run by the shell), as a readable binary stream. A command that
    exits non-zero (a missing object, a failed download) makes the read at end of data fail."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command
        with signals.starting():  # a loader worker stopped meanwhile ends the command too
            self.proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, start_new_session=True)
            _running.add(self.proc)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self.proc.stdout.readinto(buffer)  # type: ignore[union-attr]
        if n == 0:
            self._check_exit()
        return n

    def _check_exit(self) -> None:
        try:
            code = self.proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            return  # all data came; close() ends the command
        if code not in (0, 141, -signal.SIGPIPE):  # 141: the shell's SIGPIPE, when we stop reading early
            raise OSError(f"`{self.command}` exited with status {code}")

    def close(self) -> None:
        if not self.closed:
            self.proc.stdout.close()  # type: ignore[union-attr]
            _end(self.proc)
        super().close()


def open_pipe(command: str) -> io.BufferedReader:
    return io.BufferedReader(PipeStream(command), 1 << 16)


def kill_all() -> None:
    """End every command this process started (a loader worker ending)."""
    for proc in list(_running):
        _end(proc)


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the shell and whatever it started
        proc.wait()
    _running.discard(proc)
