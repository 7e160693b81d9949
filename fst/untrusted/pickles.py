"""Pickles as data: `DataUnpickler` builds tensors from raw storage bytes and plain containers, and
refuses every other global before it is imported."""

from __future__ import annotations

import io
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import IO, Any

import torch

from fst.core.errors import FstError, first_line

# `torch.<X>Storage` globals in a pickle name the dtype of the bytes behind a persistent id.
STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "UntypedStorage": torch.uint8,
}
# A dtype pickles as the global `torch.<name>`.
DTYPE_GLOBALS = {str(d).removeprefix("torch."): d for d in set(STORAGE_DTYPES.values())}

KEY = re.compile(r"[\w.-]+")  # storage keys and weight file names: never a path


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


def plain_layout(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """Whether a view's elements are distinct places of its storage (what `torch.save` writes for a
    tensor, a slice or a channels-last tensor): no negative or zero stride along a dimension of more
    than one element, no two elements at one address. A zero-stride view claims any number of
    elements from one, and whoever copies it allocates them all."""
    if any(s < 0 for s in size):
        return False
    if 0 in size:
        return all(s >= 0 for s in stride)
    span = 0  # the farthest offset the dimensions with smaller strides reach
    for n, s in sorted(((n, s) for n, s in zip(size, stride) if n > 1), key=lambda d: d[1]):
        if s <= span:
            return False
        span += (n - 1) * s
    return True


def strided_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    """`torch._utils._rebuild_tensor_v2`, checked: a plain view (`plain_layout`) into storage fst
    itself built from bytes (`as_strided` refuses a view reaching past the storage)."""
    if not (isinstance(storage, torch.Tensor) and type(offset) is int and _ints(size) and _ints(stride)
            and len(size) == len(stride)):
        raise pickle.UnpicklingError("malformed tensor record")
    if not plain_layout(tuple(size), tuple(stride)):
        raise pickle.UnpicklingError(f"a tensor of size {list(size)[:8]} with strides {list(stride)[:8]} repeats "
                                     "elements of its storage, which torch.save never writes")
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any,
               dtype: Any, *_: Any) -> torch.Tensor:
    """`torch._utils._rebuild_tensor_v3`: untyped bytes viewed as `dtype`."""
    if not (isinstance(storage, torch.Tensor) and storage.dtype == torch.uint8 and isinstance(dtype, torch.dtype)):
        raise pickle.UnpicklingError("malformed tensor record")
    return strided_tensor(storage.view(dtype), offset, size, stride)


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
    ("torch._utils", "_rebuild_tensor_v2"): strided_tensor,
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
              and isinstance(pid[2], str) and KEY.fullmatch(pid[2]) is not None and type(pid[4]) is int
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
