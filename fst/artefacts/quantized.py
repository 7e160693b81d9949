"""int8 ONNX artefacts (``fst export --quantize int8``), read as data and run as fst's own graph.

Such a file is fst's fp32 ONNX graph with each Conv quantized in ONNX's QDQ form, as onnxruntime's
``quantize_static`` writes it (``fst.artefacts.quantize``): its input through a QuantizeLinear and a
DequantizeLinear (uint8, one scale and zero point), its weight an int8 initializer behind a
DequantizeLinear (one scale a output channel, zero points 0), its bias an int32 one likewise, its
output through a QuantizeLinear and a DequantizeLinear; every Conv but the last, the output conv
(9x9, 32 -> 3 channels at full size), which stays fp32: int8, onnxruntime unfolded its input into
2,592 bytes a pixel (9 GB peak at 1080p against 4 GB) and ran it no faster. Nothing else in the graph
is quantized: instance norm, padding and the upsampling run in fp32 between the int8 convolutions.

`conv_quant` reads those numbers and refuses any other arrangement (a Q/DQ node anywhere else, a
weight that is not int8, a zero point that is not 0, a scale that is not finite and positive).
`dequantized` turns the weights back into the fp32 tensors fst checks against the network config
and the recorded digest, as for every artefact. `quant_digest` covers every number the int8 graph
adds, so a tampered activation scale is refused as a flipped weight is.

The artefact's own graph never runs: `with_qdq` puts those numbers into fp32 ONNX that fst exports
itself from the checked weights, and onnxruntime runs that (`int8_runner`), from memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from fst.core.errors import FstError, first_line

QUANTIZE = ("int8",)  # what `fst export --quantize` offers
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class ConvQuant:
    """One Conv's int8 numbers, as the QDQ graph holds them."""

    x_scale: np.ndarray  # () float32: the input's
    x_zero: np.ndarray  # () uint8
    w: np.ndarray  # (O, I, kh, kw) int8
    w_scale: np.ndarray  # (O,) float32
    b: np.ndarray  # (O,) int32
    b_scale: np.ndarray  # (O,) float32
    y_scale: np.ndarray  # () float32: the output's
    y_zero: np.ndarray  # () uint8


def conv_quant(proto: Any, origin: str) -> list[ConvQuant]:
    """Each Conv's int8 numbers in graph order (fst's module order), or one line saying how the
    graph differs from what `fst export --quantize int8` writes."""
    try:
        return _conv_quant(proto, origin)
    except FstError:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed graph fails in many places
        raise FstError(f"{origin}: its int8 graph is not one fst writes: {first_line(e)}") from None


def _conv_quant(proto: Any, origin: str) -> list[ConvQuant]:
    from onnx import numpy_helper

    graph = proto.graph
    init = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def bad(what: str) -> FstError:
        return FstError(f"{origin}: its int8 graph is not one fst writes: {what}")

    def array(name: str, dtype: type, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if name not in init:
            raise bad(f"{name!r} is computed, not a stored number")
        a = numpy_helper.to_array(init[name])
        if a.dtype != dtype or (shape is not None and a.shape != shape):
            raise bad(f"{name!r} is {a.dtype} {a.shape}, not {np.dtype(dtype)} {shape or ''}")
        if a.dtype == np.float32 and not (np.isfinite(a).all() and (a > 0).all()):
            raise bad(f"scale {name!r} is not finite and positive")
        return a

    def dq(name: str, op: str = "DequantizeLinear") -> Any:
        node = producer.get(name)
        if node is None or node.op_type != op or len(node.input) != 3:
            raise bad(f"{name!r} does not come from a {op} with scale and zero point")
        return node

    def axis(node: Any, want: int | None) -> None:
        """Per output channel (axis 0) for weights; none (or ONNX's default, 1) for one scalar scale."""
        got = {a.name: a.i for a in node.attribute}
        if got not in ([{"axis": want}] if want is not None else [{}, {"axis": 1}]):
            raise bad(f"{node.op_type} {node.name!r} has attributes {got}")

    def activation(q: Any, d: Any) -> tuple[np.ndarray, np.ndarray]:
        axis(q, None), axis(d, None)
        scale, zero = array(q.input[1], np.float32, ()), array(q.input[2], np.uint8, ())
        if (array(d.input[1], np.float32, ()) != scale).any() or (array(d.input[2], np.uint8, ()) != zero).any():
            raise bad(f"{d.name!r} undoes {q.name!r} with other numbers")
        return scale, zero

    found = []
    convs = [n for n in graph.node if n.op_type == "Conv"][:-1]  # the output conv stays fp32
    for conv in convs:
        if len(conv.input) != 3:
            raise bad(f"Conv {conv.name!r} has no bias")
        x_dq = dq(conv.input[0])
        x_scale, x_zero = activation(dq(x_dq.input[0], "QuantizeLinear"), x_dq)
        w_dq, b_dq = dq(conv.input[1]), dq(conv.input[2])
        axis(w_dq, 0), axis(b_dq, 0)
        w = array(w_dq.input[0], np.int8)
        if w.ndim != 4:
            raise bad(f"weight {w_dq.input[0]!r} has {w.ndim} dimensions, not 4")
        out = (w.shape[0],)
        w_scale, b = array(w_dq.input[1], np.float32, out), array(b_dq.input[0], np.int32, out)
        b_scale = array(b_dq.input[1], np.float32, out)
        if array(w_dq.input[2], np.int8, out).any() or array(b_dq.input[2], np.int32, out).any():
            raise bad(f"Conv {conv.name!r}'s weight or bias has a zero point that is not 0")
        after = consumers.get(conv.output[0], [])
        if len(after) != 1 or after[0].op_type != "QuantizeLinear" or len(consumers.get(after[0].output[0], [])) != 1:
            raise bad(f"Conv {conv.name!r}'s output is not quantized once")
        y_scale, y_zero = activation(after[0], dq(consumers[after[0].output[0]][0].output[0]))
        found.append(ConvQuant(x_scale, x_zero, w, w_scale, b, b_scale, y_scale, y_zero))
    counts = {op: sum(n.op_type == op for n in graph.node) for op in QDQ_OPS}
    if counts != {"QuantizeLinear": 2 * len(convs), "DequantizeLinear": 4 * len(convs)}:
        raise bad(f"{counts['QuantizeLinear']} QuantizeLinear and {counts['DequantizeLinear']} DequantizeLinear nodes "
                  f"for {len(convs)} int8 Conv layers; fst writes 2 and 4 for each, and none elsewhere")
    return found


def dequantized(q: ConvQuant) -> tuple[torch.Tensor, torch.Tensor]:
    """A Conv's fp32 weight and bias, as DequantizeLinear computes them."""
    w = q.w.astype(np.float32) * q.w_scale.reshape(-1, 1, 1, 1)
    return torch.from_numpy(w), torch.from_numpy(q.b.astype(np.float32) * q.b_scale)


def quant_digest(params: list[ConvQuant]) -> str:
    """sha256 over every number the int8 graph adds, in graph order (recorded at export, checked on read)."""
    h = hashlib.sha256()
    for k, q in enumerate(params):
        for f in fields(q):
            a = np.ascontiguousarray(getattr(q, f.name))
            h.update(f"{k}.{f.name}:{a.dtype}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def with_qdq(proto: Any, params: list[ConvQuant], origin: str) -> Any:
    """fst's fp32 ONNX graph `proto` with each Conv quantized by `params` (in place; returned)."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    convs = [n for n in graph.node if n.op_type == "Conv"][:-1]
    if len(convs) != len(params):
        raise FstError(f"{origin}: {len(params)} quantized Conv layers for a network of {len(convs)}")
    nodes: list[Any] = []
    dims = {t.name: tuple(t.dims) for t in graph.initializer}
    for k, conv in enumerate(convs):
        q, p = params[k], f"fst_q{k}_"
        shape = dims.get(conv.input[1])
        if shape != q.w.shape:
            raise FstError(f"{origin}: quantized Conv {k} has a {q.w.shape} weight; the network's is {shape}")
        stored = {"xs": q.x_scale, "xz": q.x_zero, "w": q.w, "ws": q.w_scale, "wz": np.zeros_like(q.w_scale, np.int8),
                  "b": q.b, "bs": q.b_scale, "bz": np.zeros_like(q.b), "ys": q.y_scale, "yz": q.y_zero}
        graph.initializer.extend(numpy_helper.from_array(np.asarray(v), p + n) for n, v in stored.items())
        x, y = conv.input[0], conv.output[0]
        nodes[len(nodes):] = [
            helper.make_node("QuantizeLinear", [x, p + "xs", p + "xz"], [p + "xq"]),
            helper.make_node("DequantizeLinear", [p + "xq", p + "xs", p + "xz"], [p + "x"]),
            helper.make_node("DequantizeLinear", [p + "w", p + "ws", p + "wz"], [p + "wf"], axis=0),
            helper.make_node("DequantizeLinear", [p + "b", p + "bs", p + "bz"], [p + "bf"], axis=0),
        ]
        conv.input[:] = [p + "x", p + "wf", p + "bf"]
        if any(o.name == y for o in graph.output):
            raise FstError(f"{origin}: a network whose output is a Conv's; fst's end in a clamp")
        for other in [*graph.node, *nodes]:  # what read the Conv's output now reads its quantized copy
            other.input[:] = [p + "y" if i == y else i for i in other.input]
        nodes[len(nodes):] = [helper.make_node("QuantizeLinear", [y, p + "ys", p + "yz"], [p + "yq"]),
                              helper.make_node("DequantizeLinear", [p + "yq", p + "ys", p + "yz"], [p + "y"])]
    graph.node.extend(nodes)
    _sort(graph)
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]  # the fp32 weights the int8 ones replace go
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return proto


def _sort(graph: Any) -> None:
    """The graph's nodes in an order where each comes after what it reads (ONNX requires it)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(not i or i in known for i in n.input)]
        if not ready:
            raise FstError("an int8 graph with a cycle")
        for n in ready:
            known.update(n.output)
        ordered += ready
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def int8_runner(proto: Any, n_inputs: int, threads: int | None = None) -> Callable[..., torch.Tensor]:
    """onnxruntime on `proto` (a graph fst built), as a callable of fst's calling convention: (B, 3, H,
    W) float in [0, 1] (and style weights) in, the same dtype out."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()][:n_inputs]

    def run(x: torch.Tensor, *w: torch.Tensor) -> torch.Tensor:
        feed = {n: t.detach().to("cpu", torch.float32).contiguous().numpy() for n, t in zip(names, (x, *w))}
        return torch.from_numpy(session.run(None, feed)[0]).to(x.device, x.dtype)

    return run
