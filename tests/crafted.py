"""Helpers for tests that hand fst crafted or damaged files: run a command that must refuse them
with one line, and rewrite a zip archive's members as an attacker would (CRCs recomputed)."""

from __future__ import annotations

import functools
import json
import os
import stat
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch

from fst.cli import main as cli


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run an fst command that must fail: exit 2 and exactly one line on stderr, which is returned."""
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fst {argv[0]}: error: "), err
    assert "weights_only" not in err  # never advise turning the safety off
    return err


def stylize_refused(model: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> str:
    out = image.parent / "out.png"
    err = one_line_error(["stylize", str(image), "--model", str(model), "--out", str(out), "--device", "cpu"], capsys)
    assert not out.exists()
    return err


def rewrite_zip(src: Path, dst: Path, change: dict[str, bytes]) -> Path:
    """A copy of zip `src` with some members replaced, CRCs recomputed: crafted, not damaged."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change.get(info.filename, zin.read(info.filename)))
    return dst


def member(path: Path, suffix: str) -> str:
    with zipfile.ZipFile(path) as z:
        return next(n for n in z.namelist() if n.endswith(suffix))


def torch_bytes(obj: Any, path: Path) -> bytes:
    torch.save(obj, path)
    return path.read_bytes()


# --- zip bombs and bounded loads ----------------------------------------------------------------

ZEROS_CHUNK = 64 << 20


@functools.lru_cache(maxsize=None)
def deflated_zeros(size: int) -> tuple[bytes, int]:
    """(a raw deflate stream of `size` zero bytes, their CRC-32), built in a second: one 64 MiB
    block ended by a full flush (byte-aligned, no reference before it) repeated, then a last block."""
    assert size % ZEROS_CHUNK == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block, zeros, crc = c.compress(bytes(ZEROS_CHUNK)) + c.flush(zlib.Z_FULL_FLUSH), bytes(ZEROS_CHUNK), 0
    for _ in range(size // ZEROS_CHUNK):
        crc = zlib.crc32(zeros, crc)
    return block * (size // ZEROS_CHUNK) + b"\x03\x00", crc


def bomb_zip(src: Path, dst: Path, name: str, size: int = 3 << 30) -> Path:
    """A copy of zip `src` whose member `name` (added if new) is `size` zero bytes, deflated, with
    its true CRC and size: what zipfile reads without complaint, until it has decompressed it."""
    with zipfile.ZipFile(src) as zin:
        members = [(i.filename, zin.read(i.filename)) for i in zin.infolist() if i.filename != name]
    out, central = bytearray(), bytearray()
    for filename, data in [*members, (name, None)]:
        if data is None:
            method, (body, crc), usize = 8, deflated_zeros(size), size
        else:
            method, body, crc, usize = 0, data, zlib.crc32(data), len(data)
        fname, offset = filename.encode(), len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(body), usize, len(fname), 0)
        out += fname + body
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(body), usize,
                               len(fname), 0, 0, 0, 0, 0, offset) + fname
    n = len(members) + 1
    dst.write_bytes(bytes(out + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), len(out), 0)))
    return dst


CHILD = """
import json, resource, sys, time, traceback
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import importlib
from fst.core.errors import FstError
module, name = {"checkpoint": ("checkpoint", "transformer_from_checkpoint"), "exported": ("exported", "load_exported"),
                "resume": ("resume", "read_resumable"), "export": ("export", "export_model")}[sys.argv[1]]
function = getattr(importlib.import_module(f"fst.artefacts.{module}"), name)
load = (lambda p: function(p, p + ".exported.pt")) if sys.argv[1] == "export" else function
out, start = {}, time.perf_counter()
try:
    load(sys.argv[2])
    out["ok"] = True
except FstError as e:
    out["error"] = str(e)
except BaseException:
    out["traceback"] = traceback.format_exc()[-3000:]
out["seconds"] = time.perf_counter() - start
# VmHWM: this image's own peak (ru_maxrss keeps the forking parent's peak across exec)
out["rss_mb"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps(out))
"""


def load_in_child(kind: str, path: Path, timeout: float = 60, address_space: int = 8 << 30) -> dict[str, Any]:
    """Load `path` as a checkpoint, an exported model or a checkpoint to resume from, or export it, in a child process
    capped at `address_space` bytes (torch alone maps ~3 GiB) and `timeout` seconds: {"ok": True} or
    {"error": FstError's text} or {"traceback": ...}, with the load's seconds and peak resident MB."""
    paths = [os.environ.get("PYTHONPATH", ""), str(Path(__file__).resolve().parents[1])]  # an fst given first wins
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), str(address_space)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"traceback": f"still loading after {timeout} s", "seconds": timeout}
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"traceback": done.stderr[-3000:], "seconds": None}


def char_device(path: Path) -> Path:
    """A character device like /dev/null, made in a test folder (root only)."""
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path
