"""One image through a `Stylizer`: the per-image options, resizing, colour and strength, and writing
each output atomically in the format its extension names, with the input's ICC profile where that
format holds one. Every frame of an animated GIF, PNG or WebP is stylised where the output format
animates (same durations and loop); any other output gets the first frame, and a line says so."""

from __future__ import annotations

import functools
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageCms
from tqdm import tqdm

from fst.core.color import luminance
from fst.core.errors import FstError, first_line
from fst.io.files import atomic_path
from fst.io.images import ANIMATED_FORMATS, Animation, alpha_channel, open_animation, open_image, read_file, to_rgb
from fst.io.pixels import to_image, to_tensor
from fst.models import tiling
from fst.models.transformer import MIN_SIDE
from fst.stylize.colour_match import ColourMatch
from fst.stylize.outputs import check_size, image_format
from fst.stylize.stroke_scale import at_stroke_scale
from fst.stylize import memory
from fst.stylize.temporal_blend import check_weight
from fst.stylize.stylizer import MIN_TILE, Stylizer, gigabytes, is_out_of_memory

ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "TGA"}
SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


@dataclass(frozen=True)
class Options:
    """How each image is treated; the CLI flags, validated."""

    tile: int | None = None
    overlap: int = tiling.DEFAULT_OVERLAP
    max_size: int | None = None
    strength: float = 1.0
    preserve_color: bool = False
    stroke_scale: float = 1.0
    temporal: float = 0.0  # clips: the weight of the previous output frame (fst.stylize.temporal_blend); 0 off
    colour: ColourMatch | None = None  # --color-match: the painting's RGB statistics on each output

    def __post_init__(self) -> None:
        check_weight(self.temporal)
        if self.preserve_color and self.colour is not None and self.colour.mode != "off":
            raise FstError("--preserve-color keeps the photo's colours and --color-match gives the painting's: "
                           "choose one")
        if not 0.0 <= self.strength <= 1.0:
            raise FstError(f"--strength must be in [0, 1], got {self.strength}")
        if not 1.0 <= self.stroke_scale <= 16.0:
            raise FstError(f"--stroke-scale must be in [1, 16], got {self.stroke_scale}")
        if self.tile is not None and self.tile < MIN_TILE:
            raise FstError(f"--tile must be at least {MIN_TILE}, got {self.tile}")
        if self.overlap < 0 or (self.tile is not None and self.overlap * 2 >= self.tile):
            raise FstError(f"--overlap must be in [0, tile/2), got {self.overlap} for tile {self.tile}")
        if self.max_size is not None and self.max_size < MIN_TILE:
            raise FstError(f"--max-size must be at least {MIN_TILE}, got {self.max_size}")


def fit_size(size: tuple[int, int] | None, max_size: int | None) -> tuple[int, int] | None:
    """`size` after `fit_long_side`'s downscale."""
    if size is None or max_size is None or max(size) <= max_size:
        return size
    scale = max_size / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


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


def check_min_side(size: tuple[int, int], max_size: int | None) -> None:
    """Refuse an image the network cannot take: a side under MIN_SIDE, as read or after --max-size."""
    fitted = fit_size(size, max_size)
    if fitted is not None and min(fitted) < MIN_SIDE:
        after = f" after --max-size {max_size}" if fitted != size else ""
        raise FstError(f"too small: {fitted[0]}x{fitted[1]}{after}; the network needs at least {MIN_SIDE} px a side")


def stylize_image(stylizer: Stylizer, img: Image.Image, opts: Options = Options()) -> Image.Image:
    """An RGB PIL image stylised per `opts` (resize, tiling, colour, strength), 8-bit RGB back. Memory
    that runs out in the pass or in finishing its output is retried in smaller tiles by the Stylizer;
    anywhere else (decoding the photo, the 8-bit image) it is this image's one-line error."""
    check_min_side(img.size, opts.max_size)
    try:
        content = to_tensor(fit_long_side(img.convert("RGB"), opts.max_size))[None]
        content = content.to(stylizer.device)
        if opts.stroke_scale == 1:
            out = stylizer(content, opts.tile, opts.overlap,
                           lambda styled: finished(styled, content, opts, stylizer.style))
        else:  # the network at the working size, then finished at full size
            out = finished(run_network(stylizer, content, opts), content, opts, stylizer.style)
        return to_image(out[0])
    except Exception as e:
        if not is_out_of_memory(e):
            raise
    raise does_not_fit(fit_size(img.size, opts.max_size) or img.size)


def finished(out: torch.Tensor, content: torch.Tensor, opts: Options,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """`out` (the Stylizer's own fp32 output, overwritten) with the painting's colour (--color-match,
    for the style `weights`; on the whole output, tiles joined) or the photo's, and the strength
    applied, as 8-bit values: in place, so that a large photo needs one fp32 image beside it (two
    with --color-match, whose matrix writes a new one)."""
    if opts.colour is not None:
        out = opts.colour.apply(out, weights)
    if opts.preserve_color:
        out = keep_content_color(out, content)
    out = blend(out, content, opts.strength)
    return out.mul_(255).round_().clamp_(0, 255).to(torch.uint8)


def run_network(stylizer: Stylizer, content: torch.Tensor, opts: Options) -> torch.Tensor:
    """The network on a batch of photos per `opts`: at the stroke scale, one image a pass when tiled
    (tiles take each image's whole-image statistics)."""
    def run(x: torch.Tensor) -> torch.Tensor:
        if opts.tile is not None and x.shape[0] > 1:
            return torch.cat([stylizer(c[None], opts.tile, opts.overlap) for c in x])
        return stylizer(x, opts.tile, opts.overlap)

    return at_stroke_scale(run, content, opts.stroke_scale, stylizer.min_side)


def with_alpha(img: Image.Image, alpha: Image.Image | None, fmt: str) -> Image.Image:
    """`img` with `alpha` (resized to it) where `fmt` has an alpha channel."""
    if alpha is None or fmt not in ALPHA_FORMATS:
        return img
    img = img.copy()
    img.putalpha(alpha.resize(img.size, Image.Resampling.LANCZOS) if alpha.size != img.size else alpha)
    return img


def save_image(img: Image.Image, path: Path, alpha: Image.Image | None = None, icc: bytes | None = None,
               animation: tuple[list[Image.Image], Animation] | None = None) -> None:
    """Save in the format `path`'s extension names, with `alpha` where that format has one and the
    ICC profile `icc` where it holds one, atomically; `animation`: the other frames (each with
    its alpha) and the input's timing, for a format that animates."""
    fmt = image_format(path)
    options = {**SAVE_OPTIONS.get(fmt, {}), **({"icc_profile": icc} if icc and holds_icc(fmt) else {})}
    if animation is not None:
        rest, timing = animation
        loop = {} if timing.loop is None and fmt == "GIF" else {"loop": 1 if timing.loop is None else timing.loop}
        options.update(save_all=True, append_images=rest, duration=timing.durations, **loop)
    with atomic_path(path) as tmp:
        with_alpha(img, alpha, fmt).save(tmp, format=fmt, **options)


@functools.lru_cache(maxsize=None)
def holds_icc(fmt: str) -> bool:
    """Whether PIL writes an ICC profile into `fmt` (tried, not listed: JPEG, PNG, WebP, TIFF, AVIF do)."""
    buffer = io.BytesIO()
    try:
        Image.new("RGB", (8, 8)).save(buffer, format=fmt, icc_profile=SRGB)
        buffer.seek(0)
        with Image.open(buffer) as back:
            return back.info.get("icc_profile") == SRGB
    except Exception:  # a format PIL writes but does not read back, or one that takes no profile
        return False


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def rgb_profile(raw: Image.Image, src: Path) -> bytes | None:
    """The photo's ICC profile if it describes RGB values (what the output holds); a profile of
    another colour space (CMYK, grey) cannot describe the RGB output, and a line says so."""
    icc = raw.info.get("icc_profile")
    if not icc:
        return None
    if icc[16:20] == b"RGB ":
        return icc
    space = icc[16:20].decode("latin-1").strip() or "unknown"
    tqdm.write(f"fst stylize: {src}: its {space} ICC profile ({profile_name(icc)}) cannot describe the RGB output; "
               "written without one (read as sRGB)", file=sys.stderr)
    return None


def profile_name(icc: bytes) -> str:
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() or "unnamed"
    except Exception:  # a damaged profile: still named as a profile
        return "unreadable"


def kept_lines(src: Path, targets: list[Path], icc: bytes | None, animation: Animation | None) -> list[str]:
    """What an output in its format cannot keep of the input, one line each: its ICC profile (the
    colours are then read as sRGB), its frames after the first."""
    lines = []
    for dst in targets:
        fmt = image_format(dst)
        if icc and not holds_icc(fmt):
            lines.append(f"its ICC profile ({profile_name(icc)}) is not kept: {fmt} files hold none, so the "
                         "colours will be read as sRGB (--ext png, jpg, webp or tif keep it)")
        if animation is not None and fmt not in ANIMATED_FORMATS:
            lines.append(f"only the first of its {len(animation.frames)} frames is stylized: {fmt} files hold one "
                         "(--ext gif, webp or png keep them all)")
    return lines


class PartlyWritten(FstError):
    """Writing one of a file's outputs failed after `written` of them were written."""

    def __init__(self, written: int, problem: str):
        super().__init__(problem)
        self.written = written


Output = tuple[torch.Tensor | None, Path]  # (style weights, ignored by a one-style model; where to)


def does_not_fit(size: tuple[int, int]) -> FstError:
    """fst's line for an image whose pixels the allocator refused (a `MemoryError`, or torch's
    "can't allocate memory" RuntimeError), said as the planner says it before a pass."""
    free = memory.free_bytes()
    room = f"the {gigabytes(free)} of memory free" if free is not None else "the memory free"
    return FstError(f"{size[0]}x{size[1]} does not fit in {room} (use --max-size)")


def stylize_file(stylizer: Stylizer, src: Path, outputs: list[Output], opts: Options = Options()) -> int:
    """Read `src` once and write each output (one per style chosen); how many were written. An
    out-of-memory while converting or stylising it is `does_not_fit`, not the allocator's words."""
    data = read_file(src, str(src))
    raw = open_image(data, name=str(src))
    size = fit_size(raw.size, opts.max_size) or raw.size
    try:
        return _stylize_file(stylizer, raw, data, src, outputs, opts)
    except Exception as e:
        if not is_out_of_memory(e):
            raise
    # Outside the handler, whose traceback still holds the failed tensors: the next file gets the
    # memory this one held back (malloc's freed heap too).
    del raw, data
    memory.release_free()
    raise does_not_fit(size)


def _stylize_file(stylizer: Stylizer, raw: Image.Image, data: bytes, src: Path, outputs: list[Output],
                  opts: Options) -> int:
    img, alpha, icc = to_rgb(raw, str(src)), alpha_channel(raw), rgb_profile(raw, src)
    animation = open_animation(data, str(src))
    check_min_side(img.size, opts.max_size)
    for _, dst in outputs:  # before any pass: a format that cannot hold this size costs no time
        check_size(dst, fit_size(img.size, opts.max_size) or img.size)
    for line in dict.fromkeys(kept_lines(src, [dst for _, dst in outputs], icc, animation)):
        tqdm.write(f"fst stylize: {src}: {line}", file=sys.stderr)
    for written, (weights, dst) in enumerate(outputs):
        stylizer.style = weights
        fmt, frames = image_format(dst), None
        if animation is not None and fmt in ANIMATED_FORMATS:  # every frame, each with its own alpha
            styled, *rest = [with_alpha(stylize_image(stylizer, to_rgb(f), opts), alpha_channel(f), fmt)
                             for f in animation.frames]
            frames = (rest, animation)
        else:
            styled = stylize_image(stylizer, img, opts)
        try:
            save_image(styled, dst, None if frames else alpha, icc, frames)
        except OSError as e:
            raise PartlyWritten(written, f"cannot write {dst}: {e.strerror or e}") from None
        except Exception as e:  # an encoder's own limits (PIL raises ValueError, OverflowError, ...)
            raise PartlyWritten(written, f"cannot write {dst}: {type(e).__name__}: {first_line(e)}") from None
    return len(outputs)
