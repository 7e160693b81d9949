"""`fst export` of a universal network (fst/models/universal.py): any painting, or one baked in.

    fst export universal.ckpt --out u.pt                              # model(x, stats)
    fst export universal.ckpt --style-image painting.jpg --out one.pt  # model(x)

- **Statistics as an input** (no ``--style-image``): ``model(x, stats)``, x (B, 3, H, W) RGB in
  [0, 1], stats one painting's (K, C) float32 statistics as `UniversalNet.style_stats` computes them
  (K = `style_transforms.stats_rows`: 2 for intra, 1 + C for inter; ``stats_shape`` in the metadata).
  Each frame is one pass; a painting's statistics are computed once. The artefact holds the encoder's
  weights too: `fst stylize --model u.pt --style-image P` reads them out of it (as data) and computes
  P's statistics in fst's own encoder and transform, so the artefact stays one file, and runs without
  fst for anyone who has a stats tensor. A TorchScript file refuses a stats tensor of another shape in
  its own code (one message, no traceback inside the net); ONNX and ``.pt2`` fix the stats input's
  shape in the graph, and their runtimes refuse another.
- **One painting baked in** (``--style-image P``, at ``--style-size``, the default of `fst stylize`):
  its statistics are taken once, in fp32, and stored in the file (`BoundStyles`); ``model(x)`` is one
  input, as a per-painting artefact is, and as fast. The metadata names the painting (file name, the
  sha256 of the file, the style size). A painting that is not an image, one flat colour or too small
  is refused in one line (`fst.io.style_images`, the checks of `fst stylize`).

Every format of `fst.artefacts.export` (TorchScript, ``.pt2``, ONNX, AOTInductor), with dynamic
batch, height and width (each side at least the network's `min_side`), carries ``fst.json`` with
``kind: "universal"``, the network's ``universal`` config (transform, layer, width), ``stats_shape``,
``painting`` (null for the statistics input) and what every artefact carries (``weights_sha256`` ...).
The one pair refused: **ONNX of the inter (WCT) transform**. WCT whitens each photo's features with
the inverse square root of their covariance, an eigendecomposition (``torch.linalg.eigh``) of every
photo, and ONNX has no eigendecomposition operator (opset 17, nor any later one): the exporter
cannot write it, and a graph that approximated it would silently give other pictures. Intra (AdaIN:
instance norm) exports everywhere; inter exports as TorchScript, ``.pt2`` and AOTInductor.

Reading them back is `fst.artefacts.exported` (with `fst.artefacts.universal_exported`).
"""

from __future__ import annotations

import inspect
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fst.artefacts import compiled
from fst.artefacts.checkpoint import check_finite
from fst.artefacts.exported import DTYPES, EXPORT_VERSION, META_FILE, ONNX_OPSET, optional
from fst.artefacts.universal_checkpoint import bound_styles, is_universal, load_universal, universal_from_checkpoint
from fst.artefacts.universal_exported import stats_shape
from fst.core.errors import FstError
from fst.io.files import remove_temps, sha256_file, writing
from fst.io.style_images import DEFAULT_STYLE_SIZE, load_painting
from fst.models.universal import BoundStyles, UniversalNet
from fst.models.weights import weights_digest
from fst.untrusted.torch_files import read_torch

ONNX_REFUSED = {"inter": "ONNX has no eigendecomposition operator, which the inter (WCT) transform needs to whiten each "
                         "photo's features (torch.linalg.eigh); export it as torchscript (.pt), export (.pt2) or aoti, "
                         "or export the intra transform to ONNX"}


class _Peeked(Exception):
    """Raised from inside a read once the metadata is seen: no tensor is read."""


def is_universal_checkpoint(path: Path) -> bool:
    """Whether `path` is a universal network's checkpoint, from its metadata alone (its tensors on the
    meta device, unread); False for anything else, which the per-painting loader then explains."""
    seen: list[bool] = []

    def peek(ckpt: Any, _size: int) -> None:
        seen.append(isinstance(ckpt, dict) and is_universal(ckpt.get("fst")))
        raise _Peeked

    try:
        read_torch(path, str(path), "checkpoint", peek)
    except (_Peeked, FstError, OSError):
        pass
    return bool(seen and seen[0])


class StatsInput(nn.Module):
    """`model(x, stats)`: any float x, the same dtype back; stats (K, C) float32, its shape checked."""

    def __init__(self, net: nn.Module, dtype: torch.dtype, channels_last: bool, rows: int, channels: int):
        super().__init__()
        self.net = net
        self.dtype = dtype
        self.channels_last = channels_last
        self.rows = rows
        self.channels = channels
        self.refusal = f"stats must be one painting's statistics, float32 of shape ({rows}, {channels})"

    def forward(self, x: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        if stats.dim() != 2 or stats.shape[0] != self.rows or stats.shape[1] != self.channels:
            raise ValueError(self.refusal)
        y = x.to(self.dtype)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return self.net(y, stats.float()).to(x.dtype)


class Baked(nn.Module):
    """`model(x)`: any float x, the same dtype back (a painting's statistics inside)."""

    def __init__(self, net: nn.Module, dtype: torch.dtype, channels_last: bool):
        super().__init__()
        self.net = net
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.to(self.dtype)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return self.net(y).to(x.dtype)


class Float32(Baked):
    """An AOTInductor package's calling convention: float32 in and out, the cast inside."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.to(self.dtype)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return self.net(y).float()


class Float32Stats(Float32):
    """`Float32` with the painting's statistics as a second input."""

    def forward(self, x: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = x.to(self.dtype)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return self.net(y, stats).float()


def export_universal(ckpt_path: Path, out: Path, format: str, dtype: str = "fp32", channels_last: bool = False,
                     device: str = "cpu", style_image: Path | None = None, style_size: int = DEFAULT_STYLE_SIZE,
                     say: Callable[[str], None] | None = None) -> Path:
    """Export a universal checkpoint to `out` (format, dtype, device and output already checked by
    `fst.artefacts.export.export_model`): the statistics as an input, or `style_image` baked in."""
    ckpt = load_universal(ckpt_path)
    bound = bound_styles(ckpt, str(ckpt_path))
    if bound is not None and style_image is None:  # its decoder is tuned to its painting: not for any statistics
        raise FstError(f"{ckpt_path}: a universal network fine-tuned to {', '.join(bound[1])}: export it with "
                       "--style-image PAINTING (its own painting) to bake that painting in")
    net, ckpt_meta = universal_from_checkpoint(ckpt)
    transform = net.config["transform"]
    if format == "onnx" and transform in ONNX_REFUSED:
        raise FstError(f"{ckpt_path}: a universal {transform} network: {ONNX_REFUSED[transform]}")
    if style_size < 0:
        raise FstError(f"--style-size must be 0 (keep the painting's size) or a positive long side, got {style_size}")
    check_finite(net.state_dict(), str(ckpt_path))
    model: nn.Module = net
    painting = None
    if style_image is not None:
        with torch.inference_mode():
            stats = net.style_stats(load_painting(Path(style_image), style_size, net.min_side))
        model = BoundStyles(net, stats.clone()[None])
        painting = {"file": Path(style_image).name, "sha256": sha256_file(Path(style_image)), "style_size": style_size}
    model = model.to(torch.device(device), DTYPES[dtype]).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    meta = universal_metadata(net, ckpt_meta, ckpt_path, format, dtype, channels_last, painting)
    if format == "aoti":  # float32 on the package's device, within the compiled shapes
        meta.update(device=device, input=f"float32 (B, 3, H, W) RGB in [0, 1] on {device}, B in {list(compiled.BATCH)}, "
                    f"H and W in [{net.min_side}, {compiled.SIDE[1]}]" + ("" if painting else _stats_note(meta["stats_shape"])))
    meta["weights_sha256"] = weights_digest(model.state_dict())
    if format == "aoti" and say is not None:
        say(f"compiling with AOTInductor for {device} {dtype} (a minute or more)")
    data = WRITERS[format](model, net, meta, channels_last)
    with writing(out) as tmp:
        tmp.write_bytes(data)
    remove_temps(out)
    return out


def universal_metadata(net: UniversalNet, ckpt_meta: dict[str, Any], source: Path, format: str, dtype: str,
                       channels_last: bool, painting: dict[str, Any] | None) -> dict[str, Any]:
    from fst import __version__

    shape = stats_shape(net.config)
    name = (Path(painting["file"]).stem or "painting") if painting else None
    style = "" if painting else _stats_note(shape)
    return {
        "fst_export": EXPORT_VERSION,
        "kind": "universal",
        "format": format,
        "dtype": dtype,
        "channels_last": channels_last,
        "universal": dict(net.config),
        "stats_shape": shape,
        "painting": painting,
        "style_name": name,
        **({"styles": [name]} if name else {}),
        "global_step": int(ckpt_meta.get("global_step", 0)),
        "trained_with_fst": ckpt_meta.get("version"),
        "fst_version": __version__,
        "torch_version": torch.__version__,
        "source": source.name,
        "input": f"float (B, 3, H, W) RGB in [0, 1], any H, W >= {net.min_side}{style}",
        "output": "same shape, RGB in [0, 1]",
        "input_range": [0.0, 1.0],
        "output_range": [0.0, 1.0],
    }


def _stats_note(shape: list[int]) -> str:
    return f"; and stats, one painting's statistics, float32 {tuple(shape)} (UniversalNet.style_stats)"


def _sample(model: nn.Module, net: UniversalNet, baked: bool) -> tuple[torch.Tensor, ...]:
    """Batch 2 and odd sizes (no exporter may specialise on either); a real painting's statistics shape."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 67, 91, generator=gen).to(net.weight_device, net.weight_dtype)
    if baked:
        return (x,)
    painting = torch.rand(1, 3, 4 * net.min_side, 4 * net.min_side, generator=gen)
    with torch.no_grad():  # a random painting's statistics: the shape and scale of real ones, fp32
        return x, net.style_stats(painting)


def _dims(net: UniversalNet, batch: tuple[int, int], side_max: int | None) -> dict[int, Any]:
    from torch.export import Dim

    return {0: Dim("batch", min=batch[0], max=batch[1]), 2: Dim("height", min=net.min_side, max=side_max),
            3: Dim("width", min=net.min_side, max=side_max)}


def _shapes(baked: bool, dims: dict[int, Any]) -> tuple[Any, ...]:
    return (dims,) if baked else (dims, None)


def write_torchscript(model: nn.Module, net: UniversalNet, meta: dict[str, Any], channels_last: bool) -> bytes:
    """Traced network (sizes read at run time) inside a scripted adapter, as for a per-painting network."""
    baked = meta["painting"] is not None
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, _sample(model, net, baked), check_trace=False)
        adapter = (Baked(traced, net.weight_dtype, channels_last) if baked
                   else StatsInput(traced, net.weight_dtype, channels_last, *meta["stats_shape"]))
        torch.jit.save(torch.jit.script(adapter), buf, _extra_files={META_FILE: _json(meta)})
    return buf.getvalue()


def write_export(model: nn.Module, net: UniversalNet, meta: dict[str, Any], channels_last: bool) -> bytes:
    baked = meta["painting"] is not None
    with torch.no_grad():
        program = torch.export.export(model, _sample(model, net, baked),
                                      dynamic_shapes=_shapes(baked, _dims(net, (1, 4096), None)))
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={META_FILE: _json(meta)})
    return buf.getvalue()


def write_onnx(model: nn.Module, net: UniversalNet, meta: dict[str, Any], channels_last: bool) -> bytes:
    onnx = optional("onnx")
    baked = meta["painting"] is not None
    axes = {0: "batch", 2: "height", 3: "width"}
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the dynamo exporter needs onnxscript
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, _sample(model, net, baked), buf, opset_version=ONNX_OPSET,
            input_names=["image"] if baked else ["image", "stats"], output_names=["stylized"],
            dynamic_axes={"image": axes, "stylized": axes}, training=torch.onnx.TrainingMode.EVAL,
            # Unfolded, a baked painting's statistics stay one initializer, which fst reads back by its shape.
            do_constant_folding=not baked, **kwargs)
    proto = onnx.load_from_string(buf.getvalue())
    entries = {META_FILE: _json(meta)}
    entries.update({k: str(v) for k, v in meta.items() if isinstance(v, (str, int, float, bool))})
    onnx.helper.set_model_props(proto, entries)
    proto.producer_name = "fst"
    return proto.SerializeToString()


def write_aoti(model: nn.Module, net: UniversalNet, meta: dict[str, Any], channels_last: bool) -> bytes:
    """An AOTInductor package (`fst.artefacts.compiled`): float32 in and out, for the weights' device."""
    baked = meta["painting"] is not None
    boundary = (Float32 if baked else Float32Stats)(model, net.weight_dtype, channels_last)
    sample = tuple(t.float().contiguous() for t in _sample(model, net, baked))
    with torch.no_grad():
        program = torch.export.export(boundary.eval(), sample,
                                      dynamic_shapes=_shapes(baked, _dims(net, compiled.BATCH, compiled.SIDE[1])))
    return compiled.package(program, meta, model.state_dict(), net.weight_device)


def _json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True, default=str)


WRITERS: dict[str, Callable[[nn.Module, UniversalNet, dict[str, Any], bool], bytes]] = {
    "torchscript": write_torchscript,
    "export": write_export,
    "onnx": write_onnx,
    "aoti": write_aoti,
}
