"""Reading `fst export` artefacts (the formats are described in `fst.artefacts.export`, which writes them).

Reading (`load_exported`, `open_exported`, `transformer_from_exported`): fst runs none of an artefact's code or
graph, whoever wrote it. It reads the weights and ``fst.json`` as data (`fst.untrusted`: CRC-checked
zips, pickles limited to tensors, no ONNX external data, code or graph calling anything fst's
exporter never writes refused), checks them against the transformer config and the digest, and
runs its own `TransformerNet` with them, in the exported dtype and memory format, behind the
TorchScript calling convention: any float dtype in, the same dtype out. The export tests check
that each runtime gives what that network gives. A universal network's artefact (metadata ``kind:
"universal"``) is checked by `fst.artefacts.universal_exported` and runs in fst's own `UniversalNet`
(``model(x, stats)``) or `BoundStyles` (a painting baked in: ``model(x)``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fst.artefacts import compiled
from fst.artefacts.checkpoint import check_finite, check_weights, net_config, transformer_from_state
from fst.artefacts.metadata import check_metadata
from fst.artefacts.quantized import ConvQuant, conv_quant, dequantized, quant_digest
from fst.artefacts.universal_checkpoint import is_universal
from fst.artefacts.universal_exported import (
    check_universal_weights,
    is_baked,
    onnx_universal_state,
    stats_checked,
    universal_from_state,
    universal_onnx_bytes,
)
from fst.artefacts.sniff import sniff_format
from fst.core.errors import FstError, first_line
from fst.models.transformer import ConditionalInstanceNorm, TransformerNet
from fst.models.weights import weights_digest
from fst.untrusted.onnx_files import metadata_props, read_onnx
from fst.untrusted.plain_data import parse_json
from fst.untrusted.torch_export import read_pt2
from fst.untrusted.torchscript import read_torchscript

FORMATS = ("torchscript", "export", "onnx")  # pure data: fst reads and runs them without trusting them
COMPILED = ("aoti",)  # machine code: runs only with --trust-compiled (fst.artefacts.compiled)
SUFFIXES = {"torchscript": ".pt", "export": ".pt2", "onnx": ".onnx", "aoti": ".pt2"}
BY_SUFFIX = {".pt": "torchscript", ".pt2": "export", ".onnx": "onnx"}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
META_FILE = "fst.json"
EXPORT_VERSION = 1
ONNX_OPSET = 17


Model = Callable[..., torch.Tensor]


def adapted(fn: Callable[..., torch.Tensor], dtype: torch.dtype, channels_last: bool = False) -> Callable[..., torch.Tensor]:
    """`InferenceNet`'s calling convention in Python, for the formats that take their own dtype;
    style weights, for a network of several styles, pass through."""

    def run(x: torch.Tensor, *w: torch.Tensor) -> torch.Tensor:
        y = x.to(dtype)
        if channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return fn(y, *w).to(x.dtype)

    return run


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> tuple[Model, dict[str, Any]]:
    """(callable taking and returning (B, 3, H, W) float in [0, 1] on `device`, the fst metadata).

    The callable is fst's own TransformerNet with the artefact's weights, in the artefact's dtype and
    memory format, behind the calling convention every artefact has (any float dtype in, the same
    dtype out): fst never runs an artefact's code or graph (`fst.untrusted`)."""
    net, meta = open_exported(path, device)
    run = adapted(net, DTYPES[meta["dtype"]], meta["channels_last"])
    if is_universal(meta) and not is_baked(meta):  # model(x, stats): statistics of the wrong shape are one line
        run = stats_checked(run, meta, str(path))
    return run, meta


def open_exported(path: str | Path, device: str | torch.device = "cpu",
                  checked: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """fst's TransformerNet (or, for a universal network's artefact, `UniversalNet` or `BoundStyles`:
    `fst.artefacts.universal_exported`) with an artefact's weights on `device`, in the artefact's dtype
    and memory format, and the metadata; `checked`: what `read_exported` already returned for `path`."""
    state, meta = checked or read_exported(path)
    net = model_from_state(meta, state, str(path))
    net = net.requires_grad_(False).to(torch.device(device), DTYPES[meta["dtype"]])  # inference only
    if meta["channels_last"]:
        net = net.to(memory_format=torch.channels_last)
    return net, meta


def model_from_state(meta: dict[str, Any], state: dict[str, torch.Tensor], origin: str) -> nn.Module:
    """The eval-mode fp32 network an artefact's checked weights and metadata describe."""
    if is_universal(meta):
        return universal_from_state(meta, state, origin)
    return transformer_from_state(meta["net"], state, origin)


def transformer_from_exported(path: str | Path) -> tuple[TransformerNet, dict[str, Any]]:
    """An eager, fp32, eval-mode TransformerNet with an artefact's weights (tiling needs module hooks)."""
    state, meta = read_exported(path)
    return transformer_from_state(meta["net"], state, str(path)), meta


def exported_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The transformer's weights inside an artefact, keyed as in `TransformerNet.state_dict()`."""
    return read_exported(path)[0]


def read_exported(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An artefact's weights and fst metadata, read as data (`fst.untrusted`) and checked: the
    metadata's fields, the weights' names and shapes against its config, every weight in the
    exported dtype, the digest recorded at export, and every value finite."""
    return read_exported_int8(path)[:2]


def read_exported_int8(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[ConvQuant]]:
    """`read_exported`, and an int8 ONNX artefact's int8 numbers (`fst.artefacts.quantized`; none
    for any other artefact)."""
    path = Path(path)
    if not path.is_file():
        raise FstError(f"{path}: model not found")
    format = sniff_format(path)
    if format not in READERS:
        raise FstError(f"{path}: not an exported fst model (torchscript, .pt2 or .onnx)")
    state, meta, *int8 = READERS[format](path)  # ONNX's reader adds the int8 numbers
    params = int8[0] if int8 else []
    if meta.get("quantize") is not None and format != "onnx":
        raise FstError(f"{path}: fst metadata that says quantized, in a {format} file; fst quantizes ONNX only")
    return (*check_exported(path, state, meta), params)


def check_exported(path: Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`read_exported`'s checks of weights and metadata read from `path`."""
    if is_universal(meta):
        state = check_universal_weights(meta, state, str(path))
    else:
        check_weights(meta.get("net"), state, str(path))
    wrong = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor) or v.dtype != DTYPES[meta["dtype"]])
    if wrong:
        raise FstError(f"{path}: weight {wrong[0]} is not {meta['dtype']}, the dtype its metadata records")
    if "weights_sha256" in meta and weights_digest(state) != meta["weights_sha256"]:
        raise FstError(f"{path}: damaged: its weights do not match the digest recorded at export (flipped bytes?)")
    check_finite(state, str(path))
    return state, meta


def optional(module: str) -> Any:
    """Import an optional dependency (onnx, onnxruntime) or say how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FstError(f"this needs the {module} package: pip install 'fst[onnx]'") from None


def _parse_meta(path: Path, text: str | bytes | None) -> dict[str, Any]:
    return _check_meta(path, parse_json(text, str(path), META_FILE) if text else None)


def _check_meta(path: Path, meta: Any) -> dict[str, Any]:
    """`meta` if it is fst metadata of the schema (`fst.artefacts.metadata`) with the fields every
    reader relies on."""
    if not isinstance(meta, dict) or "fst_export" not in meta:
        raise FstError(f"{path}: no fst metadata ({META_FILE}); was it written by `fst export`?")
    check_metadata(meta, str(path), META_FILE)
    if meta.get("dtype") not in DTYPES or not isinstance(meta.get("channels_last"), bool):
        raise FstError(f"{path}: fst metadata with dtype {meta.get('dtype')!r} and channels_last "
                       f"{meta.get('channels_last')!r}; expected one of {', '.join(DTYPES)} and true/false")
    if not isinstance(meta.get("weights_sha256", ""), str):
        raise FstError(f"{path}: fst metadata with a weights_sha256 that is not a string")
    return meta


def _read_torchscript(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, meta = read_torchscript(path, META_FILE)
    # InferenceNet holds the traced network as `net`
    return {k.removeprefix("net."): v for k, v in tensors.items()}, _parse_meta(path, meta)


def _read_export(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state, meta = read_pt2(path, META_FILE)
    return state, _parse_meta(path, meta)


def read_onnx_quantized(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[ConvQuant]]:
    """An ONNX artefact's weights (an int8 one's dequantized), metadata, and its int8 numbers
    (`fst.artefacts.quantized`; none for fp32 and fp16), checked against the digest recorded."""
    optional("onnx")
    meta = _parse_meta(path, metadata_props(path).get(META_FILE))  # the graph unread
    if is_universal(meta):
        if meta.get("quantize") is not None:
            raise FstError(f"{path}: a quantized universal network, which fst never writes")
        proto = read_onnx(path, universal_onnx_bytes(meta, str(path)) + ONNX_GRAPH_SLACK)
        return _onnx_universal_state(path, proto, meta), meta, []
    proto = read_onnx(path, onnx_bound(meta["net"], str(path)))
    params: list[ConvQuant] = []
    if meta.get("quantize") is not None:
        if meta["quantize"] != "int8" or meta["dtype"] != "fp32" or "quant_sha256" not in meta:
            raise FstError(f"{path}: fst metadata with quantize {meta['quantize']!r}, dtype {meta['dtype']!r}; fst "
                           "writes int8 with fp32 input and output, and a quant_sha256")
        params = conv_quant(proto, str(path))
        if quant_digest(params) != meta["quant_sha256"]:
            raise FstError(f"{path}: damaged: its int8 numbers do not match the digest recorded at export (flipped bytes?)")
    return _onnx_state_dict(path, proto, meta["net"], params), meta, params


# An fst ONNX file is its weights (4 bytes a parameter at most) and a graph of a few tens of KB
# (measured: 28 KB for the tiny test network, 1.007x the weights for the default one).
ONNX_GRAPH_SLACK = 1 << 20


def onnx_bound(config: Any, origin: str) -> int:
    """The most bytes an ONNX file of the network `config` describes can honestly hold: its weights
    twice over in fp32, and the graph. Counted on the meta device, from networks of 0 and 1
    residual blocks (every block is the same size): nothing of the config's size is built."""
    config = net_config(config, origin)
    with torch.device("meta"):
        sizes = [sum(t.numel() for t in TransformerNet(**{**config, "n_residual": n}).state_dict().values()) for n in (0, 1)]
    return 2 * 4 * (sizes[0] + config["n_residual"] * (sizes[1] - sizes[0])) + ONNX_GRAPH_SLACK


def _read_aoti(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state, meta, compiled_for = compiled.read_package(path)  # the weights fst keeps beside the code
    return state, {**_check_meta(path, meta), "compiled_for": compiled_for}


READERS: dict[str, Callable[[Path], tuple[Any, ...]]] = {  # (weights, metadata[, int8 numbers])
    "torchscript": _read_torchscript,
    "export": _read_export,
    "onnx": read_onnx_quantized,
    "aoti": _read_aoti,
}


def load_compiled(path: str | Path, device: str | torch.device | None = None, *,
                  trusted: bool) -> tuple[Model, dict[str, Any]]:
    """`load_exported` for an AOTInductor package: its compiled code runs, and only if the caller
    says it trusts the file (`fst.artefacts.compiled.load_package`), after every check that can be made on its
    data (`read_exported`, `fst.artefacts.compiled.runs_here`). Device None: the one it was compiled for."""
    run, meta, _ = open_compiled(path, device, trusted=trusted)
    if is_universal(meta) and not is_baked(meta):
        run = stats_checked(run, meta, str(path))
    return run, meta


def open_compiled(path: str | Path, device: str | torch.device | None = None, *, trusted: bool
                  ) -> tuple[Model, dict[str, Any], tuple[dict[str, torch.Tensor], dict[str, Any]]]:
    """`load_compiled`, plus the package's checked weights and metadata (for `open_exported`): the
    package is read once."""
    path = Path(path)
    if path.is_file() and sniff_format(path) not in COMPILED:
        raise FstError(f"{path}: not an AOTInductor package (fst export --format aoti); --trust-compiled is for those only")
    state, meta = read_exported(path)
    compiled_for = meta["compiled_for"]
    device = torch.device(compiled_for.get("AOTI_DEVICE_KEY", "cpu") if device is None else device)
    compiled.runs_here(compiled_for, device, str(path))
    compiled.check_torch(meta, str(path))
    runner = compiled.load_package(path, trusted=trusted)
    meta = {**meta, "device": device.type}

    def run(x: torch.Tensor, *w: torch.Tensor) -> torch.Tensor:
        inputs = [t.to(device, torch.float32).contiguous() for t in (x, *w)]
        return runner(*inputs).to(x.dtype)

    return run, meta, (state, meta)


def _onnx_tensors(proto: Any) -> dict[str, Any]:
    """Every array a graph names: its initializers, their Identity aliases (the exporter merges equal
    weights) and Constant nodes (folded ones)."""
    onnx = optional("onnx")
    tensors = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
        elif node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensors[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    return tensors


def _onnx_universal_state(path: Path, proto: Any, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """`fst.artefacts.universal_exported.onnx_universal_state`, any malformed graph one line."""
    try:
        convs = [list(n.input[1:3]) for n in proto.graph.node if n.op_type == "Conv"]
        return onnx_universal_state(meta, _onnx_tensors(proto), convs, [t.name for t in proto.graph.initializer], str(path))
    except FstError:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed graph fails in many places
        raise FstError(f"{path}: its ONNX graph does not hold the universal network's weights: {first_line(e)}") from None


def _onnx_state_dict(path: Path, proto: Any, config: Any, params: list[ConvQuant] | None = None) -> dict[str, torch.Tensor]:
    """Weights read off the graph's nodes, each kind in graph order, which is the module order of
    TransformerNet: Conv (weight, bias), InstanceNormalization (scale, shift; one style) and the
    MatMuls of each conditional norm's style weights with its gammas, then betas (several styles).
    Initializer names are unreliable (the exporter merges equal ones). An int8 graph's Conv weights
    are `params`, dequantized."""
    graph = proto.graph
    try:
        tensors = _onnx_tensors(proto)
        for conv, q in zip([n for n in graph.node if n.op_type == "Conv"], params or []):
            tensors[conv.input[1]], tensors[conv.input[2]] = (t.numpy() for t in dequantized(q))
        found = {kind: [list(n.input[1:3]) for n in graph.node if n.op_type == kind] for kind in ("Conv", "InstanceNormalization")}
        matmuls = [n.input[1] for n in graph.node if n.op_type == "MatMul" and n.input[1] in tensors]
        found["MatMul"] = [matmuls[i:i + 2] for i in range(0, len(matmuls), 2)]
        if 2 * net_config(config, str(path))["n_residual"] > len(found["Conv"]):  # each block: 2 convs
            raise FstError(f"{path}: graph has {len(found['Conv'])} conv layers, too few for config {config}")
        with torch.device("meta"):  # only the layer names: nothing to allocate for an unchecked config
            modules = list(TransformerNet(**config).named_modules())
        wanted = {"Conv": [n for n, m in modules if isinstance(m, nn.Conv2d)],
                  "InstanceNormalization": [n for n, m in modules if isinstance(m, nn.InstanceNorm2d) and m.affine],
                  "MatMul": [n for n, m in modules if isinstance(m, ConditionalInstanceNorm)]}
        state = {}
        for kind, names in wanted.items():
            if names and len(found[kind]) != len(names):
                raise FstError(f"{path}: graph has {len(found[kind])} {kind} layers, config {config} has {len(names)}")
            for name, (weight, bias) in zip(names, found[kind] if names else []):
                state[f"{name}.weight"] = torch.from_numpy(tensors[weight].copy())
                state[f"{name}.bias"] = torch.from_numpy(tensors[bias].copy())
    except FstError:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed graph or config fails in many places
        raise FstError(f"{path}: its ONNX graph does not hold the transformer's weights: {first_line(e)}") from None
    return state


