"""ONNX models read as data: the protobuf parsed without following external-data paths (onnxruntime
would read other files), every node a standard ONNX op."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fst.core.errors import FstError, first_line


def read_onnx(path: Path) -> Any:
    """The ONNX model proto, parsed without following external-data references, after checking
    every tensor is inside the file and every node is a standard ONNX op (what fst's exports use)."""
    import onnx

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
