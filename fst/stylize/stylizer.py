"""`Stylizer`: a model (a checkpoint or an exported artefact) opened once on a device, run on whole
images or in tiles, falling back to tiles when memory runs out."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from fst.artefacts import compiled
from fst.artefacts.checkpoint import style_names, transformer_from_checkpoint
from fst.artefacts.exported import (
    COMPILED,
    DTYPES,
    FORMATS,
    adapted,
    model_from_state,
    open_compiled,
    open_exported,
    read_exported_int8,
    sniff_format,
)
from fst.artefacts.export import int8_model
from fst.artefacts.universal_exported import is_baked
from fst.core import host_memory, inductor_cache
from fst.core import precision as fst_precision
from fst.core.errors import FstError, first_line
from fst.models import tiling
from fst.artefacts.universal_checkpoint import bound_styles, is_universal, load_model_checkpoint, universal_from_checkpoint
from fst.assets import resolve_model_path
from fst.models.transformer import MIN_SIDE, FixedStyle
from fst.models.universal import BoundStyles
from fst.stylize import memory
from fst.stylize.paintings import DEFAULT_STYLE_SIZE, painting_names, painting_stats

DEFAULT_TILE = 1024  # what an out-of-memory full pass falls back to
MIN_TILE = 32
OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    {getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError}
)
# A refused host allocation is a plain RuntimeError: torch's allocator says "can't allocate memory",
# oneDNN "could not create a primitive" when its scratchpad is refused (seen under RLIMIT_AS).
CPU_OOM_TEXT = ("can't allocate memory", "not enough memory", "std::bad_alloc", "could not create a primitive")


def is_out_of_memory(e: BaseException) -> bool:
    """An out-of-memory of a pass, on CUDA or on the host."""
    return isinstance(e, (*OOM_ERRORS, MemoryError)) or (
        isinstance(e, RuntimeError) and any(text in str(e) for text in CPU_OOM_TEXT))


Finish = Callable[[torch.Tensor], torch.Tensor]


def same(x: torch.Tensor) -> torch.Tensor:
    return x


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise FstError("--device cuda: no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise FstError(f"unknown device {device!r} (choose from auto, cpu, cuda)")
    return torch.device(device)


def with_stats(run: Callable[..., torch.Tensor], eager: Callable[..., torch.Tensor], stats: torch.Tensor) -> Callable[..., torch.Tensor]:
    """A compiled `run(x, stats)` as a network of one style per painting: a style picked alone runs
    compiled with its painting's statistics; a blend of several runs `eager` (fst's network)."""

    def full(x: torch.Tensor, *w: torch.Tensor) -> torch.Tensor:
        if not w:
            return run(x, stats[0])
        row = w[0][0]
        if bool((w[0] == row).all()) and int((row == 1).sum()) == 1 and int((row == 0).sum()) == row.numel() - 1:
            return run(x, stats[int(row.argmax())])
        return eager(x, *w)

    return full


class Stylizer:
    """A model on a device: `stylizer(x)` maps (B, 3, H, W) in [0, 1] to the same, fp32.

    Every pass runs fst's own TransformerNet, with a checkpoint's weights or an artefact's, read as
    data once (`fst.artefacts.exported.open_exported`; an artefact's code or graph never runs), except a trusted
    AOTInductor package, whose compiled code runs whole-image passes, and an int8 ONNX file, whose int8
    numbers run them in onnxruntime inside fst's own graph; their tiles (module hooks) run fst's network.
    A model of several styles (`style_names`) runs the style weights in `style` ((N,), e.g.
    `fst.models.transformer.style_weights(N, {k: 1.0})[0]` for style k alone).
    """

    def __init__(self, model: str | Path, device: str = "auto", dtype: str = "auto", compile: bool = False,
                 trust_compiled: bool = False, style_images: list[Path] | None = None, transform: str | None = None,
                 style_size: int = DEFAULT_STYLE_SIZE):
        self.source = resolve_model_path(model)
        self.device = resolve_device(device)
        if not self.source.is_file():
            raise FstError(f"{self.source}: model not found")
        self.format = sniff_format(self.source)
        self._eager: nn.Module | None = None
        self._checked: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None  # a package's weights, read
        self.universal = bool(style_images)
        if transform is not None and not self.universal:
            raise FstError("--transform is for a universal network with --style-image")
        if self.format in COMPILED and not trust_compiled:
            raise FstError(f"{self.source}: an AOTInductor package: {compiled.TRUST_HINT}")
        if trust_compiled and self.format not in COMPILED:
            raise FstError(f"{self.source}: --trust-compiled is for AOTInductor packages (fst export --format aoti); "
                           f"this is {'a ' + self.format + ' file' if self.format else 'not one'}")
        if self.format in FORMATS + COMPILED:
            if self.format in COMPILED:  # auto: the device the package was compiled for
                self._full, self.meta, self._checked = open_compiled(self.source, None if device == "auto" else self.device,
                                                                       trusted=trust_compiled)
                self.device = torch.device(self.meta["device"])
                checked = self._checked
            else:  # fst's own network with the artefact's weights: full passes and tiles share it
                *checked, int8 = read_exported_int8(self.source)
                self.meta = checked[1]
                if int8 and self.device.type != "cpu":  # onnxruntime's CPU int8 kernels; auto takes the CPU
                    if device != "auto":
                        raise FstError(f"{self.source}: an int8 model runs on the CPU (onnxruntime); use --device cpu")
                    self.device = torch.device("cpu")
            self.dtype = self.meta["dtype"]
            if dtype not in ("auto", self.dtype):
                raise FstError(f"{self.source}: exported as {self.dtype}; re-export with --dtype {dtype} to run in {dtype}")
            if is_universal(self.meta):
                self._open_universal_artefact(checked, style_images or [], transform, style_size)
            elif self.universal:
                raise FstError(f"{self.source}: an exported {self.format} file of a per-painting network; --style-image "
                               "takes a universal network (its checkpoint, or its export without --style-image)")
            elif self.format not in COMPILED:
                self._eager, _ = open_exported(self.source, self.device, checked)
                if self.device.type == "cpu":  # fst's own network runs the artefact's weights: its fast pass's layout
                    self._eager = self._eager.to(memory_format=torch.channels_last)
                self._full = adapted(self._eager, DTYPES[self.dtype], self.meta["channels_last"])
                if int8:  # whole images in int8 (fst's graph, the artefact's numbers); tiles in fp32
                    self._full = int8_model(self._eager, int8, str(self.source))
        elif self.universal:
            self._open_universal(style_images, transform, style_size, dtype)
        else:  # a checkpoint, or something load_checkpoint will explain the problem with
            self.format = "checkpoint"
            ckpt = load_model_checkpoint(self.source)
            if is_universal(ckpt["fst"]):  # fine-tuned to a painting: its statistics are in the file
                self._open_universal(ckpt, transform, style_size, dtype)
                self.universal = True
            else:
                self._open_transformer(ckpt, dtype)
        if self.device.type == "cpu":
            host_memory.keep_freed_memory()  # frames and tiles of one size reuse the same blocks
        self.min_side = self._eager.net.min_side if self.universal else MIN_SIDE
        if not self.universal:
            self.style_names = style_names(self.meta, str(self.source))
            self.widest = 2 * int(self.meta["net"]["channels"])
        self.n_styles = len(self.style_names)
        self.style: torch.Tensor | None = None  # (n_styles,) weights of the style (or blend) in use
        self.warning = fst_precision.slow_bf16_warning(self.device.type, self.dtype, "--dtype auto", "--dtype fp32")
        # Inductor fuses instance norm, ReLU and padding into few passes: ~2x on CPU bf16 at 1080p.
        # Compiled lazily, per shape first and then with dynamic shapes (torch's default).
        self._compiled = None
        if compile:
            self.compile()

    def _open_transformer(self, ckpt: dict[str, Any], dtype: str) -> None:
        net, self.meta = transformer_from_checkpoint(ckpt, str(self.source))
        self.dtype = fst_precision.inference_dtype(self.device.type).value if dtype == "auto" else dtype
        if self.dtype not in DTYPES:
            raise FstError(f"unknown dtype {dtype!r} (choose from auto, {', '.join(DTYPES)})")
        self._eager = net.to(self.device, DTYPES[self.dtype])
        if self.device.type == "cpu":  # the layout its fast pass runs in (cpu_fast): no weight reorder per conv
            self._eager = self._eager.to(memory_format=torch.channels_last)
        self._full = self._eager

    def _open_universal(self, style_images: list[Path] | dict[str, Any], transform: str | None, style_size: int,
                        dtype: str) -> None:
        """A universal checkpoint with the paintings' statistics bound in: a network of one style per
        painting (`BoundStyles`), so --style, --mix, tiles and clips work as for a several-style network.
        Without --style-image (`style_images` is then the checkpoint read), the statistics a network
        fine-tuned to a painting carries (fst/training/universal_base.py)."""
        self.format = "checkpoint"
        net, self.meta = universal_from_checkpoint(style_images if isinstance(style_images, dict) else self.source)
        if transform is not None:
            net = net.with_transform(transform)
        net = net.to(self.device)
        if self.device.type == "cpu":  # the layout it runs in there (cpu_fast.cpu_layout): no reorder per conv
            net = net.to(memory_format=torch.channels_last)
        if isinstance(style_images, dict):
            bound = bound_styles(style_images, str(self.source))
            if bound is None:
                raise FstError(f"{self.source}: a universal network: give it the painting to apply (--style-image "
                               "PAINTING)")
            stats, names = bound[0].to(self.device), bound[1]
        else:
            stats, names = painting_stats(net, style_images, style_size), painting_names(style_images)
        self.dtype = fst_precision.inference_dtype(self.device.type).value if dtype == "auto" else dtype
        if self.dtype not in DTYPES:
            raise FstError(f"unknown dtype {dtype!r} (choose from auto, {', '.join(DTYPES)})")
        self._eager = BoundStyles(net, stats).to(self.device, DTYPES[self.dtype])
        self._full = self._eager
        self.style_names = names
        self.meta.update(style_name="+".join(self.style_names), transform=net.config["transform"])
        # The widest full-resolution activation: the encoder's first block (64) or the decoder's last.
        self.widest = max(64, round(64 * net.config["width"]))

    def _open_universal_artefact(self, checked: tuple[dict[str, torch.Tensor], dict[str, Any]], style_images: list[Path],
                                 transform: str | None, style_size: int) -> None:
        """A universal network's artefact, run as fst's own network with its weights: one that takes a
        painting's statistics gets them computed here, once, by the encoder and transform it carries;
        one with its painting baked in is a network of one style. A package's compiled code runs the
        full passes of one painting."""
        origin, meta = str(self.source), self.meta
        exported_with = meta["universal"]["transform"]
        if transform not in (None, exported_with):
            raise FstError(f"{origin}: exported with the {exported_with} transform, which its graph holds; --transform "
                           "is for a universal network's checkpoint")
        model = model_from_state(meta, checked[0], origin).to(self.device)
        if is_baked(meta):
            if style_images:
                raise FstError(f"{origin}: has its painting ({meta['painting']['file']}) baked in; --style-image is for a "
                               "universal network's checkpoint or its export without --style-image")
            bound, self.style_names = model, [meta.get("style_name") or "painting"]
        else:
            if not style_images:
                raise FstError(f"{origin}: a universal network that takes a painting's statistics; give the painting "
                               "with --style-image")
            stats = painting_stats(model, style_images, style_size)  # fp32, once per run
            bound, self.style_names = BoundStyles(model, stats), painting_names(style_images)
        self._eager = bound.to(self.device, DTYPES[self.dtype])
        if meta["channels_last"] or self.device.type == "cpu":  # on the CPU: the fast pass's layout (cpu_fast)
            self._eager = self._eager.to(memory_format=torch.channels_last)
        eager = adapted(self._eager, DTYPES[self.dtype], meta["channels_last"])
        if self.format in COMPILED and not is_baked(meta):
            self._full = with_stats(self._full, eager, stats)
        elif self.format not in COMPILED:
            self._full = eager
        self.universal = True
        self.meta = {**meta, "style_name": "+".join(self.style_names), "transform": exported_with}
        self.widest = max(64, round(64 * meta["universal"]["width"]))

    def compile(self) -> None:
        self._compiled = inductor_cache.compiled(self.eager)

    def describe(self) -> str:
        style = self.meta.get("style_name") or "?"
        if self.universal:
            return (f"{self.source.name} (universal {self.meta['transform']}, paintings {style!r}, step "
                    f"{self.meta.get('global_step', '?')}) on {self.device} {self.dtype}")
        return f"{self.source.name} ({self.format}, style {style!r}, step {self.meta.get('global_step', '?')}) on {self.device} {self.dtype}"

    @property
    def eager(self) -> nn.Module:
        if self._eager is None:  # a package's tiles: fst's own network, in the layout a checkpoint's runs in
            self._eager, _ = open_exported(self.source, self.device, self._checked)
            if self.device.type == "cpu":
                self._eager = self._eager.to(memory_format=torch.channels_last)
        return self._eager

    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The network's inputs for images x: x, and for several styles the weights of the one in use."""
        if self.n_styles == 1:
            return (x,)
        if self.style is None:
            raise FstError(f"{self.source}: holds {self.n_styles} styles; choose one (Stylizer.style)")
        return x, self.style.to(x.device).expand(x.shape[0], -1)

    def full(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(DTYPES[self.dtype])  # artefacts cast to their dtype too: the same values either way
        if self._compiled is not None:
            try:
                y = self._compiled(*self._inputs(x)).float()
            except Exception as e:  # e.g. no C++ compiler for inductor on CPU: eager still works
                if is_out_of_memory(e):
                    raise
                tqdm.write(f"fst stylize: torch.compile failed ({type(e).__name__}: {first_line(e)[:160]}); running eager", file=sys.stderr)
                self._compiled = None
            else:
                return self.finite(y)
        return self.finite(self._full(*self._inputs(x)).float())

    def tiled(self, x: torch.Tensor, tile: int, overlap: int, stats_side: int = tiling.DEFAULT_STATS_SIDE) -> torch.Tensor:
        net = self.eager if self.n_styles == 1 else FixedStyle(self.eager, self._inputs(x[:1])[1][0])
        xt = x.to(DTYPES[self.dtype])
        return self.finite(tiling.stylize_tiled(net, xt, tile, min(overlap, tile // 2 - 1), stats_side).float())

    def finite(self, y: torch.Tensor) -> torch.Tensor:
        """`y`, a pass's output, unless it holds NaN or infinity: an 8-bit image shows those as black,
        so a pass that overflowed (fp16's range ends at 65504) is refused, with what to do about it."""
        bad = int((~torch.isfinite(y)).sum())
        if not bad:
            return y
        if self.dtype == "fp32":
            why = "the model's weights overflow float32 on this input"
        elif self.format == "checkpoint":
            why = f"the network overflows {self.dtype} on this input; rerun with --dtype fp32"
        else:
            why = f"the network overflows {self.dtype} on this input; export it with --dtype fp32"
        raise FstError(f"the stylized result holds {bad} NaN or infinite values of {y.numel()} ({why}); nothing written")

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, tile: int | None = None, overlap: int = tiling.DEFAULT_OVERLAP,
                 finish: Finish = same) -> torch.Tensor:
        """x stylized, then `finish`ed (colour, strength, 8 bits: what is done to the whole output) within
        the same fallback as the pass: memory that runs out in either is retried in smaller tiles."""
        x = x.to(self.device)
        if min(x.shape[-2:]) < self.min_side:
            raise FstError(f"too small: {x.shape[-1]}x{x.shape[-2]}; the network needs at least {self.min_side} px a side")
        if tile is not None and max(x.shape[-2:]) > tile:
            return self._tiled_with_fallback(x, tile, overlap, finish)
        if self.format in COMPILED and max(x.shape[-2:]) > compiled.SIDE[1]:
            tqdm.write(f"fst stylize: {x.shape[-1]}x{x.shape[-2]} is beyond the package's {compiled.SIDE[1]} px; "
                       f"tiling at {DEFAULT_TILE}", file=sys.stderr)
            return self._tiled_with_fallback(x, DEFAULT_TILE, overlap, finish)
        if self.beyond_32bit_indexing(x):
            tqdm.write(f"fst stylize: {x.shape[-1]}x{x.shape[-2]} is too large for one CUDA pass; tiling at {DEFAULT_TILE}", file=sys.stderr)
            return self._tiled_with_fallback(x, DEFAULT_TILE, overlap, finish)
        planned = self._host_tile(x)
        if planned is not None:
            return self._tiled_with_fallback(x, planned[0], overlap, finish, planned[1])
        try:
            return finish(self.full(x))
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            # retry outside the handler: its traceback still holds the failed pass's activations
        self._free()
        tile = min(DEFAULT_TILE, max(x.shape[-2:]) // 2 + overlap)
        tqdm.write(f"fst stylize: out of memory at {x.shape[-1]}x{x.shape[-2]}; tiling at {tile}", file=sys.stderr)
        return self._tiled_with_fallback(x, tile, overlap, finish)

    def beyond_32bit_indexing(self, x: torch.Tensor) -> bool:
        """CUDA kernels refuse tensors of 2^31+ elements (an error, not an out-of-memory): the
        widest full-resolution activation, up2's input, has 2 * channels planes."""
        planes = self.widest
        return self.device.type == "cuda" and x.shape[0] * planes * x.shape[-2] * x.shape[-1] >= 2**31

    def _host_need(self, x: torch.Tensor) -> tuple[int, int] | None:
        """On the CPU, (bytes a full pass over x needs, bytes free); None where nothing is known."""
        free = memory.free_bytes() if self.device.type == "cpu" else None
        if free is None:
            return None
        (h, w), c = x.shape[-2:], self.widest // 2
        return memory.pass_bytes(h, w, c), free

    def _host_tile(self, x: torch.Tensor) -> tuple[int, int] | None:
        """On the CPU, (tile, statistics side) when a full pass would not fit in the memory that is
        free (planned before allocating: past a limit a pass is a traceback, past overcommit the OOM
        killer), said on one line; None for a full pass."""
        known = self._host_need(x)
        if known is None or known[0] <= known[1] * memory.USABLE:
            return None
        (h, w), c, (need, free) = x.shape[-2:], self.widest // 2, known  # memory counts a transformer's base width
        planned = memory.tiles_for_memory(h, w, c, free, DEFAULT_TILE, tiling.DEFAULT_STATS_SIDE)
        if planned is None or planned[0] < MIN_TILE:
            raise FstError(f"{w}x{h} does not fit in the {gigabytes(free)} of memory free, even in tiles "
                           f"(use --max-size)")
        tqdm.write(f"fst stylize: {w}x{h} needs ~{gigabytes(need)} for one pass and {gigabytes(free)} is free; "
                   f"tiling at {planned[0]}", file=sys.stderr)
        return planned

    def _tiled_with_fallback(self, x: torch.Tensor, tile: int, overlap: int, finish: Finish = same,
                             stats_side: int = tiling.DEFAULT_STATS_SIDE) -> torch.Tensor:
        """Tiles, halving tile and statistics size for as long as memory runs out (on any device: a
        refused host allocation is as likely as a CUDA one), down to MIN_TILE; then one line."""
        known = self._host_need(x)
        if known is not None and known[0] > known[1] * memory.USABLE:
            # short of memory: a kept block is a hole that a failed tile size leaves to the next one
            host_memory.give_back_freed_memory()
        while True:
            try:
                return finish(self.tiled(x, tile, overlap, stats_side))
            except Exception as e:
                if not is_out_of_memory(e):
                    raise
                # as in __call__: free only once the handler's traceback is gone
            self._free()
            if tile // 2 < MIN_TILE:
                raise FstError(f"{x.shape[-1]}x{x.shape[-2]}: out of memory even in {tile}px tiles on "
                               f"{self.device.type} (use --max-size)")
            tqdm.write(f"fst stylize: out of memory in {tile}px tiles; trying {tile // 2}", file=sys.stderr)
            tile, stats_side = tile // 2, max(256, stats_side // 2)

    def _free(self) -> None:
        gc.collect()  # a failed pass's tensors held in reference cycles (its frames, its hooks)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        else:  # short of memory: freed blocks leave the process from now on, not only this once
            host_memory.give_back_freed_memory()
            memory.release_free()
