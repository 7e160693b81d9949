"""`torch.export` programs (``.pt2``) read as data: weights from their raw bytes and JSON layout,
after checking that the graph calls only what fst's exports call."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fst.core.errors import FstError, first_line
from fst.untrusted.pickles import KEY, strided_tensor, tensor_from_bytes
from fst.untrusted.plain_data import describe
from fst.untrusted.torch_files import MAX_PICKLE, member, open_zip, read_member, read_torch
from fst.untrusted.torchscript import SCRIPT_OPS

GRAPH_OPERATORS = frozenset({"add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pow", "getitem",
                             "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_"})
# torch._export.serde.schema.ScalarType, the dtype codes of a .pt2 weights layout (the float ones).
PT2_DTYPES = {6: torch.float16, 7: torch.float32, 13: torch.bfloat16}
# The rest of that enum, to say what a refused weight is.
PT2_OTHER_DTYPES = {0: "of an unknown dtype", 1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 8: "float64",
                    9: "complex32", 10: "complex64", 11: "complex128", 12: "bool", 28: "uint16", 29: "float8_e4m3fn",
                    30: "float8_e5m2", 31: "float8_e4m3fnuz", 32: "float8_e5m2fnuz", 33: "float8_e8m0fnu",
                    34: "uint32", 35: "uint64"}


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
            return _tensor_dict(state, origin), member(zf, f"extra_files/{extra}", origin)
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
        return state, member(zf, f"{root}/extra/{extra}", origin)


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


def _json(zf: zipfile.ZipFile, name: str, origin: str, limit: int = MAX_PICKLE) -> Any:
    """A JSON member (a graph or a weights layout: a few MB at most), parsed."""
    try:
        return json.loads(read_member(zf, name, limit, origin))
    except RecursionError:
        raise FstError(f"{origin}: not a readable torch.export model: {name} is nested too deeply") from None
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
            if not (isinstance(name, str) and KEY.fullmatch(name)):
                raise ValueError(f"bad file name {name!r}")
            raw = zf.read(folder + name)
            if entry.get("use_pickle"):
                out[fqn] = read_torch(raw, origin, "torch.export model")
                if not isinstance(out[fqn], torch.Tensor):
                    raise ValueError(f"{fqn} is not a tensor")
                continue
            meta = entry["tensor_meta"]
            dtype = _dtype(meta["dtype"], fqn, origin)
            sizes = [s["as_int"] for s in meta["sizes"]]
            strides = [s["as_int"] for s in meta["strides"]]
            itemsize = torch.empty(0, dtype=dtype).element_size()
            flat = tensor_from_bytes(raw, dtype, len(raw) // itemsize, folder + name)
            out[fqn] = strided_tensor(flat, meta["storage_offset"]["as_int"], sizes, strides)
    except FstError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged layout raises anything at all
        raise FstError(f"{origin}: not a readable torch.export model ({config_name}): {first_line(e)}") from None
    return out


def _dtype(code: Any, fqn: str, origin: str) -> torch.dtype:
    if type(code) is int and code in PT2_DTYPES:
        return PT2_DTYPES[code]
    what = PT2_OTHER_DTYPES.get(code, "of an unknown dtype") if type(code) is int else "of an unknown dtype"
    raise FstError(f"{origin}: refused: weight {describe(fqn)} is {what} (torch.export dtype code {describe(code)}); "
                   "fst's models hold float32, float16 or bfloat16 weights")


def _tensor_dict(obj: Any, origin: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise FstError(f"{origin}: its weights are not a dict of named tensors")
    return dict(obj)
