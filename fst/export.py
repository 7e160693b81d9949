"""`fst export`: a trained transformer as a single file that runs without fst, Lightning or VGG.

Formats (``--format``; without it the output's suffix decides, ``.onnx``/``.pt2``, else TorchScript):

- ``torchscript`` (default, ``.pt``): loads with a plain ``torch.jit.load`` (``map_location="cuda"``)
  on CPU or CUDA without fst installed, and is the format other torch versions and libtorch (C++)
  read most reliably; that portability is why it is the default. The network is *traced*: the graph
  holds only long-stable aten ops (conv, instance_norm, upsample_nearest2d, ...) and reads H and W
  from the input at run time (``aten::size``), so the resize-to-exact-size stays dynamic and odd sizes
  work. Scripting the network instead would inline torch's Python ``F.interpolate``, which on torch
  2.14 names ops that older torch lacks: a scripted file from 2.14 failed to load on 2.11 (checked on
  2026-11-27); the traced one loads. A small scripted adapter around the traced net casts the input to
  the weights' dtype (and to channels-last when exported so) and returns the caller's dtype.
  torch 2.14 marks TorchScript deprecated (FutureWarnings silenced here); it still writes and loads.
- ``export`` (``.pt2``): ``torch.export`` of the bare network with dynamic batch/height/width
  (H, W >= 5, the smallest size the reflection padding allows); ``torch.export.load`` then ``.module()``.
  Input in the exported dtype (a dtype cast inside would pin the device the file was exported on).
  ``.pt2`` files are more tied to the torch version that wrote them, hence not the default.
- ``onnx`` (``.onnx``, opset 17): for onnxruntime/TensorRT/other runtimes. Traced in eval mode with
  ``TrainingMode.EVAL`` so instance norm exports as InstanceNormalization over each image (the known
  trap is exporting training-mode batch statistics). Uses the TorchScript-based exporter
  (``dynamo=False`` where torch has the flag): the dynamo exporter needs onnxscript, which fst does
  not depend on. Dynamic axes: batch, height, width. fp32 or fp16 (onnxruntime has no bf16 conv).

- ``aoti`` (``.pt2``, only with ``--format aoti``): the network compiled ahead of time by
  AOTInductor for one device (``--device``) and dtype: the speed of ``torch.compile`` in a file that
  needs no compile where it runs. It is machine code, run when loaded: `fst.compiled` says what fst
  checks first and why `fst stylize` loads one only with ``--trust-compiled``.

Every artefact takes and returns (B, 3, H, W) RGB in [0, 1] and carries ``fst.json`` metadata
(style, loss, steps, versions, dtype, format, ranges): TorchScript/.pt2 as an extra file in the
archive, ONNX in ``metadata_props`` (each scalar also as its own key, for viewers like Netron),
including ``weights_sha256``, a digest of the weights that every read checks.

Reading (`load_exported`, `open_exported`, `transformer_from_exported`): fst runs none of an artefact's code or
graph, whoever wrote it. It reads the weights and ``fst.json`` as data (`fst.untrusted`: CRC-checked
zips, pickles limited to tensors, no ONNX external data, code or graph calling anything fst's
exporter never writes refused), checks them against the transformer config and the digest, and
runs its own `TransformerNet` with them, in the exported dtype and memory format, behind the
TorchScript calling convention: any float dtype in, the same dtype out. The export tests check
that each runtime gives what that network gives.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import io
import json
import os
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fst import compiled, untrusted
from fst.arguments import ArgumentParser
from fst.checkpoint import check_weights, net_config, transformer_from_checkpoint, transformer_from_state
from fst.errors import FstError, first_line
from fst.files import atomic_path
from fst.transformer import MIN_SIDE, TransformerNet

FORMATS = ("torchscript", "export", "onnx")  # pure data: fst reads and runs them without trusting them
COMPILED = ("aoti",)  # machine code: runs only with --trust-compiled (fst.compiled)
SUFFIXES = {"torchscript": ".pt", "export": ".pt2", "onnx": ".onnx", "aoti": ".pt2"}
BY_SUFFIX = {".pt": "torchscript", ".pt2": "export", ".onnx": "onnx"}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
META_FILE = "fst.json"
EXPORT_VERSION = 1
ONNX_OPSET = 17

Model = Callable[[torch.Tensor], torch.Tensor]


class InferenceNet(nn.Module):
    """A (traced) transformer behind a dtype/memory-format adapter: any float input, same dtype back."""

    def __init__(self, net: nn.Module, dtype: torch.dtype, channels_last: bool = False):
        super().__init__()
        self.net = net
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.to(self.dtype)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return self.net(y).to(x.dtype)


def adapted(fn: Model, dtype: torch.dtype, channels_last: bool = False) -> Model:
    """`InferenceNet`'s calling convention in Python, for the formats that take their own dtype."""

    def run(x: torch.Tensor) -> torch.Tensor:
        y = x.to(dtype)
        if channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return fn(y).to(x.dtype)

    return run


# --- writing ------------------------------------------------------------------------------------


def format_for(out: Path, format: str | None) -> str:
    """The explicit format, or the one `out`'s suffix names (TorchScript otherwise)."""
    if format is None:
        return BY_SUFFIX.get(out.suffix.lower(), "torchscript")
    if format not in FORMATS + COMPILED:
        raise FstError(f"unknown format {format!r} (choose from {', '.join(FORMATS + COMPILED)})")
    implied = BY_SUFFIX.get(out.suffix.lower())
    if implied is not None and SUFFIXES[format] != out.suffix.lower():
        raise FstError(f"{out}: suffix {out.suffix} means {implied}, not {format} (use {SUFFIXES[format]})")
    return format


def export_model(
    ckpt_path: str | Path,
    out: str | Path,
    format: str | None = None,
    dtype: str = "fp32",
    channels_last: bool = False,
    device: str = "cpu",
    say: Callable[[str], None] | None = None,
) -> Path:
    """Export the transformer of an fst checkpoint to `out` (a file, or an existing folder).
    `device` matters to ``aoti`` only: a compiled package runs on the device it was compiled for."""
    ckpt_path, out = Path(ckpt_path), Path(out)
    if out.is_dir():
        out = out / (ckpt_path.stem + SUFFIXES[format if format in SUFFIXES else "torchscript"])
    format = format_for(out, format)
    if dtype not in DTYPES:
        raise FstError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    if format == "onnx" and dtype == "bf16":
        raise FstError("onnx export supports fp32 and fp16 (onnxruntime has no bf16 convolution)")
    if not out.parent.is_dir():
        raise FstError(f"{out}: folder {out.parent} does not exist")
    if device != "cpu" and format not in COMPILED:
        raise FstError(f"--device applies to --format aoti only; a {format} file runs on any device")
    check_output(out, ckpt_path)
    net, ckpt_meta = transformer_from_checkpoint(ckpt_path)
    net = net.to(torch.device(device), DTYPES[dtype])
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    meta = artefact_metadata(ckpt_meta, ckpt_path, format, dtype, channels_last)
    if format in COMPILED:
        meta.update(device=device, input=f"float32 (B, 3, H, W) RGB in [0, 1] on {device}, B in {list(compiled.BATCH)}, "
                    f"H and W in {list(compiled.SIDE)}", output="float32, same shape, RGB in [0, 1]")
    meta["weights_sha256"] = weights_digest(net.state_dict())
    if format in COMPILED and say is not None:  # the one slow format: say so before the wait
        say(f"compiling with AOTInductor for {device} {dtype} (a minute or more)")
    # Serialise to memory first: archive member names then never mention the temp file.
    data = WRITERS[format](net.eval(), meta, channels_last)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return out


def check_output(out: Path, ckpt_path: Path) -> None:
    """Refuse an --out whose replacement would lose training: the checkpoint being exported
    (through any symlink or hard link) or any other training checkpoint."""
    if not out.exists():
        return
    if ckpt_path.exists() and os.path.samefile(out, ckpt_path):
        raise FstError(f"{out}: is the checkpoint being exported; choose another --out")
    if sniff_format(out) == "checkpoint":
        raise FstError(f"{out}: is a training checkpoint, which fst export never overwrites; choose another --out")


def artefact_metadata(ckpt_meta: dict[str, Any], source: Path, format: str, dtype: str, channels_last: bool) -> dict[str, Any]:
    from fst import __version__

    return {
        "fst_export": EXPORT_VERSION,
        "format": format,
        "dtype": dtype,
        "channels_last": channels_last,
        "net": dict(ckpt_meta["net"]),
        "style_name": ckpt_meta.get("style_name"),
        "style_loss": ckpt_meta.get("style_loss"),
        "global_step": int(ckpt_meta.get("global_step", 0)),
        "trained_with_fst": ckpt_meta.get("version"),
        "fst_version": __version__,
        "torch_version": torch.__version__,
        "source": source.name,
        "input": "float (B, 3, H, W) RGB in [0, 1], any H, W >= 5",
        "output": "same shape, RGB in [0, 1]",
        "input_range": [0.0, 1.0],
        "output_range": [0.0, 1.0],
    }


def _meta_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True, default=str)


def _sample(net: TransformerNet, channels_last: bool = False) -> torch.Tensor:
    # Batch 2 and odd sizes so no tracer/exporter can specialise on 1 or on even shapes.
    x = torch.rand(2, 3, 67, 91, dtype=net.weight_dtype, device=net.weight_device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def write_torchscript(net: TransformerNet, meta: dict[str, Any], channels_last: bool = False) -> bytes:
    """Traced network (portable aten ops, sizes read at run time) inside the scripted adapter."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.* is deprecated" (torch >= 2.9)
        # Benign: instance norm's input checks (channel count, >1 pixel) are frozen as constants.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, _sample(net, channels_last), check_trace=False)
        scripted = torch.jit.script(InferenceNet(traced, net.weight_dtype, channels_last))
        torch.jit.save(scripted, buf, _extra_files={META_FILE: _meta_json(meta)})
    return buf.getvalue()


def write_export(net: TransformerNet, meta: dict[str, Any], channels_last: bool = False) -> bytes:
    from torch.export import Dim

    dims = {0: Dim("batch", min=1, max=4096), 2: Dim("height", min=MIN_SIDE), 3: Dim("width", min=MIN_SIDE)}
    program = torch.export.export(net, (_sample(net, channels_last),), dynamic_shapes={"x": dims})
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={META_FILE: _meta_json(meta)})
    return buf.getvalue()


def write_onnx(net: TransformerNet, meta: dict[str, Any], channels_last: bool = False) -> bytes:
    onnx = _optional("onnx")

    axes = {0: "batch", 2: "height", 3: "width"}
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the dynamo exporter needs onnxscript
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes from the TorchScript-based exporter
        torch.onnx.export(
            net,  # the bare net: ONNX callers feed the model's dtype themselves
            (_sample(net),),
            buf,
            opset_version=ONNX_OPSET,
            input_names=["image"],
            output_names=["stylized"],
            dynamic_axes={"image": axes, "stylized": axes},
            training=torch.onnx.TrainingMode.EVAL,
            do_constant_folding=True,
            **kwargs,
        )
    proto = onnx.load_from_string(buf.getvalue())
    entries = {META_FILE: _meta_json(meta)}
    entries.update({k: str(v) for k, v in meta.items() if isinstance(v, (str, int, float, bool))})
    onnx.helper.set_model_props(proto, entries)
    proto.producer_name = "fst"
    return proto.SerializeToString()


WRITERS: dict[str, Callable[[TransformerNet, dict[str, Any], bool], bytes]] = {
    "torchscript": write_torchscript,
    "export": write_export,
    "onnx": write_onnx,
    "aoti": compiled.write_aoti,
}


# --- reading ------------------------------------------------------------------------------------


def sniff_format(path: str | Path) -> str | None:
    """'torchscript', 'export', 'onnx', 'checkpoint' (a torch.save file), or None if none of them.
    Only names are looked at (a zip's member list, the suffix): nothing is loaded."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return None
        if compiled.is_package(names):
            return "aoti"
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if any(n.split("/")[-1] in ("serialized_exported_program.json", "archive_format") for n in names):
            return "export"
        if any(n.endswith("/data.pkl") for n in names):
            return "checkpoint"
        return None
    if path.suffix.lower() == ".onnx":
        return "onnx"
    return None


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> tuple[Model, dict[str, Any]]:
    """(callable taking and returning (B, 3, H, W) float in [0, 1] on `device`, the fst metadata).

    The callable is fst's own TransformerNet with the artefact's weights, in the artefact's dtype and
    memory format, behind the calling convention every artefact has (any float dtype in, the same
    dtype out): fst never runs an artefact's code or graph (`fst.untrusted`)."""
    net, meta = open_exported(path, device)
    return adapted(net, DTYPES[meta["dtype"]], meta["channels_last"]), meta


def open_exported(path: str | Path, device: str | torch.device = "cpu",
                  checked: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None) -> tuple[TransformerNet, dict[str, Any]]:
    """fst's TransformerNet with an artefact's weights on `device`, in the artefact's dtype and memory
    format, and the metadata; `checked`: what `read_exported` already returned for `path`."""
    state, meta = checked or read_exported(path)
    net = transformer_from_state(meta["net"], state, str(path))
    net = net.requires_grad_(False).to(torch.device(device), DTYPES[meta["dtype"]])  # inference only
    if meta["channels_last"]:
        net = net.to(memory_format=torch.channels_last)
    return net, meta


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
    exported dtype, and the digest recorded at export."""
    path = Path(path)
    if not path.is_file():
        raise FstError(f"{path}: model not found")
    format = sniff_format(path)
    if format not in READERS:
        raise FstError(f"{path}: not an exported fst model (torchscript, .pt2 or .onnx)")
    state, meta = READERS[format](path)
    return check_exported(path, state, meta)


def check_exported(path: Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`read_exported`'s checks of weights and metadata read from `path`."""
    check_weights(meta.get("net"), state, str(path))
    wrong = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor) or v.dtype != DTYPES[meta["dtype"]])
    if wrong:
        raise FstError(f"{path}: weight {wrong[0]} is not {meta['dtype']}, the dtype its metadata records")
    if "weights_sha256" in meta and weights_digest(state) != meta["weights_sha256"]:
        raise FstError(f"{path}: damaged: its weights do not match the digest recorded at export (flipped bytes?)")
    return state, meta


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every weight's name, dtype, shape and values (in logical order, whatever the
    memory format): recorded at export, checked on every read, in every format."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _optional(module: str) -> Any:
    """Import an optional dependency (onnx, onnxruntime) or say how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FstError(f"this needs the {module} package: pip install 'fst[onnx]'") from None


def _parse_meta(path: Path, text: str | bytes | None) -> dict[str, Any]:
    try:
        meta = json.loads(text) if text else None
    except ValueError:
        meta = None
    return _check_meta(path, meta)


def _check_meta(path: Path, meta: Any) -> dict[str, Any]:
    """`meta` if it is fst metadata with the fields every reader relies on."""
    if not isinstance(meta, dict) or "fst_export" not in meta:
        raise FstError(f"{path}: no fst metadata ({META_FILE}); was it written by `fst export`?")
    if meta.get("dtype") not in DTYPES or not isinstance(meta.get("channels_last"), bool):
        raise FstError(f"{path}: fst metadata with dtype {meta.get('dtype')!r} and channels_last "
                       f"{meta.get('channels_last')!r}; expected one of {', '.join(DTYPES)} and true/false")
    if not isinstance(meta.get("weights_sha256", ""), str):
        raise FstError(f"{path}: fst metadata with a weights_sha256 that is not a string")
    return meta


def _read_torchscript(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, meta = untrusted.read_torchscript(path, META_FILE)
    # InferenceNet holds the traced network as `net`
    return {k.removeprefix("net."): v for k, v in tensors.items()}, _parse_meta(path, meta)


def _read_export(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state, meta = untrusted.read_pt2(path, META_FILE)
    return state, _parse_meta(path, meta)


def _read_onnx(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    _optional("onnx")
    proto = untrusted.read_onnx(path)
    meta = _parse_meta(path, {p.key: p.value for p in proto.metadata_props}.get(META_FILE))
    return _onnx_state_dict(path, proto, meta["net"]), meta


def _read_aoti(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state, meta, compiled_for = compiled.read_package(path)  # the weights fst keeps beside the code
    return state, {**_check_meta(path, meta), "compiled_for": compiled_for}


READERS: dict[str, Callable[[Path], tuple[dict[str, torch.Tensor], dict[str, Any]]]] = {
    "torchscript": _read_torchscript,
    "export": _read_export,
    "onnx": _read_onnx,
    "aoti": _read_aoti,
}


def load_compiled(path: str | Path, device: str | torch.device | None = None, *,
                  trusted: bool) -> tuple[Model, dict[str, Any]]:
    """`load_exported` for an AOTInductor package: its compiled code runs, and only if the caller
    says it trusts the file (`fst.compiled.load_package`), after every check that can be made on its
    data (`read_exported`, `fst.compiled.runs_here`). Device None: the one it was compiled for."""
    run, meta, _ = open_compiled(path, device, trusted=trusted)
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

    def run(x: torch.Tensor) -> torch.Tensor:
        return runner(x.to(device, torch.float32).contiguous()).to(x.dtype)

    return run, meta, (state, meta)


def _onnx_state_dict(path: Path, proto: Any, config: Any) -> dict[str, torch.Tensor]:
    """Weights read off the Conv/InstanceNormalization nodes in graph order, which is the module
    order of TransformerNet; initializer names are unreliable (the exporter merges equal ones)."""
    onnx = _optional("onnx")
    graph = proto.graph
    try:
        tensors = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:  # equal weights become Identity aliases; folded ones Constant nodes
            if node.op_type == "Identity" and node.input[0] in tensors:
                tensors[node.output[0]] = tensors[node.input[0]]
            elif node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                tensors[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
        params = [node.input[1:3] for node in graph.node if node.op_type in ("Conv", "InstanceNormalization")]
        if 4 * net_config(config, str(path))["n_residual"] > len(params):  # each block: 2 convs, 2 norms
            raise FstError(f"{path}: graph has {len(params)} conv/norm layers, too few for config {config}")
        with torch.device("meta"):  # only the layer names: nothing to allocate for an unchecked config
            names = [n for n, m in TransformerNet(**config).named_modules() if isinstance(m, (nn.Conv2d, nn.InstanceNorm2d))]
        if len(params) != len(names):
            raise FstError(f"{path}: graph has {len(params)} conv/norm layers, config {config} has {len(names)}")
        state = {}
        for name, (weight, bias) in zip(names, params):
            state[f"{name}.weight"] = torch.from_numpy(tensors[weight].copy())
            state[f"{name}.bias"] = torch.from_numpy(tensors[bias].copy())
    except FstError:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed graph or config fails in many places
        raise FstError(f"{path}: its ONNX graph does not hold the transformer's weights: {first_line(e)}") from None
    return state


# --- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="fst export", description="Export a trained transformer for single-pass inference.")
    p.add_argument("checkpoint", type=Path, help="an fst checkpoint (.ckpt from `fst fit`)")
    p.add_argument("--out", type=Path, required=True, help="output file (or existing folder)")
    p.add_argument("--format", choices=FORMATS + COMPILED, default=None,
                   help="default: from --out's suffix, else torchscript. aoti: an AOTInductor package (.pt2), the"
                   " network compiled ahead of time for one device and dtype; it is machine code, which runs when"
                   " loaded (fst stylize --trust-compiled); every other format is data")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    p.add_argument("--channels-last", action="store_true", help="channels-last weights and input (faster on tensor cores)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="aoti only: the device the package is compiled for (auto: cuda when present, else cpu)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and args.format in COMPILED else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise FstError("--device cuda: no CUDA device is available")
    out = export_model(args.checkpoint, args.out, args.format, args.dtype, args.channels_last, device,
                       say=lambda line: print(f"fst export: {line}", file=sys.stderr, flush=True))
    # Read it back: a file we cannot load must not look like success (a package: we just compiled it).
    # A package: we just compiled it, so we trust it.
    _, meta = load_compiled(out, device, trusted=True) if sniff_format(out) in COMPILED else load_exported(out)
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({meta['format']}, {meta['dtype']}, {size_mb:.1f} MB, style {meta['style_name']!r}, step {meta['global_step']})")
    return 0
