"""Reading photos safely: one decoder for the shard builder, the loader and `fst stylize`.

`open_image` decodes fully (so truncation shows up here, not mid-training), applies the EXIF
orientation and refuses absurd sizes (over `MAX_PIXELS`, or a file over `MAX_FILE_BYTES`); `to_rgb` turns any mode (grayscale, palette, CMYK, RGBA,
16-bit, float) into 8-bit RGB; `alpha_channel` keeps the transparency that stylize carries over;
`open_animation` gives every frame of an animated GIF, PNG or WebP (all frames within `MAX_PIXELS`).
Every failure is an `ImageError` whose `reason` is a short phrase fit for a manifest or a log.
Only regular files are ever opened: a FIFO named `x.jpg` would block the reader forever, a device
would never end; `not_regular` says why such a path is skipped, from its stat alone.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from fst.core.errors import FstError, first_line
from fst.io.targets import special_kind

# Far above any photo we train on, far below what would exhaust memory when decoded.
MAX_PIXELS = 100_000_000
# Every file is read whole before decoding: 100 MP of 16-bit RGBA is 800 MB uncompressed.
MAX_FILE_BYTES = 1 << 30
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Photo formats whose decoder is a plugin Pillow may lack: (name, where to get it).
PLUGIN_FORMATS = {".heic": ("HEIC", "pillow-heif"), ".heif": ("HEIF", "pillow-heif"), ".avif": ("AVIF", "pillow-avif-plugin"),
                  ".jxl": ("JPEG XL", "pillow-jxl-plugin")}
ANIMATED_FORMATS = ("GIF", "PNG", "WEBP")  # whose several frames are an animation (an MPO's or TIFF's are not)


def image_paths(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Every entry of `folder` (and below it when `recursive`) named like an image, folders aside,
    sorted. FIFOs, devices and dangling symlinks are included, so callers can say why they skip them."""
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def readable_suffixes() -> frozenset[str]:
    """The file extensions of every format this Pillow decodes."""
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def missing_decoder(name: str) -> str | None:
    """Why a file named like a photo format this Pillow cannot decode is not read, or None."""
    suffix = Path(name).suffix.lower()
    if suffix not in PLUGIN_FORMATS or suffix in readable_suffixes():
        return None
    kind, plugin = PLUGIN_FORMATS[suffix]
    return f"a {kind} image, and this Pillow has no {kind} decoder (pip install {plugin})"


def image_files(folder: Path) -> list[Path]:
    """The regular image files below `folder` (recursive, by suffix), sorted."""
    return [p for p in image_paths(folder) if not_regular(p) is None]


def not_regular(path: Path) -> str | None:
    """Why `path` is not a regular file (a short reason), or None when it is one. Decided by stat,
    never by opening it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "dangling symlink" if path.is_symlink() else "no such file"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    return f"not a regular file ({special_kind(mode)})"


def read_file(path: Path, name: str) -> bytes:
    """The bytes of the regular file `path`; anything else, or a failed read, is an `ImageError`."""
    reason = not_regular(path)
    if reason is not None:
        raise ImageError(name, reason)
    try:
        # O_NONBLOCK: were the path swapped for a FIFO after the check, open returns instead of waiting.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ImageError(name, "not a regular file")
            data = b""
            if info.st_size <= MAX_FILE_BYTES:
                # read(n) allocates n bytes first: ask for the size the stat gave, more only if it grew
                data = f.read(info.st_size + 1)
                if len(data) > info.st_size:
                    data += f.read(MAX_FILE_BYTES + 1 - len(data))
            if max(info.st_size, len(data)) > MAX_FILE_BYTES:
                raise ImageError(name, f"too large ({max(info.st_size, len(data)) / 2**30:.1f} GiB file, "
                                       f"over {MAX_FILE_BYTES // 2**30} GiB)")
            return data
    except FileNotFoundError:
        raise ImageError(name, "no such file") from None
    except OSError as e:
        raise ImageError(name, f"unreadable ({e.strerror or e})") from None


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(FstError):
    """An image that cannot be used; `reason` is the short why, the message also names the file."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def open_image(source: str | Path | bytes, *, name: str | None = None, draft: int | None = None) -> Image.Image:
    """Decode `source` (a path or encoded bytes) fully, EXIF orientation applied, mode untouched.

    `draft`: the short side the caller will resize to anyway; JPEGs are then decoded at the
    smallest 1/2, 1/4 or 1/8 scale that still covers it, which is several times faster.
    """
    name = name or _name_of(source)
    data = _read(source, name)
    if not data:
        raise ImageError(name, "empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit
        img = None
        try:
            img = Image.open(io.BytesIO(data))
            _check_size(img, name)
            if draft:
                img.draft("RGB", _draft_size(img.size, draft))
            img.load()
        except ImageError:
            raise
        except Image.DecompressionBombError:
            raise ImageError(name, f"too large (over {MAX_PIXELS // 1_000_000} MP)") from None
        except UnidentifiedImageError:
            raise ImageError(name, missing_decoder(name) or "not an image") from None
        except MemoryError:  # the pixels, not the file, are the problem
            size = f"{img.width}x{img.height} " if img is not None else ""
            raise ImageError(name, f"{size}does not fit in the memory free to decode it") from None
        except Exception as e:  # a crafted header trips PIL's plugins in their own ways (TypeError, NotImplementedError)
            raise ImageError(name, _decode_reason(e)) from None
    return _oriented(img)


def to_rgb(img: Image.Image, name: str = "<image>") -> Image.Image:
    """8-bit RGB; 16-bit is scaled (not clipped), float by its range (`float_levels`), alpha dropped
    (see `alpha_channel`)."""
    if img.mode == "RGB":
        return img
    if img.mode == "F":
        return Image.fromarray(float_levels(np.asarray(img, dtype=np.float64)), "L").convert("RGB")
    if img.mode in _SIXTEEN_BIT:
        arr = np.asarray(img).astype(np.float64)
        arr = np.clip(arr, 0, 65535) / 257.0  # 65535 -> 255
        return Image.fromarray(np.round(arr).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # palette transparency needs RGBA as a step, else PIL warns
    try:
        return img.convert("RGB")
    except ValueError:
        raise ImageError(name, f"unsupported colour mode {img.mode}") from None


def float_levels(arr: np.ndarray) -> np.ndarray:
    """8-bit levels of a float image (a 32-bit float TIFF): values in 0..1 as float images are
    written (PIL's own float images from 8-bit hold 0..255, and 16-bit ones 0..65535: the range
    decides). NaN is black, infinities are clipped."""
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(arr.max(initial=0.0))
    white = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0
    return np.round(np.clip(arr, 0.0, white) * (255.0 / white)).astype(np.uint8)


@dataclass
class Animation:
    """Every frame of an animated image (RGB or RGBA, as decoded), how long each shows (ms), and
    how many times it loops (None: once, as written)."""

    frames: list[Image.Image]
    durations: list[int]
    loop: int | None


def open_animation(data: bytes, name: str) -> Animation | None:
    """The frames of an animated GIF, PNG or WebP, each composited as a viewer shows it; None for
    any other image. All frames together are bounded by `MAX_PIXELS`, checked before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit
            img = Image.open(io.BytesIO(data))
            if img.format not in ANIMATED_FORMATS or getattr(img, "n_frames", 1) < 2:
                return None
            n, (w, h) = img.n_frames, img.size
            if n * w * h > MAX_PIXELS:
                raise ImageError(name, f"too large ({n} frames of {w}x{h}, over {MAX_PIXELS // 1_000_000} MP in all)")
            frames, durations = [], []
            for frame in ImageSequence.Iterator(img):
                frames.append(frame.convert("RGBA" if "A" in frame.mode or "transparency" in frame.info else "RGB"))
                durations.append(int(frame.info.get("duration") or 100))
    except ImageError:
        raise
    except Exception as e:  # as open_image: each plugin fails its own way
        raise ImageError(name, _decode_reason(e)) from None
    return Animation(frames, durations, img.info.get("loop"))


def alpha_channel(img: Image.Image) -> Image.Image | None:
    """The 8-bit alpha of an image with transparency (RGBA, LA, palette+transparency), else None."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        return img.getchannel("A")
    return None


def open_rgb(source: str | Path | bytes, *, name: str | None = None, draft: int | None = None) -> Image.Image:
    """`open_image` then `to_rgb`: what training and previews want."""
    name = name or _name_of(source)
    return to_rgb(open_image(source, name=name, draft=draft), name)


def _name_of(source: str | Path | bytes) -> str:
    return "<bytes>" if isinstance(source, bytes) else str(source)


def _read(source: str | Path | bytes, name: str) -> bytes:
    return source if isinstance(source, bytes) else read_file(Path(source), name)


def _check_size(img: Image.Image, name: str) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError(name, f"invalid size {w}x{h}")
    if w * h > MAX_PIXELS:
        raise ImageError(name, f"too large ({w}x{h}, over {MAX_PIXELS // 1_000_000} MP)")


def _draft_size(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    # PIL keeps both sides >= the requested size, so ask for the size that puts the short side at `short_side`.
    w, h = size
    scale = short_side / min(w, h)
    return (max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999)))


def _decode_reason(e: Exception) -> str:
    text = first_line(e)
    if "truncated" in text or isinstance(e, EOFError):
        return "truncated"
    return f"cannot decode ({text})"


def _oriented(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not cost us an otherwise good photo
        return img
