"""What `torch.save` writes, read as data: zip archives (every member's declared size bounded, then
CRC-checked) and the legacy pre-zip format; their pickles go through `fst.untrusted.pickles`."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from fst.core.errors import FstError, first_line
from fst.untrusted.pickles import Storage, tensor_from_bytes, unpickle

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's pre-zip format starts with these pickles
LEGACY_PROTOCOL = 1001

# torch.save, torch.jit.save, torch.export.save and fst store every member uncompressed, so an honest
# archive's members add up to about its own size. One repacked with deflate expands a few times at
# most: weights (float bytes) barely compress, and its text (JSON, code) is a small part. More
# declared bytes than this is a zip bomb (3 GiB of zeros deflate into 3 MB): refused from the
# central directory, before anything is decompressed. zipfile stops every read at the declared
# size, so this bounds every decompression, the CRC check's included.
EXPANSION = 4
EXPANSION_SLACK = 1 << 20  # a small archive whose text was deflated: its JSON and code, ten times over
# A pickle describes tensors, it does not hold them: a checkpoint's data.pkl is tens of KB, a
# TorchScript module's a few hundred. Metadata (fst.json, AOTInductor's) is under a few KB.
MAX_PICKLE = 64 << 20
MAX_METADATA = 1 << 20

# zipfile reads the whole central directory when it opens an archive, one ZipInfo per member (a
# million members: 28 s and 400 MB before anything is checked). fst's files hold one member per
# tensor and a few more: a training checkpoint of the default network ~130 (its ~60 weights,
# Adam's two moments and step for each, each style's statistics, Lightning's and torch's records),
# an export ~120, an AOTInductor package a few dozen. 10,000 leaves room for a spare copy of every
# weight and the statistics of a hundred styles and more. A member's directory record is 46 bytes
# and its name (a torch archive's is <file stem>/data/<n>, a stem at most 255 bytes): 400 bytes on
# average is generous, so a directory that is larger holds more members than its end record says.
MAX_MEMBERS = 10_000
MAX_RECORD = 400
END = struct.Struct("<4s4H2LH")  # end of central directory: signature, disks, counts, size, offset, comment
END64 = struct.Struct("<4sQ2H2L4Q")  # its ZIP64 form: signature, size, versions, disks, counts, size, offset
LOCATOR64 = struct.Struct("<4sLQL")  # where the ZIP64 end record is

Check = Callable[[Any, int], None]  # (the object with meta-device tensors, bytes its storages hold)


def zip_directory(src: Path | bytes, origin: str, what: str) -> zipfile.ZipFile:
    """A zip archive opened (its central directory read) once `bounded_directory` passed, holding
    exactly the members its end record declares."""
    declared = bounded_directory(src, origin, what)
    try:
        zf = zipfile.ZipFile(io.BytesIO(src) if isinstance(src, bytes) else src)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise FstError(f"{origin}: not a readable {what} (truncated or corrupt?): {first_line(e)}") from None
    if declared is not None and len(zf.infolist()) != declared:
        found = len(zf.infolist())
        zf.close()
        raise FstError(f"{origin}: refused: its zip directory holds {found} members, its end record says {declared}")
    return zf


def bounded_directory(src: Path | bytes, origin: str, what: str) -> int | None:
    """The member count a zip's end record declares, once it is at most `MAX_MEMBERS` in a central
    directory of at most `MAX_RECORD` bytes a member (None without an end record: zipfile will say
    what is wrong). Only the file's tail is read: nothing per member."""
    try:
        with io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb") as f:
            declared = declared_members(f)
    except (OSError, struct.error) as e:
        raise FstError(f"{origin}: not a readable {what} (truncated or corrupt?): {first_line(e)}") from None
    if declared is None:
        return None
    count, directory = declared
    if count > MAX_MEMBERS:
        raise FstError(f"{origin}: refused: its zip directory declares {count} members; a {what} "
                       f"fst reads holds at most {MAX_MEMBERS}")
    if directory > max(count, 1) * MAX_RECORD:
        raise FstError(f"{origin}: refused: its zip directory is {directory} bytes for the {count} members "
                       "it declares (it holds more than it says)")
    return count


def declared_members(f: IO[bytes]) -> tuple[int, int] | None:
    """(members, central directory bytes) as a zip's end record (or its ZIP64 record) declares
    them, reading only the file's tail; None when there is no end record (zipfile says why)."""
    size = f.seek(0, io.SEEK_END)
    tail_start = max(0, size - END.size - 0xFFFF)  # the record, then a comment of at most 64 KiB
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < END.size:
        return None
    _, _, _, _, count, directory, _, _ = END.unpack_from(tail, at)
    locator = tail_start + at - LOCATOR64.size
    if locator >= 0:
        f.seek(locator)
        signature, _, end64, _ = LOCATOR64.unpack(f.read(LOCATOR64.size))
        if signature == b"PK\x06\x07":
            f.seek(end64)
            record = f.read(END64.size)
            if len(record) == END64.size and record[:4] == b"PK\x06\x06":
                _, _, _, _, _, _, _, count, directory, _ = END64.unpack(record)
    return count, directory


def open_zip(src: Path | bytes, origin: str, what: str) -> zipfile.ZipFile:
    """A zip archive of at most `MAX_MEMBERS` members (`zip_directory`) whose members declare no more
    bytes than `EXPANSION` allows and whose every member passed its CRC-32 check: zip bombs and
    flipped bytes stop here."""
    zf = zip_directory(src, origin, what)
    size = len(src) if isinstance(src, bytes) else src.stat().st_size
    declared = sum(info.file_size for info in zf.infolist())
    if declared > EXPANSION * size + EXPANSION_SLACK:
        biggest = max(zf.infolist(), key=lambda info: info.file_size)
        zf.close()
        raise FstError(f"{origin}: refused: its members declare {declared} bytes in a {size}-byte file (member "
                       f"{biggest.filename}: {biggest.file_size} bytes from {biggest.compress_size}); a zip bomb?")
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


def read_member(zf: zipfile.ZipFile, name: str, limit: int, origin: str) -> bytes:
    """A member's bytes, once its declared size is within `limit` (nothing is decompressed before)."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise FstError(f"{origin}: refused: member {name} declares {info.file_size} bytes; "
                       f"what fst writes there is under {limit}")
    return zf.read(info)


def zip_storages(zf: zipfile.ZipFile, root: str) -> Storage:
    """Storages read from ``<root>/data/<key>``, each built once (tensors may share one), each read
    only when its member declares exactly the bytes its record says."""
    built: dict[str, torch.Tensor] = {}

    def storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        if key not in built:
            name = f"{root}/data/{key}"
            nbytes = numel * torch.empty(0, dtype=dtype).element_size()
            if zf.getinfo(name).file_size != nbytes:
                raise pickle.UnpicklingError(f"{name} declares {zf.getinfo(name).file_size} bytes, its record says {nbytes}")
            built[key] = tensor_from_bytes(zf.read(name), dtype, numel, name)
        if built[key].dtype != dtype:
            raise pickle.UnpicklingError(f"storage {key} read as two dtypes")
        return built[key]

    return storage


def meta_storages(total: list[int]) -> Storage:
    """Storages on the meta device: tensors with their records' shapes, dtypes and layouts, and no
    bytes; `total[0]` adds up the bytes the storages would hold."""
    built: dict[str, torch.Tensor] = {}

    def storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        if key not in built:
            built[key] = torch.empty(numel, dtype=dtype, device="meta")
            total[0] += numel * built[key].element_size()
        if built[key].dtype != dtype:
            raise pickle.UnpicklingError(f"storage {key} read as two dtypes")
        return built[key]

    return storage


def read_torch(src: Path | bytes, origin: str, what: str = "torch file", check: Check | None = None) -> Any:
    """What `torch.save` wrote (zip or legacy format, a file or its bytes), read as data. `check`
    sees the object first, its tensors on the meta device (zip) or not yet filled (legacy), with
    the bytes its storages hold: it can refuse a file before its tensors are read."""
    head = src[:4] if isinstance(src, bytes) else _head(src)
    if head.startswith(b"PK"):
        with open_zip(src, origin, what) as zf:
            root = pickle_root(zf, origin, what)
            raw = read_member(zf, f"{root}/data.pkl", MAX_PICKLE, origin)
            if check is not None:
                total = [0]
                check(unpickle(raw, origin, what, meta_storages(total)), total[0])
            return unpickle(raw, origin, what, zip_storages(zf, root))
    if head.startswith(b"\x80"):  # a pickle: the legacy format, or no torch file at all
        size = len(src) if isinstance(src, bytes) else src.stat().st_size
        with (io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")) as f:
            return _read_legacy(f, size, origin, what, check)
    raise FstError(f"{origin}: not a {what}: neither a zip archive nor a pickle that torch.save wrote")


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError as e:
        raise FstError(f"{path}: cannot read: {first_line(e)}") from None


def _read_legacy(f: IO[bytes], size: int, origin: str, what: str, check: Check | None = None) -> Any:
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
    if check is not None:  # the storages are allocated (within the file's size), not read
        check(obj, sum(t.numel() * t.element_size() for t in storages.values()))
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


def member(zf: zipfile.ZipFile, name: str, origin: str, limit: int = MAX_METADATA) -> bytes | None:
    """A (metadata) member's bytes, or None when the archive has no such member."""
    return read_member(zf, name, limit, origin) if name in zf.namelist() else None
