"""Samples to batches, and the loader's end in the main process: a worker's error raised as one line,
an epoch without a sample refused, a stop signal ending the wait for data."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import torch
from webdataset.utils import PipelineStage

from fst.core import signals
from fst.core.errors import FstError
from fst.data.stages import listed


def errors_as_batches(src: Iterator[dict]) -> Iterator[dict]:
    """The last stage in a worker: an FstError travels to the main process as a batch carrying its
    one line (raised in a worker, it would arrive wrapped in a traceback)."""
    try:
        yield from src
    except FstError as e:
        yield {"error": str(e)}


def end_workers(loader_iter: Iterator[dict]) -> None:
    """End a torch DataLoader iterator's workers now. Workers stuck on a stalled source would each
    hold a stop for the loader's 5 s join timeout; each ends its `pipe:` commands (fst.data.pipes).
    They are taken off torch's list of running workers while SIGCHLD is not handled: a worker
    that ends while still listed is reported by torch's SIGCHLD handler as a crash, raised
    wherever the main process is then (e.g. in the middle of saving last.ckpt)."""
    workers = [w for w in getattr(loader_iter, "_workers", ()) if w.is_alive()]
    shutdown = getattr(loader_iter, "_shutdown_workers", None)
    if not workers or shutdown is None or threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread, where stop signals arrive
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(timeout=5)
        shutdown()  # unlists them (and closes the queues); they are gone, so it does not wait
    finally:
        signal.signal(signal.SIGCHLD, previous)


class MainProcess(PipelineStage):
    """The loader's last stage, in the main process: raises a worker's error, refuses an epoch
    without a single sample (finite shards that are all unreadable would otherwise make empty
    epochs forever), and lets a stop signal end the wait for the next batch."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls

    def run(self, src: Iterator[dict]) -> Iterator[dict]:
        batches = 0
        while True:
            try:
                with signals.interruptible():
                    batch = next(src, None)
            except signals.Interrupted:
                end_workers(src)
                raise
            if batch is None:
                break
            if "error" in batch:
                del src  # the last reference: the other workers stop now, not after the error is printed
                raise FstError(batch["error"])
            batches += 1
            yield batch
        if not batches:
            raise FstError(f"no readable sample in a whole pass over {listed(self.urls)} (see the warnings above)")


class Batch(PipelineStage):
    """Stack samples into contract batches. Holds one batch back so that bad samples after the
    last good one are still added to a batch's "skipped"."""

    def __init__(self, batch_size: int, partial: bool) -> None:
        self.batch_size, self.partial = batch_size, partial

    def run(self, src: Iterator[dict]) -> Iterator[dict]:
        held: dict | None = None
        images, keys, skipped = [], [], 0
        for s in src:
            skipped += s["skipped"]
            if s["image"] is None:
                continue
            images.append(s["image"])
            keys.append(s["key"])
            if len(images) == self.batch_size:
                if held is not None:
                    yield held
                held, images, keys, skipped = collate(images, keys, skipped), [], [], 0
        if images and self.partial:
            if held is not None:
                yield held
            held, skipped = collate(images, keys, skipped), 0
        if held is not None:
            held["skipped"] += skipped
            yield held


def collate(images: list, keys: list[str], skipped: int) -> dict:
    """The batch contract from a list of (3, S, S) images, or of (raw bytes, crop parameters) pairs
    that `ShardDataModule.on_before_batch_transfer` decodes on the device."""
    batch = {"skipped": torch.tensor(skipped, dtype=torch.long), "key": keys}
    if isinstance(images[0], tuple):
        return batch | {"jpeg": [raw for raw, _ in images], "crop": torch.stack([uvf for _, uvf in images])}
    return batch | {"image": torch.stack(images)}
