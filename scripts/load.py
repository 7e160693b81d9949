"""Run a command while another job keeps every core busy and holds half of the memory: what the test
suite meets on a shared CI runner or a busy laptop (`make test-load`).

    python scripts/load.py [--cpus N] [--memory FRACTION] -- COMMAND...

The load is `--cpus` processes spinning at the same priority as the command, and one process holding
`--memory` of MemTotal in pages it has written to (resident, not merely reserved). It never takes
memory that is not available: at most MemAvailable less `--keep` GiB, and the kernel's out-of-memory
killer is told to pick the load first, so a real shortage ends the load, never the command or anyone
else's work. The load starts before the command, is stopped after it whatever happens, and the
command's exit status is this script's. Give the command the load's priority: `nice` on the command
alone starves it (seen: a pytest at nice 19 beside spinners at nice 10 ran 9 s of CPU in 10 minutes).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SPIN = "while True: pass"
# Write one byte per page so every page is resident; then wait to be stopped.
HOLD = """
import sys, time
size, chunk = int(sys.argv[1]), 64 << 20
held = []
while size > 0:
    block = bytearray(min(chunk, size))
    block[::4096] = b"\\1" * len(range(0, len(block), 4096))
    held.append(block)
    size -= len(block)
print("held", flush=True)
while True:
    time.sleep(3600)
"""


def meminfo(field: str) -> int:
    """A /proc/meminfo field in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"load.py: no {field} in /proc/meminfo")


def first_to_go() -> None:
    """In the load's own processes: the out-of-memory killer picks them before anything else."""
    Path("/proc/self/oom_score_adj").write_text("1000")


def start_load(cpus: int, memory: float, keep_gib: float) -> tuple[list[subprocess.Popen], int]:
    size = int(min(memory * meminfo("MemTotal"), meminfo("MemAvailable") - keep_gib * 2**30))
    procs = [subprocess.Popen([sys.executable, "-c", SPIN], preexec_fn=first_to_go) for _ in range(cpus)]
    if size > 0:
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(size)], stdout=subprocess.PIPE, text=True,
                                  preexec_fn=first_to_go)
        procs.append(holder)
        if holder.stdout is None or holder.stdout.readline().strip() != "held":
            stop_load(procs)
            raise SystemExit("load.py: the memory holder ended before it held its memory")
    return procs, max(size, 0)


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="spinning processes (default: one per core)")
    p.add_argument("--memory", type=float, default=0.5, help="fraction of MemTotal to hold (default 0.5)")
    p.add_argument("--keep", type=float, default=2.0, help="GiB of MemAvailable never taken (default 2)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run under the load")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given (load.py -- COMMAND...)")
    procs, held = start_load(args.cpus, args.memory, args.keep)
    print(f"load.py: {args.cpus} busy processes, {held / 2**30:.1f} GiB held of {meminfo('MemTotal') / 2**30:.1f}; "
          f"running {' '.join(command)}", file=sys.stderr, flush=True)
    start = time.monotonic()
    # A stop signal to this script ends the command and the load (Ctrl-C reaches the command itself).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    child = subprocess.Popen(command)
    try:
        code = child.wait()
    except BaseException:
        child.terminate()
        child.wait()
        raise
    finally:
        stop_load(procs)
    print(f"load.py: {' '.join(command)} exited {code} after {time.monotonic() - start:.0f} s under load",
          file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
