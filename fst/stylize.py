"""`fst stylize`: photos in, stylised photos out, with a checkpoint or an exported model.

    fst stylize photo.jpg --model starry.ckpt --out styled.jpg
    fst stylize photos/ 'more/*.png' --model starry.pt --out styled/ --ext png --tile 1024

- Inputs: files, folders (their image files, not recursive) and globs. Outputs: a file for a single
  input, else a folder of ``<stem><ext>`` (the input's extension unless ``--ext``); the format
  follows the extension. Every output is written to a temp name beside it, then renamed.
- Images are read by `fst.images` (EXIF orientation applied; grayscale, palette, CMYK, 16-bit
  converted to 8-bit RGB). An alpha channel is carried over where the output format has one.
- Device: CUDA when present (fp16 by default), else CPU fp32; ``--device``/``--dtype`` override.
  Exported models run in the dtype they were exported with. ``--compile`` runs the network through
  torch.compile (an eager copy of an artefact's weights), falling back to eager if compiling fails.
- Large images: ``--tile`` runs overlapping tiles with whole-image instance-norm statistics
  (`fst.tiling`); a full pass that runs out of memory falls back to that automatically. Tiling
  needs module hooks, so for exported models it runs an eager copy of the artefact's weights.
- ``--strength s``: s * stylised + (1 - s) * content. ``--preserve-color``: luminance from the
  stylised image, chroma from the content.
- A file that cannot be read or written is reported on one line and skipped; the rest are done,
  and the exit status is 1 with a summary.
"""

from __future__ import annotations

import argparse
import glob
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from tqdm import tqdm

from fst import tiling
from fst.checkpoint import transformer_from_checkpoint
from fst.errors import FstError, first_line
from fst.export import DTYPES, FORMATS, atomic_path, load_exported, sniff_format, transformer_from_exported
from fst.images import IMAGE_SUFFIXES, alpha_channel, open_image, to_rgb
from fst.transformer import TransformerNet

DEFAULT_TILE = 1024  # what an out-of-memory full pass falls back to
MIN_TILE = 32
ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "TGA"}
SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}
# BT.601 luma, as in JPEG's YCbCr: a grey offset added to RGB changes Y and leaves Cb, Cr alone.
LUMA = (0.299, 0.587, 0.114)
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

    Full passes use the checkpoint's network or the exported artefact; tiled passes an eager
    TransformerNet (hooks), built from the artefact's weights on first need.
    """

    def __init__(self, model: str | Path, device: str = "auto", dtype: str = "auto", compile: bool = False):
        self.source = Path(model)
        self.device = resolve_device(device)
        if not self.source.is_file():
            raise FstError(f"{self.source}: model not found")
        self.format = sniff_format(self.source)
        self._eager: TransformerNet | None = None
        if self.format in FORMATS:
            self._full, self.meta = load_exported(self.source, self.device)
            self.dtype = self.meta["dtype"]
            if dtype not in ("auto", self.dtype):
                raise FstError(f"{self.source}: exported as {self.dtype}; re-export with --dtype {dtype} to run in {dtype}")
        else:  # a checkpoint, or something load_checkpoint will explain the problem with
            self.format = "checkpoint"
            net, self.meta = transformer_from_checkpoint(self.source)
            self.dtype = ("fp16" if self.device.type == "cuda" else "fp32") if dtype == "auto" else dtype
            if self.dtype not in DTYPES:
                raise FstError(f"unknown dtype {dtype!r} (choose from auto, {', '.join(DTYPES)})")
            self._eager = net.to(self.device, DTYPES[self.dtype])
            self._full = self._eager
        # Inductor fuses instance norm, ReLU and padding into few passes: ~2x on CPU bf16 at 1080p.
        # Compiled lazily, per shape first and then with dynamic shapes (torch's default).
        self._compiled = torch.compile(self.eager) if compile else None

    def describe(self) -> str:
        style = self.meta.get("style_name") or "?"
        return f"{self.source.name} ({self.format}, style {style!r}, step {self.meta.get('global_step', '?')}) on {self.device} {self.dtype}"

    @property
    def eager(self) -> TransformerNet:
        if self._eager is None:
            net, _ = transformer_from_exported(self.source)
            self._eager = net.to(self.device, DTYPES[self.dtype])
        return self._eager

    def full(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(DTYPES[self.dtype])  # artefacts cast to their dtype too: the same values either way
        if self._compiled is not None:
            try:
                return self._compiled(x).float()
            except OOM_ERRORS:
                raise
            except Exception as e:  # e.g. no C++ compiler for inductor on CPU: eager still works
                tqdm.write(f"fst stylize: torch.compile failed ({type(e).__name__}: {first_line(e)[:160]}); running eager", file=sys.stderr)
                self._compiled = None
        return self._full(x).float()

    def tiled(self, x: torch.Tensor, tile: int, overlap: int, stats_side: int = tiling.DEFAULT_STATS_SIDE) -> torch.Tensor:
        net = self.eager
        xt = x.to(DTYPES[self.dtype])
        return tiling.stylize_tiled(net, xt, tile, min(overlap, tile // 2 - 1), stats_side).float()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, tile: int | None = None, overlap: int = tiling.DEFAULT_OVERLAP) -> torch.Tensor:
        x = x.to(self.device)
        if tile is not None and max(x.shape[-2:]) > tile:
            return self._tiled_with_fallback(x, tile, overlap)
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


# --- one image ----------------------------------------------------------------------------------


def keep_content_color(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Content + the luma difference: Y from the stylised image, Cb/Cr from the content (BT.601).
    Clamping to [0, 1] afterwards bends chroma only where the result leaves the RGB gamut."""
    luma = torch.tensor(LUMA, device=content.device).view(1, 3, 1, 1)
    dy = ((stylized - content) * luma).sum(dim=1, keepdim=True)
    return (content + dy).clamp(0, 1)


def blend(stylized: torch.Tensor, content: torch.Tensor, strength: float) -> torch.Tensor:
    return stylized if strength == 1.0 else strength * stylized + (1.0 - strength) * content


def fit_long_side(img: Image.Image, max_size: int | None) -> Image.Image:
    """Downscaled (Lanczos) so the long side is at most max_size; untouched if already smaller."""
    if max_size is None or max(img.size) <= max_size:
        return img
    scale = max_size / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


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


def stylize_file(stylizer: Stylizer, src: Path, dst: Path, opts: Options = Options()) -> None:
    raw = open_image(src)
    out = stylize_image(stylizer, to_rgb(raw, str(src)), opts)
    save_image(out, dst, alpha_channel(raw))


# --- files --------------------------------------------------------------------------------------


def image_format(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise FstError(f"{path}: cannot write images with extension {path.suffix or '(none)'!r}")
    return fmt


def collect_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """(image files from files, folders and globs, in order, deduplicated; problems, one line each)."""
    files: list[Path] = []
    problems: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            files += found
            if not found:
                problems.append(f"{item}: no images in this folder")
        elif path.exists():
            files.append(path)
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            files += found
            if not found:
                problems.append(f"{item}: no files match")
        else:
            problems.append(f"{item}: no such file")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return [Path(p) for p in unique], problems


def plan_outputs(files: list[Path], out: Path, ext: str | None) -> list[Path]:
    """Where each input goes: `out` itself for one input and a file-like `out`, else out/<stem><ext>."""
    suffix = None if ext is None else "." + ext.lstrip(".").lower()
    as_file = len(files) == 1 and not out.is_dir() and out.suffix.lower() in Image.registered_extensions()
    if as_file:
        targets = [out]
    else:
        if out.suffix.lower() in Image.registered_extensions() and not out.is_dir():
            raise FstError(f"{out}: {len(files)} inputs need --out to be a folder")
        if not out.parent.is_dir():
            raise FstError(f"{out}: folder {out.parent} does not exist")
        targets = [out / (f.stem + (suffix or f.suffix)) for f in files]
    for target in dict.fromkeys(targets):
        image_format(target)
    seen: dict[Path, Path] = {}
    for src, dst in zip(files, targets):
        if dst.resolve() == src.resolve():
            raise FstError(f"{dst}: output would overwrite its input (choose another --out or --ext)")
        if dst in seen:
            raise FstError(f"{dst}: both {seen[dst]} and {src} would be written there")
        seen[dst] = src
    if not as_file:
        out.mkdir(exist_ok=True)
    elif not out.parent.is_dir():
        raise FstError(f"{out}: folder {out.parent} does not exist")
    return targets


def stylize_files(stylizer: Stylizer, files: list[Path], targets: list[Path], opts: Options, progress: bool = True) -> list[str]:
    """Stylise each file to its target; the one-line problems of those that failed."""
    failed: list[str] = []
    for src, dst in tqdm(list(zip(files, targets)), desc="stylize", unit="img", disable=not progress or None, file=sys.stderr):
        try:
            stylize_file(stylizer, src, dst, opts)
        except FstError as e:  # images.ImageError names the file already
            failed.append(str(e) if str(src) in str(e) else f"{src}: {e}")
        except OSError as e:
            failed.append(f"{src}: cannot write {dst}: {e.strerror or e}")
        else:
            continue
        tqdm.write(f"fst stylize: skipped {failed[-1]}", file=sys.stderr)
    return failed


# --- command line -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors become one-line FstErrors (exit 2 through fst.cli)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise FstError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fst stylize", description="Stylize images with a trained checkpoint or an exported model.")
    p.add_argument("inputs", nargs="+", help="image files, folders, globs")
    p.add_argument("--model", required=True, type=Path, help="an fst checkpoint (.ckpt) or `fst export` artefact")
    p.add_argument("--out", required=True, type=Path, help="output file (one input) or folder")
    p.add_argument("--ext", default=None, help="output extension for folder output (default: the input's)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                   help="auto: fp16 on CUDA, fp32 on CPU; on CPUs with AVX512-BF16 or AMX, bf16 is ~3x faster than fp32")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network: pays a one-off compile (~20-40 s on a small CPU), then runs"
                   " ~2x faster; worth it for many or large images (docs/benchmarks.md)")
    p.add_argument("--tile", type=int, default=None, metavar="SIZE", help="stylise in SIZE x SIZE tiles")
    p.add_argument("--overlap", type=int, default=tiling.DEFAULT_OVERLAP, metavar="PX", help="tile overlap (default %(default)s)")
    p.add_argument("--max-size", type=int, default=None, metavar="PX", help="downscale so the long side is at most PX")
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
    stylizer = Stylizer(args.model, args.device, args.dtype, args.compile)
    if not args.quiet:
        print(f"fst stylize: {stylizer.describe()}", file=sys.stderr)
    for line in problems:
        print(f"fst stylize: skipped {line}", file=sys.stderr)
    failed = problems + stylize_files(stylizer, files, targets, opts, progress=not args.quiet)
    done = len(files) - (len(failed) - len(problems))
    where = targets[0] if len(targets) == 1 and targets[0] == args.out else args.out
    if failed:
        print(f"fst stylize: {done} of {done + len(failed)} written to {where}; {len(failed)} failed", file=sys.stderr)
        return 1
    print(f"stylized {done} image{'s' * (done != 1)} -> {where}")
    return 0
