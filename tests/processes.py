"""An fst command under test in a process of its own: started in a session of its own, waited on
with a bound, its descendants found and killed, its one error line read."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from runs import fst_subprocess

STOP_WITHIN_S = 20  # a stop signal ends any command within this


def children(pid: int) -> set[int]:
    """Every living descendant of `pid` (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                living.add(pid)
    return living


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def fst_process(args: list[str], **kw) -> Iterator[subprocess.Popen]:
    """`python -m fst.cli ARGS` in a session of its own; whatever is left of it (workers, pipe
    commands) is killed when the block ends."""
    proc = fst_subprocess(args, start_new_session=True, **kw)
    descendants: set[int] = set()
    try:
        yield proc
    finally:
        descendants |= children(proc.pid)
        for pid in alive(descendants | {proc.pid}):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[float, str]:
    """(seconds it took to exit, its output); fails the test if it does not exit in time."""
    start = time.monotonic()
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {timeout} s later") from None
    return time.monotonic() - start, out


def last_line(out: str) -> str:
    return out.strip().splitlines()[-1] if out.strip() else ""


def one_error_line(out: str, command: str = "fit") -> str:
    lines = [line for line in out.splitlines() if line.startswith(f"fst {command}:")]
    assert len(lines) == 1 and lines[0] == last_line(out), out[-3000:]
    return lines[0]
