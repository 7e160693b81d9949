"""SIGTERM and SIGINT end every fst command within seconds, with one line and a non-zero exit.

Outside training either signal raises `Interrupted` wherever the program is (as Ctrl-C raises
KeyboardInterrupt): `finally` blocks run, so no temporary file is left behind (`fst.io.files`), and
`fst.cli` prints one line and exits with 128 + the signal's number, as a shell reports a killed
command.

While a model trains (`defer`), stopping in the middle of a step would leave a half-updated
optimizer state, so a signal only asks Lightning to stop after the step: Lightning's own SIGTERM
handler sets the flag its loops check after every batch, and SIGINT is handed to that handler too.
`fst.training.preemption` then saves last.ckpt on the way out. A wait for data (`interruptible`) is the
exception: nothing is half-done there and a stalled data source could wait forever, so the signal
raises at once. A second signal raises at once anywhere.

Loader worker processes (`loader_worker`) leave both signals to the main process and die with it,
even when it is killed with SIGKILL, ending what they started (`fst.data.pipes`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Interrupted(BaseException):
    """A stop signal arrived. A BaseException like KeyboardInterrupt, so that code skipping a bad
    input with ``except Exception`` does not skip the stop too. ``safe``: raised where no work was
    half-done (the training state may be saved); ``note``: what was saved, for the one line."""

    def __init__(self, signum: int, safe: bool = True, note: str = "") -> None:
        super().__init__(signum)
        self.signum, self.safe, self.note = signum, safe, note

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"interrupted by {name}" + (f"; {self.note}" if self.note else "")


@dataclass
class _State:
    deferring: bool = False  # a training loop runs: stop after the step, not in it
    wait_is_safe: bool = True  # False in multi-process training, where ranks must stop together
    waiting: bool = False  # blocked on data
    received: int | None = None  # the first stop signal; it stays, so that one raised inside a
    # finalizer (where Python prints and drops exceptions) still stops the command at the next check
    forwarding: bool = False  # inside Lightning's handler, which calls ours again
    owner: int = 0  # the process that installed the handler


_state = _State()


def _handle(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _state.owner:
        _as_default(signum)
        return
    if _state.forwarding:
        return
    first = _state.received is None
    if first:
        _state.received = signum
    if _state.deferring and first:
        if _state.waiting and _state.wait_is_safe:
            raise Interrupted(signum)
        if signum != signal.SIGTERM:
            _ask_lightning_to_stop(signum, frame)
        return
    raise Interrupted(signum, safe=not _state.deferring or _state.waiting)


def _as_default(signum: int) -> None:
    """In a forked child that inherited the handler (a multiprocessing pool worker): SIGTERM, which
    its pool sends to end it, ends it as it would without fst; SIGINT (Ctrl-C reaches the whole
    process group) is left to the process that installed the handler, which ends its children."""
    if signum == signal.SIGTERM:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _ask_lightning_to_stop(signum: int, frame: FrameType | None) -> None:
    """Run the SIGTERM handler Lightning installed (it sets the flag its loops check after each
    batch, and tells DDP ranks); Lightning's handler calls ours again, which then returns."""
    handler = signal.getsignal(signal.SIGTERM)
    if callable(handler) and handler is not _handle:
        _state.forwarding = True
        try:
            handler(signum, frame)
        finally:
            _state.forwarding = False


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Inside: SIGTERM and SIGINT raise `Interrupted`. The previous handlers come back after (fst's
    commands also run inside other programs, e.g. the tests)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    _state.owner = os.getpid()
    for s in STOP_SIGNALS:
        signal.signal(s, _handle)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state.deferring, _state.waiting, _state.received = False, False, None


def defer(on: bool, wait_is_safe: bool = True) -> None:
    """Start (or end) training mode: a first signal is noted and handed to Lightning, not raised.
    Starting it after a signal already came raises that signal's `Interrupted`."""
    _state.deferring, _state.wait_is_safe = on, wait_is_safe
    if on and _state.received is not None:
        raise Interrupted(_state.received)


def pending() -> int | None:
    """The stop signal received so far, if any."""
    return _state.received


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Around a wait for data: a stop signal, pending or new, raises `Interrupted` here at once."""
    if _state.received is not None and _state.wait_is_safe:
        raise Interrupted(_state.received)
    _state.waiting = True
    try:
        yield
    finally:
        _state.waiting = False


@dataclass
class _Worker:
    on_exit: Callable[[], None] | None = None
    starting: int = 0  # inside `starting()`: a process is being started and not yet on record
    stop_pending: bool = False  # SIGTERM came while one was


_worker = _Worker()


def loader_worker(parent: int, on_exit: Callable[[], None], worker_id: int) -> None:
    """Set up a data loader worker (its ``worker_init_fn``, with `parent` = the main process's pid):
    the main process alone decides when to stop (SIGINT from a terminal reaches the whole process
    group), and the worker dies with the main process even when that is killed with SIGKILL. On
    SIGTERM (the loader's own way to end a worker, and what the kernel sends when the main process
    dies) it runs `on_exit`, then dies of the signal; inside `starting()` it first lets the block end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker.on_exit = on_exit

    def end(signum: int, frame: FrameType | None) -> None:
        if _worker.starting:
            _worker.stop_pending = True
            return
        _end_worker()

    signal.signal(signal.SIGTERM, end)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    try:  # the main process may have died before prctl took effect
        os.kill(parent, 0)
    except ProcessLookupError:
        end(signal.SIGTERM, None)


def _end_worker() -> None:
    if _worker.on_exit is not None:
        _worker.on_exit()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def starting() -> Iterator[None]:
    """Around starting a process and putting it on record (`fst.data.pipes`): in a loader worker, a
    SIGTERM that comes meanwhile ends the worker only after the block, so that `on_exit` finds the
    new process and ends it too. (Ended inside the block, the worker left it running: a `pipe:`
    command that blocked forever on a stalled source, seen when the main process was killed while
    a worker started its command.) Elsewhere it changes nothing."""
    _worker.starting += 1
    try:
        yield
    finally:
        _worker.starting -= 1
        if _worker.stop_pending and not _worker.starting:
            _end_worker()
