"""fst.core.background: order kept, memory bounded, errors raised in the caller, threads ended on every
way out of the block, and a stop signal interrupts a wait."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from fst.core import background


def counted(n: int, made: list[int]) -> Iterator[int]:
    for i in range(n):
        made.append(i)
        yield i


def test_ahead_keeps_order_and_runs_at_most_depth_ahead() -> None:
    made: list[int] = []
    with background.ahead(counted(100, made), depth=3) as items:
        assert next(items) == 0
        time.sleep(0.5)  # time enough to make all 100 if nothing bounded it
        assert len(made) <= 1 + 3 + 1  # the one read, three queued, one waiting for room
        assert list(items) == list(range(1, 100))


def test_ahead_raises_the_producers_error_in_the_caller() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("damaged packet")

    with background.ahead(failing(), depth=2) as items:
        assert next(items) == 1
        with pytest.raises(ValueError, match="damaged packet"):
            next(items)


def test_leaving_ahead_early_ends_its_thread() -> None:
    made: list[int] = []
    with background.ahead(counted(10**9, made), depth=2, name="fst-test-ahead") as items:
        next(items)
    assert not [t for t in threading.enumerate() if t.name == "fst-test-ahead"]
    assert len(made) < 10


def test_behind_consumes_everything_in_order_before_the_block_ends() -> None:
    seen: list[int] = []

    def slow(i: int) -> None:
        time.sleep(0.002)
        seen.append(i)

    with background.behind(slow, depth=2) as put:
        for i in range(50):
            put(i)
    assert seen == list(range(50))


def test_behind_raises_the_consumers_error_at_the_next_put_and_stops() -> None:
    def full_disk(i: int) -> None:
        if i == 3:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        with background.behind(full_disk, depth=2, name="fst-test-behind") as put:
            for i in range(10**6):
                put(i)
    assert not [t for t in threading.enumerate() if t.name == "fst-test-behind"]


def test_behind_raises_an_error_in_the_last_items_at_the_end() -> None:
    def fail_last(i: int) -> None:
        if i == 4:
            raise RuntimeError("encoder refused")

    with pytest.raises(RuntimeError, match="encoder refused"):
        with background.behind(fail_last, depth=8) as put:
            for i in range(5):
                put(i)


def test_a_signal_interrupts_a_put_waiting_on_a_stalled_consumer() -> None:
    release = threading.Event()  # never set: each item waits its full time

    def stalled(i: int) -> None:  # 1.5 s an item: 15 s to consume all ten
        release.wait(1.5)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            with background.behind(stalled, depth=1, name="fst-test-stalled") as put:
                for i in range(10):
                    put(i)  # blocks from the third: one consuming, one queued
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # the put returned at the signal (0.3 s) and the block waited only for the item being consumed
    assert time.monotonic() - start < 3
    assert not [t for t in threading.enumerate() if t.name == "fst-test-stalled"]
