"""Reading photos safely: one decoder for the shard builder, the loader and `fst stylize`.

`open_image` decodes fully (so truncation shows up here, not mid-training), applies the EXIF
orientation and refuses absurd sizes (over `MAX_PIXELS`, or a file over `MAX_FILE_BYTES`); `to_rgb` turns any mode (grayscale, palette, CMYK, RGBA,
16-bit) into 8-bit RGB; `alpha_channel` keeps the transparency that stylize carries over.
Every failure is an `ImageError` whose `reason` is a short phrase fit for a manifest or a log.
Only regular files are ever opened: a FIFO named `x.jpg` would block the reader forever, a device
would never end; `not_regular` says why such a path is skipped, from its stat alone.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fst.core.errors import FstError, first_line

# Far above any photo we train on, far below what would exhaust memory when decoded.
MAX_PIXELS = 100_000_000
# Every file is read whole before decoding: 100 MP of 16-bit RGBA is 800 MB uncompressed.
MAX_FILE_BYTES = 1 << 30
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"))


def image_paths(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Every entry of `folder` (and below it when `recursive`) named like an image, folders aside,
    sorted. FIFOs, devices and dangling symlinks are included, so callers can say why they skip them."""
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


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
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "special file")
    return f"not a regular file ({kind})"


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
            raise ImageError(name, "not an image") from None
        except MemoryError:  # the pixels, not the file, are the problem
            size = f"{img.width}x{img.height} " if img is not None else ""
            raise ImageError(name, f"{size}does not fit in the memory free to decode it") from None
        except Exception as e:  # a crafted header trips PIL's plugins in their own ways (TypeError, NotImplementedError)
            raise ImageError(name, _decode_reason(e)) from None
    return _oriented(img)


def to_rgb(img: Image.Image, name: str = "<image>") -> Image.Image:
    """8-bit RGB; 16-bit is scaled (not clipped), alpha dropped (see `alpha_channel`)."""
    if img.mode == "RGB":
        return img
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
