"""`fst stylize`: photos in, stylised photos out, with a checkpoint or an exported model.

    fst stylize photo.jpg --model starry.ckpt --out styled.jpg
    fst stylize photos/ 'more/*.png' --model starry.pt --out styled/ --ext png --tile 1024

- Inputs: files, folders (their image files, not recursive) and globs. Outputs: a file for a single
  input, else a folder of ``<stem><ext>`` (the input's extension unless ``--ext``); the format
  follows the extension. Every output is written to a temp name beside it, then renamed.
- Images are read by `fst.images` (EXIF orientation applied; grayscale, palette, CMYK, 16-bit
  converted to 8-bit RGB). An alpha channel is carried over where the output format has one.
- Device: CUDA when present (fp16 by default), else CPU fp32; ``--device``/``--dtype`` override.
  Exported models run in the dtype they were exported with. An AOTInductor package (``fst export
  --format aoti``) is machine code and runs only with ``--trust-compiled`` (`fst.compiled`). ``--compile`` runs the network through
  torch.compile (an eager copy of an artefact's weights), falling back to eager if compiling fails.
- Large images: ``--tile`` runs overlapping tiles with whole-image instance-norm statistics
  (`fst.tiling`); a full pass that runs out of memory falls back to that automatically. Tiling
  needs module hooks, so for exported models it runs an eager copy of the artefact's weights.
- A network of several styles (``fst fit`` with ``style_images``): every style by default, one
  output per style named ``<stem>_<style><ext>``; ``--style NAME`` (or its index; repeatable) picks
  styles, ``--mix NAME=W,NAME=W`` blends them (weights normalised to sum 1). A single output (one
  style, or a blend) is named as without styles.
- ``--strength s``: s * stylised + (1 - s) * content. ``--preserve-color``: luminance from the
  stylised image, chroma from the content.
- A file that cannot be read or written is reported on one line and skipped; the rest are done,
  and the exit status is 1 with a summary.
"""

from __future__ import annotations

import argparse
import glob
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from tqdm import tqdm

from fst import compiled, host_memory
from fst import precision as fst_precision
from fst import tiling
from fst.arguments import ArgumentParser
from fst.checkpoint import style_names, transformer_from_checkpoint
from fst.color import luminance
from fst.errors import FstError, first_line
from fst.exported import COMPILED, DTYPES, FORMATS, adapted, open_compiled, open_exported, sniff_format
from fst.files import atomic_path
from fst.images import alpha_channel, image_paths, not_regular, open_image, to_rgb
from fst.output_dir import writable_dir
from fst.transformer import FixedStyle, TransformerNet, style_weights

DEFAULT_TILE = 1024  # what an out-of-memory full pass falls back to
MIN_TILE = 32
ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "TGA"}
SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}
OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    {getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError}
)


@dataclass(frozen=True)
class Options:
    """How each image is treated; the CLI flags, validated."""

    tile: int | None = None
    overlap: int = tiling.DEFAULT_OVERLAP
    max_size: int | None = None
    strength: float = 1.0
    preserve_color: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise FstError(f"--strength must be in [0, 1], got {self.strength}")
        if self.tile is not None and self.tile < MIN_TILE:
            raise FstError(f"--tile must be at least {MIN_TILE}, got {self.tile}")
        if self.overlap < 0 or (self.tile is not None and self.overlap * 2 >= self.tile):
            raise FstError(f"--overlap must be in [0, tile/2), got {self.overlap} for tile {self.tile}")
        if self.max_size is not None and self.max_size < MIN_TILE:
            raise FstError(f"--max-size must be at least {MIN_TILE}, got {self.max_size}")


# --- the model ----------------------------------------------------------------------------------


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise FstError("--device cuda: no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise FstError(f"unknown device {device!r} (choose from auto, cpu, cuda)")
    return torch.device(device)


class Stylizer:
    """A model on a device: `stylizer(x)` maps (B, 3, H, W) in [0, 1] to the same, fp32.

    Every pass runs fst's own TransformerNet, with a checkpoint's weights or an artefact's, read as
    data once (`fst.exported.open_exported`; an artefact's code or graph never runs), except a trusted
    AOTInductor package, whose compiled code runs whole-image passes; its tiles (module hooks) run
    fst's network on the weights the package carries, read in the same pass over the file.
    A model of several styles (`style_names`) runs the style weights in `style` ((N,), e.g.
    `fst.transformer.style_weights(N, {k: 1.0})[0]` for style k alone).
    """

    def __init__(self, model: str | Path, device: str = "auto", dtype: str = "auto", compile: bool = False,
                 trust_compiled: bool = False):
        self.source = Path(model)
        self.device = resolve_device(device)
        if not self.source.is_file():
            raise FstError(f"{self.source}: model not found")
        self.format = sniff_format(self.source)
        self._eager: TransformerNet | None = None
        self._checked: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None  # a package's weights, read
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
            else:  # fst's own network with the artefact's weights: full passes and tiles share it
                self._eager, self.meta = open_exported(self.source, self.device)
                self._full = adapted(self._eager, DTYPES[self.meta["dtype"]], self.meta["channels_last"])
            self.dtype = self.meta["dtype"]
            if dtype not in ("auto", self.dtype):
                raise FstError(f"{self.source}: exported as {self.dtype}; re-export with --dtype {dtype} to run in {dtype}")
        else:  # a checkpoint, or something load_checkpoint will explain the problem with
            self.format = "checkpoint"
            net, self.meta = transformer_from_checkpoint(self.source)
            self.dtype = fst_precision.inference_dtype(self.device.type).value if dtype == "auto" else dtype
            if self.dtype not in DTYPES:
                raise FstError(f"unknown dtype {dtype!r} (choose from auto, {', '.join(DTYPES)})")
            self._eager = net.to(self.device, DTYPES[self.dtype])
            self._full = self._eager
        if self.device.type == "cpu":
            host_memory.keep_freed_memory()  # frames and tiles of one size reuse the same blocks
        self.style_names = style_names(self.meta, str(self.source))
        self.n_styles = len(self.style_names)
        self.style: torch.Tensor | None = None  # (n_styles,) weights of the style (or blend) in use
        self.warning = fst_precision.slow_bf16_warning(self.device.type, self.dtype, "--dtype auto", "--dtype fp32")
        # Inductor fuses instance norm, ReLU and padding into few passes: ~2x on CPU bf16 at 1080p.
        # Compiled lazily, per shape first and then with dynamic shapes (torch's default).
        self._compiled = None
        if compile:
            self.compile()

    def compile(self) -> None:
        self._compiled = torch.compile(self.eager)

    def describe(self) -> str:
        style = self.meta.get("style_name") or "?"
        return f"{self.source.name} ({self.format}, style {style!r}, step {self.meta.get('global_step', '?')}) on {self.device} {self.dtype}"

    @property
    def eager(self) -> TransformerNet:
        if self._eager is None:
            self._eager, _ = open_exported(self.source, self.device, self._checked)
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
                return self._compiled(*self._inputs(x)).float()
            except OOM_ERRORS:
                raise
            except Exception as e:  # e.g. no C++ compiler for inductor on CPU: eager still works
                tqdm.write(f"fst stylize: torch.compile failed ({type(e).__name__}: {first_line(e)[:160]}); running eager", file=sys.stderr)
                self._compiled = None
        return self._full(*self._inputs(x)).float()

    def tiled(self, x: torch.Tensor, tile: int, overlap: int, stats_side: int = tiling.DEFAULT_STATS_SIDE) -> torch.Tensor:
        net = self.eager if self.n_styles == 1 else FixedStyle(self.eager, self._inputs(x[:1])[1][0])
        xt = x.to(DTYPES[self.dtype])
        return tiling.stylize_tiled(net, xt, tile, min(overlap, tile // 2 - 1), stats_side).float()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, tile: int | None = None, overlap: int = tiling.DEFAULT_OVERLAP) -> torch.Tensor:
        x = x.to(self.device)
        if tile is not None and max(x.shape[-2:]) > tile:
            return self._tiled_with_fallback(x, tile, overlap)
        if self.format in COMPILED and max(x.shape[-2:]) > compiled.SIDE[1]:
            tqdm.write(f"fst stylize: {x.shape[-1]}x{x.shape[-2]} is beyond the package's {compiled.SIDE[1]} px; "
                       f"tiling at {DEFAULT_TILE}", file=sys.stderr)
            return self._tiled_with_fallback(x, DEFAULT_TILE, overlap)
        if self.beyond_32bit_indexing(x):
            tqdm.write(f"fst stylize: {x.shape[-1]}x{x.shape[-2]} is too large for one CUDA pass; tiling at {DEFAULT_TILE}", file=sys.stderr)
            return self._tiled_with_fallback(x, DEFAULT_TILE, overlap)
        try:
            return self.full(x)
        except OOM_ERRORS:
            pass  # retry outside the handler: its traceback still holds the failed pass's activations
        self._free()
        tile = min(DEFAULT_TILE, max(x.shape[-2:]) // 2 + overlap)
        tqdm.write(f"fst stylize: out of memory at {x.shape[-1]}x{x.shape[-2]}; tiling at {tile}", file=sys.stderr)
        return self._tiled_with_fallback(x, tile, overlap)

    def beyond_32bit_indexing(self, x: torch.Tensor) -> bool:
        """CUDA kernels refuse tensors of 2^31+ elements (an error, not an out-of-memory): the
        widest full-resolution activation, up2's input, has 2 * channels planes."""
        planes = 2 * int(self.meta["net"]["channels"])
        return self.device.type == "cuda" and x.shape[0] * planes * x.shape[-2] * x.shape[-1] >= 2**31

    def _tiled_with_fallback(self, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
        """Tiles, halving tile and statistics size for as long as memory runs out."""
        stats_side = tiling.DEFAULT_STATS_SIDE
        while True:
            try:
                return self.tiled(x, tile, overlap, stats_side)
            except OOM_ERRORS:
                pass  # as in __call__: free only once the handler's traceback is gone
            self._free()
            if tile <= 2 * MIN_TILE:
                raise FstError(f"out of memory even with {tile}px tiles on {self.device}")
            tile, stats_side = tile // 2, max(256, stats_side // 2)

    def _free(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


# Measured on a 2-core Zen 4 (docs/benchmarks.md, inference tables): compiling takes 30-40 s per image
# size (a second size recompiles once with dynamic shapes) and saves, per megapixel stylised, 0.3 s
# in fp32 and 0.12 s in bf16 (1080p 4.3 -> 3.7 s and 2.2 -> 2.0 s; 1.6 and 0.9 s before the
# channels_last output conv made eager faster). On CUDA the saving is ~7 ms per megapixel (H100
# fp16), thousands of frames before a compile pays, so auto leaves CUDA to an explicit --compile.
COMPILE_CHOICES = ("auto", "yes", "no")
COMPILE_SECONDS = {"one size": 40.0, "several sizes": 80.0}
COMPILE_SAVING_S_PER_MPX = {"fp32": 0.3, "bf16": 0.12}


def compile_pays(choice: str, stylizer: "Stylizer", files: list[Path], opts: Options) -> tuple[bool, str]:
    """(compile?, why) for ``--compile auto|yes|no``: auto compiles only where the measured saving on
    these inputs exceeds the compile time."""
    if stylizer.format in COMPILED:
        return False, "an AOTInductor package is compiled already"
    if choice != "auto":
        return choice == "yes", f"--compile {choice}"
    if stylizer.device.type != "cpu":
        return False, "auto: on CUDA a compile pays only over thousands of frames; use --compile for video"
    if not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
        return False, "auto: no C++ compiler for torch.compile"
    saving = COMPILE_SAVING_S_PER_MPX.get(stylizer.dtype)
    if saving is None:
        return False, f"auto: not measured for {stylizer.dtype}"
    if opts.tile is not None:
        return False, "auto: tiles run eager"
    sizes = [s for s in (fit_size(image_size(f), opts.max_size) for f in files) if s is not None]
    cost = COMPILE_SECONDS["one size" if len(set(sizes)) <= 1 else "several sizes"]
    gain = saving * sum(w * h for w, h in sizes) / 1e6
    verdict = "pays" if gain > cost else "does not pay"
    return gain > cost, f"auto: ~{gain:.0f} s saved vs ~{cost:.0f} s compiling {verdict}"


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the header only, upright as stylised (EXIF rotation); None if unreadable."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            return (h, w) if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)
    except (OSError, ValueError):
        return None


def fit_size(size: tuple[int, int] | None, max_size: int | None) -> tuple[int, int] | None:
    """`size` after `fit_long_side`'s downscale."""
    if size is None or max_size is None or max(size) <= max_size:
        return size
    scale = max_size / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


# --- one image ----------------------------------------------------------------------------------


def keep_content_color(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Content + the luma difference: Y from the stylised image, Cb/Cr from the content (BT.601).
    Clamping to [0, 1] afterwards bends chroma only where the result leaves the RGB gamut."""
    dy = luminance(stylized - content)  # luma is linear: the luma of the difference
    return (content + dy).clamp(0, 1)


def blend(stylized: torch.Tensor, content: torch.Tensor, strength: float) -> torch.Tensor:
    return stylized if strength == 1.0 else strength * stylized + (1.0 - strength) * content


def fit_long_side(img: Image.Image, max_size: int | None) -> Image.Image:
    """Downscaled (Lanczos) so the long side is at most max_size; untouched if already smaller."""
    size = fit_size(img.size, max_size)
    return img if size == img.size else img.resize(size, Image.Resampling.LANCZOS)


def stylize_image(stylizer: Stylizer, img: Image.Image, opts: Options = Options()) -> Image.Image:
    """An RGB PIL image stylised per `opts` (resize, tiling, colour, strength), 8-bit RGB back."""
    content = TF.pil_to_tensor(fit_long_side(img.convert("RGB"), opts.max_size))[None].float().div(255)
    content = content.to(stylizer.device)
    out = stylizer(content, opts.tile, opts.overlap)
    if opts.preserve_color:
        out = keep_content_color(out, content)
    out = blend(out, content, opts.strength)
    return TF.to_pil_image(out[0].mul(255).round().clamp(0, 255).to(torch.uint8).cpu())


def save_image(img: Image.Image, path: Path, alpha: Image.Image | None = None) -> None:
    """Save in the format `path`'s extension names, with `alpha` where that format has one, atomically."""
    fmt = image_format(path)
    if alpha is not None and fmt in ALPHA_FORMATS:
        img = img.copy()
        img.putalpha(alpha.resize(img.size, Image.Resampling.LANCZOS) if alpha.size != img.size else alpha)
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **SAVE_OPTIONS.get(fmt, {}))


class PartlyWritten(FstError):
    """Writing one of a file's outputs failed after `written` of them were written."""

    def __init__(self, written: int, problem: str):
        super().__init__(problem)
        self.written = written


Output = tuple[torch.Tensor | None, Path]  # (style weights, ignored by a one-style model; where to)


def stylize_file(stylizer: Stylizer, src: Path, outputs: list[Output], opts: Options = Options()) -> int:
    """Read `src` once and write each output (one per style chosen); how many were written."""
    raw = open_image(src)
    img, alpha = to_rgb(raw, str(src)), alpha_channel(raw)
    for written, (weights, dst) in enumerate(outputs):
        stylizer.style = weights
        try:
            save_image(stylize_image(stylizer, img, opts), dst, alpha)
        except OSError as e:
            raise PartlyWritten(written, f"cannot write {dst}: {e.strerror or e}") from None
    return len(outputs)


# --- files --------------------------------------------------------------------------------------


def image_format(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise FstError(f"{path}: cannot write images with extension {path.suffix or '(none)'!r}")
    return fmt


def collect_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """(image files from files, folders and globs, in order, deduplicated; problems, one line each).

    FIFOs, devices and dangling symlinks are problems, never opened: reading a FIFO waits forever."""
    files: list[Path] = []
    problems: list[str] = []
    for item in items:
        found, problem = _expand(item)
        problems += [problem] if problem else []
        for path in found:
            reason = not_regular(path)
            if reason is None:
                files.append(path)
            else:
                problems.append(f"{path}: {reason}")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return [Path(p) for p in unique], list(dict.fromkeys(problems))


def _expand(item: str) -> tuple[list[Path], str | None]:
    """The paths one input names (itself, a folder's images, a glob's matches), or why there are none."""
    path = Path(item)
    if path.is_dir():
        found = [p for p in image_paths(path, recursive=False) if not p.name.startswith(".")]
        return found, None if found else f"{item}: no images in this folder"
    if path.exists() or path.is_symlink():  # a dangling symlink is reported as such, not as missing
        return [path], None
    if glob.has_magic(item):
        found = sorted(Path(p) for p in glob.glob(item) if not Path(p).is_dir())
        return found, None if found else f"{item}: no files match"
    return [], f"{item}: no such file"


def plan_outputs(files: list[Path], out: Path, ext: str | None) -> list[Path]:
    """Where each input goes: `out` itself for one input and a file-like `out`, else out/<stem><ext>."""
    suffix = None if ext is None else "." + ext.lstrip(".").lower()
    as_file = len(files) == 1 and not out.is_dir() and out.suffix.lower() in Image.registered_extensions()
    if as_file:
        targets = [out]
    else:
        if out.suffix.lower() in Image.registered_extensions() and not out.is_dir():
            raise FstError(f"{out}: {len(files)} inputs need --out to be a folder")
        _require_parent(out)
        targets = [out / (f.stem + (suffix or f.suffix)) for f in files]
    _check_targets(files, targets)
    _require_parent(out)
    writable_dir(out.parent if as_file else out)  # before the model loads: a read-only --out is one line
    return targets


def _check_targets(files: list[Path], targets: list[Path]) -> None:
    """Every target a known image format, none an input, no two the same."""
    for target in dict.fromkeys(targets):
        image_format(target)
    seen: dict[Path, Path] = {}
    for src, dst in zip(files, targets):
        if dst.resolve() == src.resolve():
            raise FstError(f"{dst}: output would overwrite its input (choose another --out or --ext)")
        if dst in seen:
            raise FstError(f"{dst}: both {seen[dst]} and {src} would be written there")
        seen[dst] = src


def _require_parent(out: Path) -> None:
    # Only --out itself is created: a typo in its parent should not grow a tree of new folders.
    if not out.parent.is_dir():
        problem = f"{out.parent} is not a folder" if out.parent.exists() else f"folder {out.parent} does not exist"
        raise FstError(f"{out}: {problem}")


def with_style_labels(files: list[Path], targets: list[Path], labels: list[str | None]) -> list[list[Path]]:
    """Per style label, each input's output: ``<stem>_<label><ext>`` beside the planned target (the
    planned target itself for None), checked as `plan_outputs` checks its own."""
    planned = [[t if label is None else t.with_name(f"{t.stem}_{label}{t.suffix}") for t in targets] for label in labels]
    _check_targets([f for f in files for _ in labels], [t for ts in zip(*planned) for t in ts])
    return planned


def style_choices(names: list[str], styles: list[str] | None, mix: str | None) -> list[tuple[str | None, torch.Tensor]]:
    """(file-name label, (N,) style weights) of each output: --style's picks, --mix's blend, or every style."""
    if styles and mix:
        raise FstError("--style and --mix exclude each other (a blend of one style is that style)")
    n = len(names)
    if mix is not None:
        return [(None, style_weights(n, parse_mix(mix, names))[0])]
    picks = [style_index(ref, names) for item in styles or [] for ref in item.split(",")] or list(range(n))
    labels = [None] if len(picks) == 1 else [names[k] for k in picks]
    return [(label, style_weights(n, {k: 1.0})[0]) for label, k in zip(labels, picks)]


def style_index(ref: str, names: list[str]) -> int:
    """A style named by its name or its index."""
    ref = ref.strip()
    if ref in names:
        return names.index(ref)
    if ref.isdigit() and int(ref) < len(names):
        return int(ref)
    raise FstError(f"unknown style {ref!r}: this model holds {', '.join(f'{k}={n}' for k, n in enumerate(names))}")


def parse_mix(text: str, names: list[str]) -> dict[int, float]:
    """--mix NAME=W,NAME=W as {style index: weight}."""
    mix: dict[int, float] = {}
    for item in text.split(","):
        ref, eq, weight = item.rpartition("=")
        try:
            value = float(weight)
        except ValueError:
            value = None
        if not eq or value is None:
            raise FstError(f"--mix: {item!r} is not NAME=WEIGHT (e.g. --mix starry_night=0.7,the_scream=0.3)")
        k = style_index(ref, names)
        if k in mix:
            raise FstError(f"--mix: style {names[k]!r} given twice")
        mix[k] = value
    return mix


def stylize_files(stylizer: Stylizer, files: list[Path], outputs: list[list[Output]], opts: Options,
                   progress: bool = True) -> tuple[int, list[str]]:
    """Stylise each file to its outputs: (how many outputs were written, the one-line problems of
    the files that failed)."""
    failed: list[str] = []
    written = 0
    for src, outs in tqdm(list(zip(files, outputs)), desc="stylize", unit="img", disable=not progress or None, file=sys.stderr):
        try:
            written += stylize_file(stylizer, src, outs, opts)
            continue
        except PartlyWritten as e:
            written += e.written
            failed.append(f"{src}: {e}")
        except FstError as e:  # images.ImageError names the file already
            failed.append(str(e) if str(src) in str(e) else f"{src}: {e}")
        tqdm.write(f"fst stylize: skipped {failed[-1]}", file=sys.stderr)
    return written, failed


# --- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="fst stylize", description="Stylize images with a trained checkpoint or an exported model.")
    p.add_argument("inputs", nargs="+", help="image files, folders, globs")
    p.add_argument("--model", required=True, type=Path, help="an fst checkpoint (.ckpt) or `fst export` artefact")
    p.add_argument("--trust-compiled", action="store_true",
                   help="--model is an AOTInductor package (fst export --format aoti): compiled machine code that"
                   " runs when loaded. Use it only for a package you made or trust; without this flag fst refuses"
                   " one (every other format is read as data, never run)")
    p.add_argument("--out", required=True, type=Path, help="output file (one input) or folder")
    p.add_argument("--ext", default=None, help="output extension for folder output (default: the input's)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                   help="auto (default): fp16 on CUDA; on a CPU bf16 where it is native (AVX512-BF16 or AMX:"
                   " ~2x faster than fp32), else fp32 (elsewhere bf16 runs tens of times slower)")
    p.add_argument("--compile", choices=COMPILE_CHOICES, nargs="?", const="yes", default="auto",
                   help="torch.compile the network: a one-off compile (~30-40 s on a small CPU, each new image"
                   " size may add one), then ~1.5-2x faster. auto (default): only on a CPU with a C++ compiler"
                   " when the inputs are large enough to win the compile time back (docs/benchmarks.md);"
                   " `--compile` alone means yes")
    p.add_argument("--tile", type=int, default=None, metavar="SIZE", help="stylise in SIZE x SIZE tiles")
    p.add_argument("--overlap", type=int, default=tiling.DEFAULT_OVERLAP, metavar="PX", help="tile overlap (default %(default)s)")
    p.add_argument("--max-size", type=int, default=None, metavar="PX", help="downscale so the long side is at most PX")
    p.add_argument("--style", action="append", metavar="NAME", default=None,
                   help="a model of several styles: the style to apply, by name or index (repeat or comma-separate"
                   " for several; default: every style, one output each, named <stem>_<style><ext>)")
    p.add_argument("--mix", metavar="NAME=W,...", default=None,
                   help="a model of several styles: blend styles with these weights (normalised to sum 1)")
    p.add_argument("--strength", type=float, default=1.0, help="0 = content, 1 = fully stylised (default 1)")
    p.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance transfer)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    opts = Options(args.tile, args.overlap, args.max_size, args.strength, args.preserve_color)
    files, problems = collect_inputs(args.inputs)
    if not files:
        raise FstError("; ".join(problems) or "no inputs")
    targets = plan_outputs(files, args.out, args.ext)
    stylizer = Stylizer(args.model, args.device, args.dtype, trust_compiled=args.trust_compiled)
    if stylizer.warning:
        print(f"fst stylize: warning: {stylizer.warning}", file=sys.stderr)
    choices = style_choices(stylizer.style_names, args.style, args.mix)
    per_style = with_style_labels(files, targets, [label for label, _ in choices])
    compile_, why = compile_pays(args.compile, stylizer, files * len(choices), opts)  # a pass per style
    if compile_:
        stylizer.compile()
    if not args.quiet:
        print(f"fst stylize: {stylizer.describe()}; compile {'on' if compile_ else 'off'} ({why})", file=sys.stderr)
    for line in problems:
        print(f"fst stylize: skipped {line}", file=sys.stderr)
    # Per file, every chosen style: each image is read and decoded once.
    outputs = [[(weights, targets_of[i]) for (_, weights), targets_of in zip(choices, per_style)] for i in range(len(files))]
    done, failed = stylize_files(stylizer, files, outputs, opts, progress=not args.quiet)
    failed = problems + failed
    expected = len(files) * len(choices) + len(problems)
    where = per_style[0][0] if len(files) * len(choices) == 1 else args.out if args.out.is_dir() else args.out.parent
    if failed:
        print(f"fst stylize: {done} of {expected} written to {where}; {len(failed)} failed", file=sys.stderr)
        return 1
    print(f"stylized {done} image{'s' * (done != 1)} -> {where}")
    return 0
