"""fst.core.signals.loader_worker: a loader worker dies with its main process by the kernel's hand,
with no poll and no Python code of its own to run, whatever the timing: also when the main process
died before the worker asked for it, and also when the worker could not run a signal handler.

Each case runs a stand-in main process (`python -c`) that forks a worker as torch's loader does.
The worker holds the write end of the test's pipe: end of file on it is the worker's death. The
waits are bounds that only a failure reaches."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

from runs import ROOT

BOUND_S = 60  # a safety net: the kernel ends the worker in milliseconds

PRELUDE = """
import os, signal, sys, time
from fst.core import signals
main = os.getpid()
worker = os.fork()
"""


def stand_in(worker_code: str, main_code: str) -> subprocess.Popen:
    code = PRELUDE + "if worker == 0:\n" + textwrap.indent(worker_code, "    ") + "    os._exit(0)\n" + main_code
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def read_until_eof(fd: int) -> bytes:
    """What the stand-ins write until the last of them dies (or until a worker says it survived);
    fails if one is still alive at the bound."""
    out = b""
    while select.select([fd], [], [], BOUND_S)[0]:
        chunk = os.read(fd, 4096)
        out += chunk
        if not chunk or b"survived" in out:
            return out
    raise AssertionError(f"a worker is still alive {BOUND_S} s later; it wrote {out!r}")


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_worker_whose_main_process_died_before_it_started_ends_at_once() -> None:
    """The main process dies between the worker's fork and its `worker_init_fn`; nobody has reaped
    it yet, so a probe of its pid (kill 0) still succeeds. No death signal will come for it: the
    worker must see that and end, not go on to open a pipe command and wait on it forever (torch's
    own watchdog takes the adoptive parent for the main process then)."""
    main = stand_in(
        "os.read(0, 1)  # go: the main process has exited\n"
        "signals.loader_worker(main, lambda: None, 0)\n"
        "print('survived', flush=True)\n"
        "time.sleep(600)\n",
        "print(worker, flush=True)\n")
    try:
        worker = int(main.stdout.readline())
        os.waitid(os.P_PID, main.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        main.stdin.write(b"g")
        main.stdin.flush()
        assert read_until_eof(main.stdout.fileno()) == b""
    finally:
        kill_quietly(worker)
        main.wait()


def test_a_worker_that_cannot_run_a_handler_still_dies_with_its_killed_main_process() -> None:
    """SIGKILL of the main process while its worker holds SIGTERM back, as a worker does while it
    is stuck in C code (Python runs signal handlers only between bytecodes): the kernel kills it."""
    main = stand_in(
        "signals.loader_worker(main, lambda: None, 0)\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(600)\n",
        "time.sleep(600)\n")
    try:
        worker = int(main.stdout.readline())
        main.kill()
        main.wait()
        assert read_until_eof(main.stdout.fileno()) == b""
    finally:
        kill_quietly(worker)
        kill_quietly(main.pid)
        main.wait()
