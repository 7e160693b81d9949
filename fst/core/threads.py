"""One intra-op thread for a block of small CPU work.

Ops on tensors too small to share between cores (a 256x256 eigendecomposition, a frame's blend, a
timing probe) lose more at OpenMP's barriers than a second thread gains, and when another process
holds a core every barrier waits for it: measured on the 2-core machine under load, MKL's threaded
eigh took 0.1 s against 0.02 s on one thread and stalled for seconds now and then, and the
`--temporal` blend took 0.7-3 s a frame against 0.09-0.7 s (docs/universal.md, docs/video.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread(enabled: bool = True) -> Iterator[None]:
    """torch's intra-op threads set to 1 for the block (when `enabled`), restored after it."""
    threads = torch.get_num_threads()
    if not enabled or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
