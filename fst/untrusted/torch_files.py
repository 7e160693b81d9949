"""What `torch.save` writes, read as data: zip archives (every member CRC-checked first) and the
legacy pre-zip format; their pickles go through `fst.untrusted.pickles`."""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import torch

from fst.core.errors import FstError, first_line
from fst.untrusted.pickles import Storage, tensor_from_bytes, unpickle

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's pre-zip format starts with these pickles
LEGACY_PROTOCOL = 1001


def open_zip(src: Path | bytes, origin: str, what: str) -> zipfile.ZipFile:
    """A zip archive whose every member passed its CRC-32 check: flipped bytes stop here."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(src) if isinstance(src, bytes) else src)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise FstError(f"{origin}: not a readable {what} (truncated or corrupt?): {first_line(e)}") from None
    try:
        bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, NotImplementedError) as e:
        bad = f"? ({first_line(e)})"
    if bad is not None:
        zf.close()
        raise FstError(f"{origin}: damaged: member {bad} fails its CRC check (flipped bytes?); fst uses no damaged file")
    return zf


def pickle_root(zf: zipfile.ZipFile, origin: str, what: str) -> str:
    """The folder that holds a torch zip archive's ``data.pkl`` (its top-level record folder)."""
    roots = [n[: -len("/data.pkl")] for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(roots) != 1:
        raise FstError(f"{origin}: not a {what} (a zip archive, but not one torch wrote)")
    order = zf.namelist()
    if f"{roots[0]}/byteorder" in order and zf.read(f"{roots[0]}/byteorder") != sys.byteorder.encode():
        raise FstError(f"{origin}: written on a machine of the other byte order; fst reads {sys.byteorder}-endian files")
    return roots[0]


def zip_storages(zf: zipfile.ZipFile, root: str) -> Storage:
    """Storages read from ``<root>/data/<key>``, each built once (tensors may share one)."""
    built: dict[str, torch.Tensor] = {}

    def storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        if key not in built:
            name = f"{root}/data/{key}"
            built[key] = tensor_from_bytes(zf.read(name), dtype, numel, name)
        if built[key].dtype != dtype:
            raise pickle.UnpicklingError(f"storage {key} read as two dtypes")
        return built[key]

    return storage


def read_torch(src: Path | bytes, origin: str, what: str = "torch file") -> Any:
    """What `torch.save` wrote (zip or legacy format, a file or its bytes), read as data."""
    head = src[:4] if isinstance(src, bytes) else _head(src)
    if head.startswith(b"PK"):
        with open_zip(src, origin, what) as zf:
            root = pickle_root(zf, origin, what)
            return unpickle(zf.read(f"{root}/data.pkl"), origin, what, zip_storages(zf, root))
    if head.startswith(b"\x80"):  # a pickle: the legacy format, or no torch file at all
        size = len(src) if isinstance(src, bytes) else src.stat().st_size
        with (io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")) as f:
            return _read_legacy(f, size, origin, what)
    raise FstError(f"{origin}: not a {what}: neither a zip archive nor a pickle that torch.save wrote")


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError as e:
        raise FstError(f"{path}: cannot read: {first_line(e)}") from None


def _read_legacy(f: IO[bytes], size: int, origin: str, what: str) -> Any:
    """torch.save's pre-zip format: magic, protocol, system info, the object (its storages as
    persistent ids), the storage keys, then each storage as an 8-byte count and raw bytes."""
    if unpickle(f, origin, what) != LEGACY_MAGIC or unpickle(f, origin, what) != LEGACY_PROTOCOL:
        raise FstError(f"{origin}: not a {what} (a pickle, but not one torch.save wrote)")
    info = unpickle(f, origin, what)
    if not isinstance(info, dict) or info.get("little_endian") is not (sys.byteorder == "little"):
        raise FstError(f"{origin}: written on a machine of the other byte order; fst reads {sys.byteorder}-endian files")
    storages: dict[str, torch.Tensor] = {}

    def storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        if key not in storages:  # filled below, once the data after the pickles is reached
            if numel * torch.empty(0, dtype=dtype).element_size() > size:
                raise pickle.UnpicklingError(f"storage {key} is larger than the file")
            storages[key] = torch.empty(numel, dtype=dtype)
        return storages[key]

    obj = unpickle(f, origin, what, storage)
    keys = unpickle(f, origin, what)
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise FstError(f"{origin}: not a readable {what} (truncated or corrupt?): storage list does not match")
    for key in keys:
        t = storages[key]
        count = int.from_bytes(f.read(8), "little")
        raw = f.read(count * t.element_size())
        if count != t.numel() or len(raw) != count * t.element_size():
            raise FstError(f"{origin}: not a readable {what} (truncated or corrupt?): storage {key} is cut short")
        if raw:
            t.copy_(torch.frombuffer(bytearray(raw), dtype=t.dtype))
    return obj


def member(zf: zipfile.ZipFile, name: str) -> bytes | None:
    """A member's bytes, or None when the archive has no such member."""
    return zf.read(name) if name in zf.namelist() else None
