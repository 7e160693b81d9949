"""ONNX models read as data: the protobuf parsed without following external-data paths (onnxruntime
would read other files), every node a standard ONNX op, and only once the file is no larger than
the network its metadata describes can need (`onnx.load` reads a file whole, and parsing it
holds it twice: 600 MB of padding cost 2.1 GB)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from fst.core.errors import FstError, first_line
from fst.untrusted.torch_files import MAX_METADATA

# ModelProto's metadata_props field, and how many top-level fields a scan for it reads: fst's files
# hold a dozen fields and about thirty metadata entries.
METADATA_FIELD = 14
MAX_TOP_FIELDS = 10_000


def metadata_props(path: Path) -> dict[str, str]:
    """An ONNX model's ``metadata_props``, read from its top-level protobuf fields; every other field
    (the graph) is skipped, never read. The scan stops at the first thing that is not a field ONNX
    writes, or at the file's end: `read_onnx` then parses the whole file and says what is wrong."""
    import onnx

    props: dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for _ in range(MAX_TOP_FIELDS):
                tag = _varint(f)
                if tag is None or not _skip_or_read(f, tag, props, onnx, path) or f.tell() == size:
                    return props
                if f.tell() > size:
                    raise FstError(f"{path}: not a readable ONNX model (truncated or corrupt?): field {tag >> 3} "
                                   f"runs {f.tell() - size} bytes past the end of the file")
    except OSError as e:
        raise FstError(f"{path}: cannot read: {first_line(e)}") from None
    raise FstError(f"{path}: refused: more than {MAX_TOP_FIELDS} top-level fields; fst's ONNX files hold a few dozen")


def _skip_or_read(f: IO[bytes], tag: int, props: dict[str, str], onnx: Any, path: Path) -> bool:
    """Past one field (a metadata entry read into `props`); False if it is no field ONNX writes."""
    field, wire = tag >> 3, tag & 7
    if field == 0 or wire not in (0, 1, 2, 5):
        return False
    if wire == 0:
        return _varint(f) is not None
    length = {1: 8, 5: 4}.get(wire) or _varint(f)
    if length is None:
        return False
    if wire == 2 and field == METADATA_FIELD:
        if length > MAX_METADATA:
            raise FstError(f"{path}: refused: a metadata entry of {length} bytes; fst's are under {MAX_METADATA}")
        entry = onnx.StringStringEntryProto()
        try:
            entry.ParseFromString(f.read(length))
        except Exception:  # noqa: BLE001 - protobuf's DecodeError; read_onnx says it in full
            return False
        props[entry.key] = entry.value
    else:
        f.seek(length, os.SEEK_CUR)
    return True


def _varint(f: IO[bytes]) -> int | None:
    """A protobuf varint (at most 10 bytes), or None at the file's end or for a longer one."""
    value = 0
    for shift in range(0, 70, 7):
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None


def read_onnx(path: Path, max_bytes: int) -> Any:
    """The ONNX model proto, parsed without following external-data references, after checking
    the file is at most `max_bytes` (what the caller knows its network can need), every tensor is
    inside the file and every node is a standard ONNX op (what fst's exports use)."""
    import onnx

    size = path.stat().st_size
    if size > max_bytes:
        raise FstError(f"{path}: refused: a {size}-byte file, more than the {max_bytes} bytes that the network its "
                       "metadata describes can fill (data appended?)")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's and onnx's errors for a damaged file
        raise FstError(f"{path}: not a readable ONNX model (truncated or corrupt?): {first_line(e)}") from None
    graphs = [proto.graph]
    while graphs:
        graph = graphs.pop()
        tensors = list(graph.initializer) + [t for s in graph.sparse_initializer for t in (s.values, s.indices)]
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise FstError(f"{path}: refused: node {node.name or node.op_type} is a {node.domain}.{node.op_type} op, "
                               "not a standard ONNX one as in fst's exports")
            for a in node.attribute:
                tensors += [*([a.t] if a.HasField("t") else []), *a.tensors]
                graphs += [*([a.g] if a.HasField("g") else []), *a.graphs]
        for t in tensors:
            if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
                raise FstError(f"{path}: refused: tensor {t.name!r} points to data in another file; "
                               "fst reads only what is inside the .onnx file")
    if proto.functions:
        raise FstError(f"{path}: refused: it defines ONNX functions, which fst's exports never do")
    return proto
