"""scripts/load.py, which `make test-load` runs the suite under: the command runs while the load is
there, its exit status is the script's, and no load process outlives it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from processes import alive

LOAD = Path(__file__).resolve().parent.parent / "scripts" / "load.py"
# The command reports the load it runs beside: its siblings (the load's processes) and how busy they are.
PROBE = """
import os, sys, time
from pathlib import Path
parent = os.getppid()
siblings = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat")
            if p.read_text().rsplit(")", 1)[1].split()[1] == str(parent) and int(p.parent.name) != os.getpid()]
print(" ".join(map(str, siblings)))
resident = [int(l.split()[1]) for p in siblings for l in Path(f"/proc/{p}/status").read_text().splitlines()
            if l.startswith("VmRSS:")]
print(max(resident) * 1024)
sys.exit(3)
"""


def test_the_command_runs_beside_busy_cores_and_held_memory_and_the_load_ends_with_it() -> None:
    held = 64 << 20
    mem_total = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal:"))
    run = subprocess.run([sys.executable, str(LOAD), "--cpus", "2", "--memory", str(held / mem_total), "--keep", "0",
                          "--", sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr  # the command's exit status
    pids, resident = run.stdout.split("\n")[:2]
    load = {int(p) for p in pids.split()}
    assert len(load) == 3, run.stdout  # two spinning, one holding memory
    assert int(resident) >= 0.9 * held  # the held pages are resident, not merely reserved
    assert alive(load) == set()
    assert "load.py: 2 busy processes, 0.1 GiB held" in run.stderr
