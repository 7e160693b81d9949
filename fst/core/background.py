"""Work beside the main thread, bounded and stoppable: `ahead` runs an iterator a few items ahead of
the loop that reads it (a decoder), `behind` runs a consumer a few items behind the loop that feeds
it (an encoder).

It pays where the work in the thread releases the GIL (PyAV's demuxing, decoding, scaling, encoding
and muxing all do; so do torch's kernels): the thread then runs while the main thread computes.

- Memory: each side holds at most `depth` items in its queue.
- Stopping: every wait is at most `POLL` seconds between checks, and the main thread's waits are
  ones a signal interrupts (fst.core.signals raises there). When the main thread leaves the `with`
  block (done, failed or stopped) the thread is told to stop and joined, for at most `JOIN_S`
  seconds: a caller may close what the thread was using (a container) once the block is left.
- Errors: an exception in the thread is raised again in the main thread, the same object, so the
  caller handles it as if the work had run inline.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
POLL = 0.1  # seconds between checks of a stop while waiting on a queue
JOIN_S = 30.0  # the longest a thread is waited for once told to stop (it ends within one item)
_END = object()  # the producer's last item; an exception object instead ends it with that error
_NEVER = threading.Event()  # the reader of `ahead` stops by leaving its block, not by an event


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put `item` once there is room; False if told to stop first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=POLL)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    """The next item, or `_END` once told to stop."""
    while not stop.is_set():
        try:
            return q.get(timeout=POLL)
        except queue.Empty:
            continue
    return _END


def _start(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)  # daemon: never keeps a dying process up
    thread.start()
    return thread


@contextlib.contextmanager
def ahead(items: Iterable[T], depth: int, name: str = "fst-ahead", threaded: bool = True) -> Iterator[Iterator[T]]:
    """`items`, iterated in a thread up to `depth` items ahead of the caller (`threaded`), or inline."""
    if not threaded:
        yield iter(items)
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(q, (item,), stop):
                    return
            _put(q, _END, stop)
        except BaseException as e:  # raised again in the caller
            _put(q, e, stop)

    def read() -> Iterator[T]:
        while True:
            got = _get(q, _NEVER)
            if got is _END:
                return
            if isinstance(got, BaseException):
                raise got
            yield got[0]

    thread = _start(produce, name)
    try:
        yield read()
    finally:
        stop.set()
        thread.join(JOIN_S)


@contextlib.contextmanager
def behind(consume: Callable[[T], None], depth: int, name: str = "fst-behind",
           threaded: bool = True) -> Iterator[Callable[[T], None]]:
    """A `put(item)` that hands each item to `consume`, in order, in a thread up to `depth` items
    behind (`threaded`; else `put` is `consume`). Leaving the block normally waits for every item
    to be consumed; an error in `consume` is raised by the next `put` or at the end."""
    if not threaded:
        yield consume
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    failed: list[BaseException] = []

    def work() -> None:
        try:
            while (item := _get(q, stop)) is not _END:
                consume(item)
        except BaseException as e:
            failed.append(e)
            stop.set()

    def check() -> None:
        if failed:
            raise failed[0]

    def put(item: T) -> None:
        check()
        _put(q, item, stop)
        check()

    thread = _start(work, name)
    try:
        yield put
        put(_END)  # type: ignore[arg-type]
        while thread.is_alive():  # the rest of the queue, at most `depth` items of work
            thread.join(POLL)
        check()
    finally:
        stop.set()
        thread.join(JOIN_S)
