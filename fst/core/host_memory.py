"""Keep freed host memory in the process, so a CPU training step stops paying the kernel for pages.

glibc's malloc serves every block above its mmap threshold (128 KiB, rising with use to at most
32 MiB) with a fresh mmap and unmaps it on free. A CPU training step at 256², batch 4, allocates and
frees hundreds of activations of 4-70 MB, so every step maps new pages and the kernel zeroes each one
on first touch. In scripts/bench_train.py (fp32, 2-core Zen 4, oneDNN limited to AVX2) a run took
9.3 million page faults; with mmap off and trimming only above 2 GiB it took 0.7 million, and the
classic step alone ran 1.28x faster (docs/benchmarks.md). The cost: a higher peak resident size
(2.6 -> 3.2 GB there), which stays with the process until it ends but does not grow with steps.

glibc only (Linux): elsewhere nothing changes. ``FST_MALLOC=default`` keeps glibc's own settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

# mallopt parameters, from glibc's malloc.h, and glibc's defaults for them
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
GLIBC_TRIM_THRESHOLD = 128 * 1024
GLIBC_MMAP_MAX = 65536
# Free memory at the top of the heap beyond this goes back to the kernel: far above one step's churn.
TRIM_THRESHOLD = 2 ** 31 - 1
ENV = "FST_MALLOC"


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> str | None:
    """Make glibc reuse freed blocks instead of unmapping them; once per process. Returns what was
    done, in words, or None where nothing was (not glibc, or FST_MALLOC=default)."""
    if os.environ.get(ENV, "").lower() == "default":
        return None
    libc = _glibc()
    if libc is None:
        return None
    # mallopt returns 1 on success; with mmap off, a heap that cannot grow still falls back to mmap.
    if libc.mallopt(M_MMAP_MAX, 0) != 1 or libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return None
    return "glibc malloc keeps freed blocks for reuse (no mmap per block, trim above 2 GiB)"


def give_back_freed_memory() -> bool:
    """Undo `keep_freed_memory`: large blocks are mapped again and unmapped when freed, and the heap's
    free top goes back to the kernel. For a process short of memory: a kept block the next request
    does not fit in is a hole that still counts against an address-space limit, and oneDNN, which
    maps its kernels outside malloc, was refused there. True where glibc took the settings."""
    libc = _glibc()
    if libc is None:
        return False
    keep_freed_memory.cache_clear()  # keeping again is a new decision, not the one cached
    return libc.mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX) == 1 and libc.mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD) == 1
