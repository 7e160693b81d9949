"""A `pipe:` command never outlives the loader worker that started it, whenever the worker is
stopped: here the stop (the SIGTERM a worker gets when the main process dies) lands between the
command's start and the worker putting it on record, the window a busy machine widens."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from processes import alive, wait_until
from runs import ROOT

WORKER = textwrap.dedent("""
    import os, signal, subprocess, sys
    from fst.core import signals
    from fst.data import pipes
    signals.loader_worker(os.getppid(), pipes.kill_all, 0)  # as ShardDataModule sets its workers up
    started = subprocess.Popen

    def start_then_stop(*args, **kwargs):
        proc = started(*args, **kwargs)
        print(proc.pid, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # the stop, before the command is on record
        return proc

    pipes.subprocess.Popen = start_then_stop
    pipes.open_pipe(f"cat {sys.argv[1]}")
    print("not stopped", flush=True)
""")


def test_a_worker_stopped_while_it_starts_a_pipe_command_ends_the_command(tmp_path: Path) -> None:
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)  # nobody writes: `cat` blocks on it for ever, as a stalled download would
    command: set[int] = set()
    out, err = tmp_path / "out", tmp_path / "err"  # files, not pipes: a command left over would hold a pipe open
    try:
        with open(out, "w") as stdout, open(err, "w") as stderr:
            worker = subprocess.run([sys.executable, "-c", WORKER, str(fifo)], stdout=stdout, stderr=stderr,
                                    timeout=60, cwd=ROOT)
        command = {int(out.read_text().split()[0])}
        assert worker.returncode == -15, err.read_text()[-2000:]  # died of the SIGTERM, as a worker does
        assert "not stopped" not in out.read_text()
        # Before: the worker died with the command not on record, and `sh -c cat FIFO` lived on.
        wait_until(lambda: not alive(command), 10, "the pipe command to end")
    finally:
        for pid in alive(command):  # a failed run leaves nothing behind
            os.killpg(pid, 9)
