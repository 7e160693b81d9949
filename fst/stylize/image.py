"""One image through a `Stylizer`: the per-image options, resizing, colour and strength, and writing
each output atomically in the format its extension names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from fst.core.color import luminance
from fst.core.errors import FstError, first_line
from fst.io.files import atomic_path
from fst.io.images import alpha_channel, open_image, to_rgb
from fst.models import tiling
from fst.models.transformer import MIN_SIDE
from fst.stylize.outputs import check_size, image_format
from fst.stylize.stylizer import MIN_TILE, Stylizer, is_out_of_memory

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

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise FstError(f"--strength must be in [0, 1], got {self.strength}")
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
        content = TF.pil_to_tensor(fit_long_side(img.convert("RGB"), opts.max_size))[None].float().div_(255)
        content = content.to(stylizer.device)
        out = stylizer(content, opts.tile, opts.overlap, lambda styled: finished(styled, content, opts))
        return TF.to_pil_image(out[0].cpu())
    except Exception as e:
        if not is_out_of_memory(e):
            raise
    size = fit_size(img.size, opts.max_size) or img.size
    raise FstError(f"{size[0]}x{size[1]}: out of memory outside the network's pass (use --max-size)")


def finished(out: torch.Tensor, content: torch.Tensor, opts: Options) -> torch.Tensor:
    """`out` (the Stylizer's own fp32 output, overwritten) with the photo's colour and the strength
    applied, as 8-bit values: in place, so that a large photo needs one fp32 image beside it."""
    if opts.preserve_color:
        out = keep_content_color(out, content)
    out = blend(out, content, opts.strength)
    return out.mul_(255).round_().clamp_(0, 255).to(torch.uint8)


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
    check_min_side(img.size, opts.max_size)
    for _, dst in outputs:  # before any pass: a format that cannot hold this size costs no time
        check_size(dst, fit_size(img.size, opts.max_size) or img.size)
    for written, (weights, dst) in enumerate(outputs):
        stylizer.style = weights
        styled = stylize_image(stylizer, img, opts)
        try:
            save_image(styled, dst, alpha)
        except OSError as e:
            raise PartlyWritten(written, f"cannot write {dst}: {e.strerror or e}") from None
        except Exception as e:  # an encoder's own limits (PIL raises ValueError, OverflowError, ...)
            raise PartlyWritten(written, f"cannot write {dst}: {type(e).__name__}: {first_line(e)}") from None
    return len(outputs)
