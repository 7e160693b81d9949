"""One image made a sample (decoded, upright, RGB, short side shrunk; the original JPEG bytes kept
when nothing changed), and samples written to a tar shard with fixed metadata, so the same samples
always give the same bytes."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import ExifTags, Image

from fst.data.sources import Source
from fst.io.files import sha256_file, writing
from fst.io.images import ImageError, open_image, read_file, to_rgb


@dataclass
class Prepared:
    """A worker's answer for one source: JPEG bytes and metadata, or the reason it was skipped."""

    jpg: bytes = b""
    meta: dict = field(default_factory=dict)
    reason: str | None = None


def prepare(source: Source, max_size: int, quality: int) -> Prepared:
    """Decode, orient, convert to RGB and shrink one image; keep the original JPEG bytes when
    nothing had to change (no generation loss)."""
    try:
        data = read_file(source.path, source.rel)
        img = open_image(data, name=source.rel)
        rgb = to_rgb(img, source.rel)
    except ImageError as e:
        return Prepared(reason=e.reason)
    original = rgb.size
    resized = _shrink(rgb, max_size)
    if resized is rgb and img.mode == "RGB" and _is_upright_jpeg(data):
        jpg = data
    else:
        buf = io.BytesIO()
        resized.save(buf, "JPEG", quality=quality)
        jpg = buf.getvalue()
    meta = {
        "id": source.id,
        "source": source.rel,
        "width": resized.width,
        "height": resized.height,
        "original_width": original[0],
        "original_height": original[1],
    }
    if source.captions:
        meta["captions"] = list(source.captions)
        meta["caption"] = source.captions[0]
    return Prepared(jpg=jpg, meta=meta)


def _shrink(img: Image.Image, max_size: int) -> Image.Image:
    w, h = img.size
    if max_size <= 0 or min(w, h) <= max_size:
        return img
    scale = max_size / min(w, h)
    size = (max_size, round(h * scale)) if w <= h else (round(w * scale), max_size)
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _is_upright_jpeg(data: bytes) -> bool:
    if not data.startswith(b"\xff\xd8"):
        return False
    return Image.open(io.BytesIO(data)).getexif().get(ExifTags.Base.Orientation, 1) == 1


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}.tar"


def write_shard(path: Path, samples: list[tuple[str, Prepared]]) -> str:
    """Write `(key, prepared)` samples to `path` via a temporary name; return its sha256."""
    from webdataset import TarWriter  # lazy: webdataset imports torch, which `--help` and the workers don't need

    with writing(path) as tmp:
        # Fixed mtime/owner/mode: the same samples always give the same bytes.
        with TarWriter(str(tmp), user="fst", group="fst", mtime=0, encoder=False) as sink:
            for key, p in samples:
                sample = {"__key__": key, "jpg": p.jpg, "json": json_bytes({"key": key, **p.meta})}
                if "caption" in p.meta:
                    sample["txt"] = p.meta["caption"].encode("utf-8")
                sink.write(sample)
        digest = sha256_file(tmp)
    return digest


def json_bytes(obj: object) -> bytes:
    """`obj` as JSON in UTF-8. A file name that is not UTF-8 (its bytes held as lone surrogates,
    os.fsdecode) is written as JSON's \\udcXX escapes, which read back as the same name."""
    return json_text(obj, sort_keys=True).encode("utf-8")


def json_text(obj: object, **kwargs) -> str:
    """`json.dumps` that keeps non-ASCII text as it is, but escapes the lone surrogates that stand
    for the bytes of a file name that is not UTF-8 (they have no UTF-8 form)."""
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
