"""How much host memory a full pass needs and how much there is, so a CPU pass too large for the
machine runs in tiles instead of dying: a refused allocation (RLIMIT_AS, a cgroup) is a traceback,
an overcommitted one calls the OOM killer.

A pass's peak is estimated from the network's channels c: measured with ru_maxrss and VmPeak on one
thread, fp32, the peak above the input was 4.6-5.5 planes of c floats per pixel (c = 8 and 32, 1024²
and 2048²: around up2, which holds h0, the upsampled 2c planes, their padding and the conv's output).
`PASS_PLANES` rounds that up; `IMAGE_BYTES` covers the whole-image tensors around it (the input, the
output, blending, colour and the 8-bit result).

The plan keeps `MARGIN` of what is free unplanned, for what runs beside the pass (memory free now is
not free a second later on a busy machine) and the allocator's slack. Short of memory, the Stylizer
also stops keeping freed blocks (fst.core.host_memory): a kept block the next request does not fit
in is a hole that still counts against an address-space limit, and its place moves with
address-space randomisation. Measured under one RLIMIT_AS, 350 MB above the start (1600x1600, the
tiny test net, one thread): blocks kept and 0.8 of the room planned (tiles of 662), the command's
peak ranged 255-349 MB over 22 runs and the 8-bit conversion after the pass was refused in 1 of the
first 3; blocks given back, the same tiles peaked at 197-200 MB (5 runs), and with `MARGIN` (tiles of
472) at 162-173 MB. A pass that still runs out is retried in smaller tiles (`fst.stylize.stylizer`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import resource
from pathlib import Path
from typing import Any

PASS_PLANES = 6  # planes of c fp32 values per pixel at a pass's peak
IMAGE_BYTES = 64  # per pixel of the whole image, beside a pass: ~16 fp32 planes
MARGIN = 1 / 3  # of what is free, never planned: the allocator's holes, and everything else running
USABLE = 1 - MARGIN


def net_bytes(height: int, width: int, channels: int) -> int:
    """Estimated peak of the network's own activations over height x width."""
    return height * width * PASS_PLANES * channels * 4


def pass_bytes(height: int, width: int, channels: int) -> int:
    """Estimated peak memory of stylizing a height x width image in one pass."""
    return net_bytes(height, width, channels) + height * width * IMAGE_BYTES


def tiles_for_memory(height: int, width: int, channels: int, free: int, largest: int,
                     stats_side: int) -> tuple[int, int] | None:
    """(tile, statistics side): the largest square tile (at most `largest`) whose pass fits in `free`
    bytes beside the whole image's own tensors, and the statistics pass's side (`stats_side`, or the
    tile's where that does not fit); None when even the image's own tensors do not fit."""
    budget = free * USABLE - height * width * IMAGE_BYTES
    if budget <= 0:
        return None
    tile = min(largest, math.isqrt(int(budget / net_bytes(1, 1, channels))))
    return tile, stats_side if net_bytes(stats_side, stats_side, channels) <= budget else tile


def free_bytes() -> int | None:
    """The memory this process can still allocate: the least of the system's available memory, the
    room left under RLIMIT_AS and RLIMIT_DATA, and the cgroup's limit; None where none is known."""
    found = [n for n in (_mem_available(), _rlimit_room(), _cgroup_room()) if n is not None]
    return min(found) if found else None


def _mem_available() -> int | None:
    return _field(Path("/proc/meminfo"), "MemAvailable")


def _rlimit_room() -> int | None:
    """Room under the address-space and data limits; malloc's free blocks are counted as in use by
    the kernel but are free for a pass."""
    rooms = []
    for limit, field in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        used = _field(Path("/proc/self/status"), field)
        if soft != resource.RLIM_INFINITY and used is not None:
            rooms.append(soft - used + _malloc_free())
    return min(rooms) if rooms else None


def _cgroup_room() -> int | None:
    """Room under a cgroup v2 (or v1) memory limit, page cache that can be dropped counted as room."""
    for limit, usage, stat, cache in (("memory.max", "memory.current", "memory.stat", "inactive_file"),
                                      ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes",
                                       "memory/memory.stat", "total_inactive_file")):
        root = Path("/sys/fs/cgroup")
        try:
            cap, used = (root / limit).read_text().strip(), int((root / usage).read_text())
        except (OSError, ValueError):
            continue
        if not cap.isdigit() or int(cap) >= 1 << 60:  # "max", or v1's "no limit"
            return None
        return int(cap) - used + (_stat(root / stat, cache) or 0)
    return None


def _field(path: Path, name: str) -> int | None:
    """A `Name:   123 kB` line of a /proc file, in bytes."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _stat(path: Path, name: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.lru_cache(maxsize=None)
def _libc_function(name: str) -> Any:
    """A glibc function, or None (not glibc, or a glibc without it)."""
    lib = ctypes.util.find_library("c") if os.name == "posix" else None
    try:
        return getattr(ctypes.CDLL(lib), name) if lib else None
    except (OSError, AttributeError):
        return None


def _malloc_free() -> int:
    """Bytes glibc's malloc holds free (fst.core.host_memory keeps freed blocks); 0 elsewhere."""
    mallinfo2 = _libc_function("mallinfo2")  # glibc 2.33+
    if mallinfo2 is None:
        return 0
    mallinfo2.restype = _Mallinfo2
    return int(mallinfo2().fordblks)


def release_free() -> None:
    """Give malloc's free blocks back to the system. After a pass ran out of memory its activations
    stay in the heap (fst.core.host_memory keeps them), and under an address-space limit the retry
    then failed in what does not come from malloc: oneDNN maps new code for each new tile size."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)
