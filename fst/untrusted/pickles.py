"""Files as data, never code: how fst reads checkpoints, exported models and weights files.

Such files come from anywhere, and torch's own loaders run what they carry: ``torch.export``'s
loader unpickles weights with ``weights_only=False``; a TorchScript archive holds code that runs on
load (``__setstate__``) and on every call, and that code can reach any registered op (torchvision's
``image.write_file`` writes files); onnxruntime follows an ONNX file's external-data paths to other
files. So fst hands no file to any of them. It reads:

- zip archives (``torch.save`` checkpoints and state dicts, TorchScript ``.pt``, ``torch.export``
  ``.pt2``): every member's CRC-32 is checked first, so flipped bytes are refused, never exported;
  pickles go through `DataUnpickler`, which resolves only tensor rebuilders, storage types, dtypes
  and plain containers (any other global, ``os.system`` say, is refused before it is imported), and
  tensors are built by fst from the raw storage bytes;
- the legacy (pre-zip) ``torch.save`` format the same way, without the CRCs it does not have;
- ``.pt2`` weights from their raw bytes and JSON layout (a pickled weight goes through
  `DataUnpickler`);
- ONNX: the initializers inside the protobuf; a tensor kept in another file is refused.

The callers check the tensors against the transformer config (`fst.checkpoint.transformer_from_state`)
and run fst's own `TransformerNet`: an artefact's code and graph are never executed. An artefact
whose code or graph calls anything fst's exporter never writes (a custom op, a file op, a TorchScript
``__setstate__``) is refused as tampered, although fst would not run it.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import sys
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from fst.errors import FstError, first_line

# `torch.<X>Storage` globals in a pickle name the dtype of the bytes behind a persistent id.
STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "UntypedStorage": torch.uint8,
}
# A dtype pickles as the global `torch.<name>`.
DTYPE_GLOBALS = {str(d).removeprefix("torch."): d for d in set(STORAGE_DTYPES.values())}

# What the code of fst's TorchScript exports calls (a traced TransformerNet behind the scripted
# InferenceNet adapter; matmul and unsqueeze: the conditional norms of several styles), as `torch.<op>` or `ops.aten.<op>`, with the spellings older torch traces
# to; and what a `.pt2` graph calls besides those aten ops (shape arithmetic, runtime asserts).
SCRIPT_OPS = frozenset({
    "_convolution", "convolution", "conv2d", "pad", "reflection_pad2d", "constant_pad_nd",
    "instance_norm", "batch_norm", "relu", "relu_", "sigmoid", "add", "add_", "upsample_nearest2d",
    "size", "sym_size", "dim", "to", "_to_copy", "contiguous", "clone", "floordiv", "floor_divide",
    "mul", "div", "clamp", "matmul", "mm", "unsqueeze", "_assert_tensor_metadata", "Int", "IntImplicit", "ScalarImplicit", "scalar_tensor", "_assert_scalar", "_assert_async",
    "_functional_assert_async", "sym_constrain_range", "sym_constrain_range_for_size",
    "_functional_sym_constrain_range", "_functional_sym_constrain_range_for_size",
})
GRAPH_OPERATORS = frozenset({"add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pow", "getitem",
                             "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_"})
# torch._export.serde.schema.ScalarType, the dtype codes of a .pt2 weights layout (the float ones).
PT2_DTYPES = {6: torch.float16, 7: torch.float32, 13: torch.bfloat16}

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's pre-zip format starts with these pickles
LEGACY_PROTOCOL = 1001
_KEY = re.compile(r"[\w.-]+")  # storage keys and weight file names: never a path


# --- pickles ------------------------------------------------------------------------------------


class UnsafeGlobal(pickle.UnpicklingError):
    """A pickle names a global that fst does not resolve: calling it could run any code."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class StorageType:
    """What a pickled `torch.<X>Storage` global stands for here: the dtype of some raw bytes."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class ScriptObject:
    """A TorchScript object (a module) as inert data: the attributes it was saved with, no code."""

    def __init__(self) -> None:
        self.state: Any = None


def _ints(values: Any) -> bool:
    return isinstance(values, (tuple, list)) and all(type(v) is int for v in values)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    """`torch._utils._rebuild_tensor_v2`, checked: a view into storage fst itself built from bytes
    (`as_strided` refuses a view reaching past the storage)."""
    if not (isinstance(storage, torch.Tensor) and type(offset) is int and _ints(size) and _ints(stride)
            and len(size) == len(stride)):
        raise pickle.UnpicklingError("malformed tensor record")
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any,
               dtype: Any, *_: Any) -> torch.Tensor:
    """`torch._utils._rebuild_tensor_v3`: untyped bytes viewed as `dtype`."""
    if not (isinstance(storage, torch.Tensor) and storage.dtype == torch.uint8 and isinstance(dtype, torch.dtype)):
        raise pickle.UnpicklingError("malformed tensor record")
    return _tensor(storage.view(dtype), offset, size, stride)


def _parameter(data: Any, *_: Any) -> torch.Tensor:
    """`torch._utils._rebuild_parameter(_with_state)`: the tensor, not an nn.Parameter."""
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("malformed parameter record")
    return data


def _latin1(text: Any, encoding: Any) -> bytes:
    """`_codecs.encode`, as protocol-2 pickles spell a bytes object: latin-1 text to bytes only."""
    if type(text) is not str or encoding != "latin1":
        raise pickle.UnpicklingError("malformed bytes record")
    return text.encode("latin1")


def _same(value: Any, *_: Any) -> Any:
    """TorchScript's typed-list builders and type tags: the plain value."""
    return value


GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _latin1,
    **{(m, n): c for m in ("builtins", "__builtin__") for n, c in (("set", set), ("frozenset", frozenset))},
    **{("torch.jit._pickle", n): _same for n in ("build_intlist", "build_doublelist", "build_boollist",
                                                  "build_tensorlist", "restore_type_tag")},
    **{("torch", n): StorageType(d) for n, d in STORAGE_DTYPES.items()},
    **{("torch", n): d for n, d in DTYPE_GLOBALS.items()},
}

Storage = Callable[[str, torch.dtype, int], torch.Tensor]


class DataUnpickler(pickle._Unpickler):  # the Python unpickler: its BUILD can be restricted too
    """Unpickles tensors and plain containers only. Globals resolve to `GLOBALS` (fst's own
    rebuilders, not torch's), everything else raises `UnsafeGlobal` before it is imported;
    persistent ids resolve to storages from `storage`; BUILD (``__setstate__``) only fills the
    inert `ScriptObject`s that TorchScript objects become when `script_objects` is set (and drops
    an OrderedDict's attributes); copyreg extension codes are refused."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: IO[bytes], storage: Storage | None = None, script_objects: bool = False):
        super().__init__(file)
        self.storage = storage
        self.script_objects = script_objects

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        if self.script_objects and module.startswith("__torch__."):
            return ScriptObject
        found = GLOBALS.get((module, name))
        if found is None:
            raise UnsafeGlobal(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> torch.Tensor:  # noqa: D102 - pickle API
        # ('storage', storage type, key, location, numel), plus a view record (None) in the legacy format
        ok = (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage" and isinstance(pid[1], StorageType)
              and isinstance(pid[2], str) and _KEY.fullmatch(pid[2]) is not None and type(pid[4]) is int
              and pid[4] >= 0 and (len(pid) == 5 or pid[5] is None))
        if self.storage is None or not ok:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self.storage(pid[2], pid[1].dtype, pid[4])

    def load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, ScriptObject):
            target.state = state
        elif not isinstance(target, OrderedDict):  # a state dict's `_metadata` attribute: not needed
            raise pickle.UnpicklingError(f"refusing to set the state of a {type(target).__name__}")

    def load_extension(self) -> None:
        raise pickle.UnpicklingError("extension codes (copyreg) are not data")

    dispatch[pickle.BUILD[0]] = load_build
    for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = load_extension
    del _op


def unpickle(src: bytes | IO[bytes], origin: str, what: str, storage: Storage | None = None,
             script_objects: bool = False) -> Any:
    """One pickle through `DataUnpickler`; every problem is one `FstError` naming `origin`."""
    file = io.BytesIO(src) if isinstance(src, bytes) else src
    try:
        return DataUnpickler(file, storage, script_objects).load()
    except UnsafeGlobal as e:
        raise FstError(f"{origin}: refused: the file holds a pickle that would run code ({e.name}); "
                       "fst loads only tensors") from None
    except FstError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged pickle raises anything at all
        raise FstError(f"{origin}: not a readable {what} (truncated or corrupt?): {first_line(e)}") from None


def tensor_from_bytes(raw: bytes, dtype: torch.dtype, numel: int, name: str) -> torch.Tensor:
    """A 1-D tensor of exactly `numel` elements from raw little-endian bytes."""
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if len(raw) != numel * itemsize:
        raise pickle.UnpicklingError(f"{name} holds {len(raw)} bytes, its record says {numel * itemsize}")
    return torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)


# --- zip archives -------------------------------------------------------------------------------


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


# --- TorchScript --------------------------------------------------------------------------------

_SCRIPT_REF = re.compile(r"(?<![\w.])(torch|ops)\.([\w.]+)")
_SCRIPT_STATE = re.compile(r"\bdef\s+__setstate__\b")


def read_torchscript(path: Path, extra: str) -> tuple[dict[str, torch.Tensor], bytes | None]:
    """The tensors of a TorchScript archive's module tree, keyed as in ``state_dict()``, and its
    extra file `extra` (None if absent), after checking its code calls only what fst's exports call."""
    origin, what = str(path), "TorchScript model"
    with open_zip(path, origin, what) as zf:
        root = pickle_root(zf, origin, what)
        check_script_code(zf, origin)
        obj = unpickle(zf.read(f"{root}/data.pkl"), origin, what, zip_storages(zf, root), script_objects=True)
        return module_tensors(obj), _member(zf, f"{root}/extra/{extra}")


def check_script_code(zf: zipfile.ZipFile, origin: str) -> None:
    for name in zf.namelist():  # every code file, wherever it sits: torch runs what it finds
        if not name.endswith(".py"):
            continue
        code = zf.read(name).decode("utf-8", "replace")
        if _SCRIPT_STATE.search(code):
            raise FstError(f"{origin}: refused: its TorchScript code defines __setstate__ (code that runs on load), "
                           "which fst's exports never do; fst runs no file's code")
        for head, ref in _SCRIPT_REF.findall(code):
            parts = ref.split(".")
            ok = (parts[0] in SCRIPT_OPS) if head == "torch" else (
                parts[0] == "prim" or (parts[0] == "aten" and len(parts) > 1 and parts[1] in SCRIPT_OPS))
            if not ok:
                raise FstError(f"{origin}: refused: its TorchScript code calls {head}.{ref}, which fst's exports "
                               "never call; fst runs no file's code")


def module_tensors(root: Any) -> dict[str, torch.Tensor]:
    """The tensor attributes of a `ScriptObject` tree, keyed by their dotted path (walked without
    recursion: a crafted file may nest deeply, or loop)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    stack = [("", root)]
    while stack:
        prefix, obj = stack.pop()
        if not isinstance(obj, ScriptObject) or not isinstance(obj.state, dict) or id(obj) in seen:
            continue
        seen.add(id(obj))
        for name, value in obj.state.items():
            if isinstance(value, torch.Tensor):
                out[f"{prefix}{name}"] = value
            elif isinstance(value, ScriptObject):
                stack.append((f"{prefix}{name}.", value))
    return out


def _member(zf: zipfile.ZipFile, name: str) -> bytes | None:
    return zf.read(name) if name in zf.namelist() else None


# --- torch.export (.pt2) ------------------------------------------------------------------------


def read_pt2(path: Path, extra: str) -> tuple[dict[str, torch.Tensor], bytes | None]:
    """The weights of a ``.pt2`` archive (one model) and its extra file `extra`, after checking its
    graph calls only what fst's exports call and that no pickle in it would run code. Reads the
    archive layout of torch >= 2.8 and the flat one of older torch."""
    origin, what = str(path), "torch.export model"
    with open_zip(path, origin, what) as zf:
        names = zf.namelist()
        if "serialized_exported_program.json" in names:  # torch < 2.8
            check_graph(_json(zf, "serialized_exported_program.json", origin), origin)
            for pickled in ("serialized_constants.pt", "serialized_example_inputs.pt"):
                if pickled in names:
                    read_torch(zf.read(pickled), origin, what)  # refuses code; the contents are not needed
            state = read_torch(zf.read("serialized_state_dict.pt"), origin, what) if "serialized_state_dict.pt" in names else None
            return _tensor_dict(state, origin), _member(zf, f"extra_files/{extra}")
        roots = [n[: -len("/archive_format")] for n in names if n.endswith("/archive_format") and n.count("/") == 1]
        if len(roots) != 1 or [n for n in names if n.startswith(f"{roots[0]}/models/") and n.endswith(".json")] != [
                f"{roots[0]}/models/model.json"]:
            raise FstError(f"{origin}: not a {what} fst wrote (one model in a pt2 archive)")
        root = roots[0]
        check_graph(_json(zf, f"{root}/models/model.json", origin), origin)
        for pickled in (n for n in names if n.startswith(f"{root}/data/sample_inputs/")):
            read_torch(zf.read(pickled), origin, what)  # refuses code; the contents are not needed
        _payload(zf, f"{root}/data/constants/", "model_constants_config.json", origin)
        state = _payload(zf, f"{root}/data/weights/", "model_weights_config.json", origin)
        return state, _member(zf, f"{root}/extra/{extra}")


def check_graph(program: Any, origin: str) -> None:
    """Every call target in a serialized exported program is an op fst's exports use."""
    for target in _targets(program):
        module, _, rest = target.partition(".")
        if target.startswith("torch.ops.aten."):
            ok = target.split(".")[3] in SCRIPT_OPS
        else:  # SymInt arithmetic on the input's sizes
            ok = (module == "_operator" and rest in GRAPH_OPERATORS) or target.startswith("torch.sym_")
        if not ok:
            raise FstError(f"{origin}: refused: its graph calls {target}, which fst's exports never call; "
                           "fst runs no file's graph")


def _targets(obj: Any) -> Iterator[str]:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("target"), str):
                yield item["target"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _json(zf: zipfile.ZipFile, name: str, origin: str) -> Any:
    try:
        return json.loads(zf.read(name))
    except (KeyError, ValueError) as e:
        raise FstError(f"{origin}: not a readable torch.export model: {name}: {first_line(e)}") from None


def _payload(zf: zipfile.ZipFile, folder: str, config_name: str, origin: str) -> dict[str, torch.Tensor]:
    """The tensors a pt2 payload config lays out: raw bytes with dtype, sizes, strides and offset;
    a pickled entry (torch's loader would unpickle it with ``weights_only=False``) goes through
    `DataUnpickler` and must be a tensor."""
    if folder + config_name not in zf.namelist():
        return {}
    config = _json(zf, folder + config_name, origin)
    out: dict[str, torch.Tensor] = {}
    try:
        for fqn, entry in config["config"].items():
            name = entry["path_name"]
            if not (isinstance(name, str) and _KEY.fullmatch(name)):
                raise ValueError(f"bad file name {name!r}")
            raw = zf.read(folder + name)
            if entry.get("use_pickle"):
                out[fqn] = read_torch(raw, origin, "torch.export model")
                if not isinstance(out[fqn], torch.Tensor):
                    raise ValueError(f"{fqn} is not a tensor")
                continue
            meta = entry["tensor_meta"]
            dtype = PT2_DTYPES[meta["dtype"]]
            sizes = [s["as_int"] for s in meta["sizes"]]
            strides = [s["as_int"] for s in meta["strides"]]
            itemsize = torch.empty(0, dtype=dtype).element_size()
            flat = tensor_from_bytes(raw, dtype, len(raw) // itemsize, folder + name)
            out[fqn] = _tensor(flat, meta["storage_offset"]["as_int"], sizes, strides)
    except FstError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged layout raises anything at all
        raise FstError(f"{origin}: not a readable torch.export model ({config_name}): {first_line(e)}") from None
    return out


def _tensor_dict(obj: Any, origin: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise FstError(f"{origin}: its weights are not a dict of named tensors")
    return dict(obj)


# --- ONNX ---------------------------------------------------------------------------------------


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
