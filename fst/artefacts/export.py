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
  ``--quantize int8``: int8 convolutions for onnxruntime on the CPU (`fst.artefacts.quantize`).

- ``aoti`` (``.pt2``, only with ``--format aoti``): the network compiled ahead of time by
  AOTInductor for one device (``--device``) and dtype: the speed of ``torch.compile`` in a file that
  needs no compile where it runs. It is machine code, run when loaded: `fst.artefacts.compiled` says what fst
  checks first and why `fst stylize` loads one only with ``--trust-compiled``.

Every artefact takes and returns (B, 3, H, W) RGB in [0, 1] and carries ``fst.json`` metadata
(style, loss, steps, versions, dtype, format, ranges): TorchScript/.pt2 as an extra file in the
archive, ONNX in ``metadata_props`` (each scalar also as its own key, for viewers like Netron),
including ``weights_sha256``, a digest of the weights that every read checks.

A universal network's checkpoint (docs/universal.md) exports in the same formats, taking a painting's
statistics as a second input, or with ``--style-image`` one painting baked in (one input, as here);
ONNX of its inter (WCT) transform is refused (ONNX has no eigendecomposition). That is
`fst.artefacts.universal_export`; this module hands it the checkpoint once format, dtype, device
and output are checked.

Reading them back is `fst.artefacts.exported`.
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fst.artefacts import compiled
from fst.artefacts.checkpoint import net_config, style_names, transformer_from_checkpoint
from fst.artefacts.exported import (
    _onnx_state_dict,
    BY_SUFFIX,
    COMPILED,
    DTYPES,
    EXPORT_VERSION,
    FORMATS,
    META_FILE,
    ONNX_OPSET,
    SUFFIXES,
    load_compiled,
    load_exported,
    optional,
    sniff_format,
    weights_digest,
)
from fst.artefacts.quantize import MAX_PHOTOS, calibration_photos, int8_onnx
from fst.artefacts.quantized import QUANTIZE, ConvQuant, conv_quant, int8_runner, with_qdq
from fst.assets import resolve_model_path
from fst.core.arguments import ArgumentParser
from fst.core.errors import FstError
from fst.artefacts.universal_export import export_universal, is_universal_checkpoint
from fst.io.files import remove_temps, writing
from fst.io.style_images import DEFAULT_STYLE_SIZE
from fst.io.targets import check_outputs
from fst.models.transformer import MIN_SIDE, TransformerNet, export_shapes, sample_inputs


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


class StylesInferenceNet(InferenceNet):
    """`InferenceNet` of a network of several styles: model(x, w), w (B, N) style weights."""

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = x.to(self.dtype)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return self.net(y, w.to(self.dtype)).to(x.dtype)


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
    style_image: Path | None = None,
    style_size: int = DEFAULT_STYLE_SIZE,
    quantize: str | None = None,
    calibration: Path | None = None,
) -> Path:
    """Export the transformer of an fst checkpoint to `out` (a file, or an existing folder).
    `device` matters to ``aoti`` only: a compiled package runs on the device it was compiled for.
    A universal network's checkpoint goes to `fst.artefacts.universal_export` (`style_image`: the
    painting to bake in; without it the artefact takes a painting's statistics as an input).
    `quantize` "int8": an ONNX file with int8 convolutions, calibrated on `calibration`'s photos
    (`fst.artefacts.quantize`)."""
    ckpt_path, out = resolve_model_path(ckpt_path), Path(out)  # sample:universal: a shipped network
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
    check_quantize(quantize, format, dtype, calibration)
    check_output(out, ckpt_path)
    if is_universal_checkpoint(ckpt_path):
        if quantize is not None:
            raise FstError(f"{ckpt_path}: --quantize is for a per-painting network; a universal network's is not quantized")
        return export_universal(ckpt_path, out, format, dtype, channels_last, device, style_image, style_size, say)
    if style_image is not None:
        raise FstError(f"{ckpt_path}: --style-image is for a universal network's checkpoint; this network's "
                       "style is trained into it")
    net, ckpt_meta = transformer_from_checkpoint(ckpt_path)
    net = net.to(torch.device(device), DTYPES[dtype])
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    meta = artefact_metadata(ckpt_meta, ckpt_path, format, dtype, channels_last)
    if format in COMPILED:
        meta.update(device=device, input=f"float32 (B, 3, H, W) RGB in [0, 1] on {device}, B in {list(compiled.BATCH)}, "
                    f"H and W in {list(compiled.SIDE)}", output="float32, same shape, RGB in [0, 1]")
    if net.n_styles > 1:
        meta["input"] += (f"; and style weights w (B, {net.n_styles}), one row per image, style k = metadata's"
                          " styles[k]: one-hot picks a style, a convex row blends them")
    meta["weights_sha256"] = weights_digest(net.state_dict())
    if format in COMPILED and say is not None:  # the one slow format: say so before the wait
        say(f"compiling with AOTInductor for {device} {dtype} (a minute or more)")
    # Serialise to memory first: archive member names then never mention the temp file.
    data = WRITERS[format](net.eval(), meta, channels_last) if quantize is None else write_int8(net.eval(), meta, calibration)
    with writing(out) as tmp:
        tmp.write_bytes(data)
    remove_temps(out)  # what an export killed before its rename (kill -9, power cut) left
    return out


def check_quantize(quantize: str | None, format: str, dtype: str, calibration: Path | None) -> None:
    """One line for a --quantize that cannot be written, before anything is read."""
    if quantize is None:
        if calibration is not None:
            raise FstError("--calibration is for --quantize int8")
        return
    if quantize not in QUANTIZE:
        raise FstError(f"unknown --quantize {quantize!r} (choose from {', '.join(QUANTIZE)})")
    if format != "onnx":
        raise FstError(f"--quantize {quantize} writes ONNX for onnxruntime; not a {format} file (use --format onnx or .onnx)")
    if dtype != "fp32":
        raise FstError(f"--quantize {quantize} quantizes the fp32 network; leave --dtype at fp32, not {dtype}")
    optional("onnxruntime")
    calibration_photos(calibration)  # a missing or empty folder: said now


def check_output(out: Path, ckpt_path: Path) -> None:
    """Refuse an --out whose replacement would lose training: the checkpoint being exported
    (by identity: through any symlink or hard link) or any other training checkpoint; and one that
    is no regular file (a device, a FIFO: never opened to sniff it)."""
    check_outputs([out], [ckpt_path])
    if not out.exists():
        return
    if sniff_format(out) == "checkpoint":
        raise FstError(f"{out}: is a training checkpoint, which fst export never overwrites; choose another --out")


def artefact_metadata(ckpt_meta: dict[str, Any], source: Path, format: str, dtype: str, channels_last: bool) -> dict[str, Any]:
    from fst import __version__

    return {
        "fst_export": EXPORT_VERSION,
        "format": format,
        "dtype": dtype,
        "channels_last": channels_last,
        "net": net_config(ckpt_meta["net"], source.name),
        "styles": style_names(ckpt_meta, source.name),
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


def write_torchscript(net: TransformerNet, meta: dict[str, Any], channels_last: bool = False) -> bytes:
    """Traced network (portable aten ops, sizes read at run time) inside the scripted adapter."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.* is deprecated" (torch >= 2.9)
        # Benign: instance norm's input checks (channel count, >1 pixel) are frozen as constants.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, sample_inputs(net, channels_last), check_trace=False)
        adapter = InferenceNet if net.n_styles == 1 else StylesInferenceNet
        scripted = torch.jit.script(adapter(traced, net.weight_dtype, channels_last))
        torch.jit.save(scripted, buf, _extra_files={META_FILE: _meta_json(meta)})
    return buf.getvalue()


def write_export(net: TransformerNet, meta: dict[str, Any], channels_last: bool = False) -> bytes:
    from torch.export import Dim

    dims = {0: Dim("batch", min=1, max=4096), 2: Dim("height", min=MIN_SIDE), 3: Dim("width", min=MIN_SIDE)}
    program = torch.export.export(net, sample_inputs(net, channels_last), dynamic_shapes=export_shapes(net, dims))
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={META_FILE: _meta_json(meta)})
    return buf.getvalue()


def write_onnx(net: TransformerNet, meta: dict[str, Any], channels_last: bool = False) -> bytes:
    return _with_meta(onnx_model(net), meta)


def onnx_model(net: TransformerNet) -> Any:
    """fst's fp32 (or fp16) ONNX model proto of `net`, without metadata."""
    onnx = optional("onnx")

    axes = {0: "batch", 2: "height", 3: "width"}
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the dynamo exporter needs onnxscript
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes from the TorchScript-based exporter
        torch.onnx.export(
            net,  # the bare net: ONNX callers feed the model's dtype themselves
            sample_inputs(net),
            buf,
            opset_version=ONNX_OPSET,
            input_names=["image"] if net.n_styles == 1 else ["image", "style_weights"],
            output_names=["stylized"],
            dynamic_axes={"image": axes, "stylized": axes, **({"style_weights": {0: "batch"}} if net.n_styles > 1 else {})},
            training=torch.onnx.TrainingMode.EVAL,
            do_constant_folding=True,
            **kwargs,
        )
    return onnx.load_from_string(buf.getvalue())


def _with_meta(proto: Any, meta: dict[str, Any]) -> bytes:
    onnx = optional("onnx")
    entries = {META_FILE: _meta_json(meta)}
    entries.update({k: str(v) for k, v in meta.items() if isinstance(v, (str, int, float, bool))})
    onnx.helper.set_model_props(proto, entries)
    proto.producer_name = "fst"
    return proto.SerializeToString()


def write_int8(net: TransformerNet, meta: dict[str, Any], calibration: Path | None) -> bytes:
    """The int8 ONNX model (`fst.artefacts.quantize`), its digests those of the weights it holds:
    dequantized as every reader dequantizes them, and its int8 numbers."""
    photos = calibration_photos(calibration)
    proto, digest = int8_onnx(onnx_model(net), photos, net.n_styles)
    state = _onnx_state_dict(Path("the int8 export"), proto, meta["net"], conv_quant(proto, "the int8 export"))
    where = "fst/assets/photos" if calibration is None else calibration.name
    meta.update(quantize="int8", quant_sha256=digest, weights_sha256=weights_digest(state),
                calibration=f"{len(photos)} photos of {where}")
    return _with_meta(proto, meta)


def int8_model(net: TransformerNet, params: list[ConvQuant], origin: str) -> Callable[..., torch.Tensor]:
    """What `fst stylize` runs for an int8 artefact: fst's own fp32 ONNX graph of `net` (the artefact's
    checked, dequantized weights) with the artefact's int8 numbers put in (`with_qdq`), in
    onnxruntime on the CPU; the artefact's own graph never runs."""
    proto = with_qdq(onnx_model(net.float().eval()), params, origin)
    return int8_runner(proto, 1 if net.n_styles == 1 else 2, torch.get_num_threads())


WRITERS: dict[str, Callable[[TransformerNet, dict[str, Any], bool], bytes]] = {
    "torchscript": write_torchscript,
    "export": write_export,
    "onnx": write_onnx,
    "aoti": compiled.write_aoti,
}


# --- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="fst export", description="Export a trained transformer for single-pass inference.")
    p.add_argument("checkpoint", type=Path, help="an fst checkpoint (.ckpt from `fst fit`), or sample:universal")
    p.add_argument("--out", type=Path, required=True, help="output file (or existing folder)")
    p.add_argument("--format", choices=FORMATS + COMPILED, default=None,
                   help="default: from --out's suffix, else torchscript. aoti: an AOTInductor package (.pt2), the"
                   " network compiled ahead of time for one device and dtype; it is machine code, which runs when"
                   " loaded (fst stylize --trust-compiled); every other format is data")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    p.add_argument("--channels-last", action="store_true", help="channels-last weights and input (faster on tensor cores)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="aoti only: the device the package is compiled for (auto: cuda when present, else cpu)")
    p.add_argument("--style-image", type=Path, default=None, metavar="PAINTING",
                   help="a universal network only: bake this painting in (one input, as a per-painting network);"
                   " without it the artefact takes a painting's statistics as a second input")
    p.add_argument("--quantize", default=None, metavar="int8",
                   help="int8: an ONNX file with int8 convolutions for onnxruntime, calibrated on --calibration's"
                   " photos (README.md: int8 for the CPU)")
    p.add_argument("--calibration", type=Path, default=None, metavar="FOLDER",
                   help=f"with --quantize: photos whose activation ranges set the int8 scales (its first"
                   f" {MAX_PHOTOS}; default: 8 of the embedded photos the sample shards hold)")
    p.add_argument("--style-size", type=int, default=DEFAULT_STYLE_SIZE, metavar="PX",
                   help=f"with --style-image: the painting's long side when its statistics are taken (default {DEFAULT_STYLE_SIZE})")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and args.format in COMPILED else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise FstError("--device cuda: no CUDA device is available")
    out = export_model(args.checkpoint, args.out, args.format, args.dtype, args.channels_last, device,
                       say=lambda line: print(f"fst export: {line}", file=sys.stderr, flush=True),
                       style_image=args.style_image, style_size=args.style_size, quantize=args.quantize,
                       calibration=args.calibration)
    # Read it back: a file we cannot load must not look like success (a package: we just compiled it).
    # A package: we just compiled it, so we trust it.
    _, meta = load_compiled(out, device, trusted=True) if sniff_format(out) in COMPILED else load_exported(out)
    size_mb = out.stat().st_size / 1e6
    what = (f"universal {meta['universal']['transform']}, " + (f"painting {meta['style_name']!r}" if meta.get("painting")
            else f"stats input {tuple(meta['stats_shape'])}")) if meta.get("kind") == "universal" else f"style {meta['style_name']!r}"
    kind = "int8, fp32 in and out" if meta.get("quantize") else meta["dtype"]
    print(f"wrote {out} ({meta['format']}, {kind}, {size_mb:.1f} MB, {what}, step {meta['global_step']})")
    return 0
