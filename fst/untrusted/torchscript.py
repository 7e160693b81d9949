"""TorchScript archives read as data: the module tree's tensors, after checking that the archive's
code calls only what fst's exports call (torch would run that code on load and on every call)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from fst.core.errors import FstError
from fst.untrusted.pickles import ScriptObject, unpickle
from fst.untrusted.torch_files import MAX_PICKLE, member, open_zip, pickle_root, read_member, zip_storages

# What the code of fst's TorchScript exports calls (a traced TransformerNet behind the scripted
# InferenceNet adapter; matmul and unsqueeze: the conditional norms of several styles), as `torch.<op>` or `ops.aten.<op>`, with the spellings older torch traces
# to; and what a `.pt2` graph calls besides those aten ops (shape arithmetic, runtime asserts).
SCRIPT_OPS = frozenset({
    "_convolution", "convolution", "conv2d", "pad", "reflection_pad2d", "constant_pad_nd",
    "instance_norm", "batch_norm", "relu", "relu_", "sigmoid", "add", "add_", "upsample_nearest2d",
    "size", "sym_size", "dim", "to", "_to_copy", "contiguous", "clone", "floordiv", "floor_divide",
    "mul", "div", "clamp", "matmul", "mm", "unsqueeze",
    # a universal network (fst/models/universal.py): the VGG encoder's pools, the decoder's
    # upsampling, a painting's statistics taken apart, and the inter transform's whitening
    "max_pool2d", "select", "slice", "sub", "clamp_min", "flatten", "reshape", "transpose", "mean", "pow",
    "linalg_eigh", "eq", "ne", "__isnot__", "_assert_tensor_metadata", "Int", "IntImplicit", "ScalarImplicit", "scalar_tensor", "_assert_scalar", "_assert_async",
    "_functional_assert_async", "sym_constrain_range", "sym_constrain_range_for_size",
    "_functional_sym_constrain_range", "_functional_sym_constrain_range_for_size",
})

_SCRIPT_REF = re.compile(r"(?<![\w.])(torch|ops)\.([\w.]+)")
_SCRIPT_STATE = re.compile(r"\bdef\s+__setstate__\b")


def read_torchscript(path: Path, extra: str) -> tuple[dict[str, torch.Tensor], bytes | None]:
    """The tensors of a TorchScript archive's module tree, keyed as in ``state_dict()``, and its
    extra file `extra` (None if absent), after checking its code calls only what fst's exports call."""
    origin, what = str(path), "TorchScript model"
    with open_zip(path, origin, what) as zf:
        root = pickle_root(zf, origin, what)
        check_script_code(zf, origin)
        raw = read_member(zf, f"{root}/data.pkl", MAX_PICKLE, origin)
        obj = unpickle(raw, origin, what, zip_storages(zf, root), script_objects=True)
        return module_tensors(obj), member(zf, f"{root}/extra/{extra}", origin)


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

