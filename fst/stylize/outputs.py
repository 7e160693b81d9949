"""Inputs and outputs of `fst stylize`, planned before any model loads: the image files that files,
folders and globs name, and where each output goes (per style too), every target checked."""

from __future__ import annotations

import functools
import glob
import io
import re
from pathlib import Path

from PIL import Image

from fst.core.errors import FstError, first_line
from fst.io.clips import VIDEO_SUFFIXES, is_clip
from fst.io.images import missing_decoder, not_regular, readable_suffixes
from fst.io.output_dir import writable_dir
from fst.io.targets import check_outputs

# The most pixels a side each format's writer takes (beyond it PIL raises, each format its own way):
# WebP's own limit, libjpeg's, and the 16-bit size fields of the others.
MAX_SIDE = {"WEBP": 16383, "JPEG": 65500, "MPO": 65500, "GIF": 65535, "PCX": 65535, "SGI": 65535, "TGA": 65535}
# A style label in a file name: letters and digits of any script, and _ . + = -; at most this many bytes.
_UNSAFE = re.compile(r"[^\w.+=-]+")
MAX_LABEL_BYTES = 64
_EXT = re.compile(r"[A-Za-z0-9]+")


def image_format(path: Path) -> str:
    """The PIL format `path`'s extension names, if PIL writes an RGB photo in it as it is."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise FstError(f"{path}: cannot write images with extension {path.suffix or '(none)'!r}")
    problem = _cannot_write(fmt)
    if problem:
        raise FstError(f"{path}: cannot write {fmt} images of photos ({problem})")
    return fmt


@functools.lru_cache(maxsize=None)
def _cannot_write(fmt: str) -> str | None:
    """Why PIL cannot write an RGB photo in `fmt` unchanged, or None. Tried, not listed: some formats
    in Image.SAVE take other modes only (BLP, XBM, MSP, Palm), need a plugin (HDF5, GRIB, BUFR, WMF)
    or resize what they store (ICO, ICNS)."""
    probe = Image.new("RGB", (40, 30), (200, 120, 40))
    buffer = io.BytesIO()
    try:
        probe.save(buffer, format=fmt)
    except Exception as e:  # each plugin fails its own way (OSError, ValueError, KeyError)
        return first_line(e)
    try:
        with Image.open(buffer) as back:
            size = back.size
    except Exception:  # written but not read back by PIL (PDF, EPS without Ghostscript): kept as written
        return None
    return None if size == probe.size else f"a 40x30 image came back {size[0]}x{size[1]}"


def check_size(path: Path, size: tuple[int, int]) -> None:
    """Refuse an image too wide or tall for the format `path` names, before stylizing it."""
    fmt = image_format(path)
    limit = MAX_SIDE.get(fmt)
    if limit is not None and max(size) > limit:
        raise FstError(f"cannot write {path}: {fmt} holds at most {limit} px a side, this image is "
                       f"{size[0]}x{size[1]} (use --max-size or another --ext)")


def file_label(name: str) -> str:
    """A style name (data from a model file) as a part of a file name: nothing that could leave the
    folder (/ or ..), hide the file (a leading dot), read as an option (a leading -), or be a
    control or invisible character; at most MAX_LABEL_BYTES of UTF-8."""
    label = _UNSAFE.sub("_", name).strip("._-")
    label = label.encode()[:MAX_LABEL_BYTES].decode(errors="ignore").rstrip("._-")
    return label or "style"


def unique_labels(names: list[str]) -> list[str]:
    """`file_label` of each name, made distinct (ignoring case, as macOS and Windows do) by a number."""
    labels = [file_label(n) for n in names]
    folded = [label.casefold() for label in labels]
    return [label if folded.count(label.casefold()) == 1 else f"{label}_{i}" for i, label in enumerate(labels)]


def collect_inputs(items: list[str], notes: list[str] | None = None) -> tuple[list[Path], list[str]]:
    """(image files from files, folders and globs, in order, deduplicated; problems, one line each).
    A folder gives every image Pillow decodes and every clip, as naming the file would; a photo
    Pillow has no decoder for is a problem; any other file is named in `notes`, one line each.

    FIFOs, devices and dangling symlinks are problems, never opened: reading a FIFO waits forever."""
    files: list[Path] = []
    problems: list[str] = []
    for item in items:
        found, problem = _expand(item, problems, notes if notes is not None else [])
        problems += [problem] if problem else []
        for path in found:
            reason = not_regular(path)
            if reason is None:
                files.append(path)
            else:
                problems.append(f"{path}: {reason}")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return [Path(p) for p in unique], list(dict.fromkeys(problems))


def _expand(item: str, problems: list[str], notes: list[str]) -> tuple[list[Path], str | None]:
    """The paths one input names (itself, a folder's images and clips, a glob's matches), or why
    there are none; a folder's files that are neither go to `problems` (a photo format without a
    decoder here) or `notes`."""
    path = Path(item)
    if path.is_dir():
        found, readable, before = [], readable_suffixes(), len(problems)
        for p in sorted(p for p in path.iterdir() if not p.name.startswith(".") and not p.is_dir()):
            if is_clip(p) or p.suffix.lower() in readable:
                found.append(p)
            elif missing_decoder(p.name):
                problems.append(f"{p}: {missing_decoder(p.name)}")
            else:
                notes.append(f"{p}: not an image or a clip fst reads ({p.suffix or 'no extension'})")
        return found, None if found or len(problems) > before else f"{item}: no images in this folder"
    if path.exists() or path.is_symlink():  # a dangling symlink is reported as such, not as missing
        return [path], None
    if glob.has_magic(item):
        found = sorted(Path(p) for p in glob.glob(item) if not Path(p).is_dir())
        return found, None if found else f"{item}: no files match"
    return [], f"{item}: no such file"


def plan_outputs(files: list[Path], out: Path, ext: str | None, others: tuple[Path, ...] = ()) -> list[Path]:
    """Where each input goes: `out` itself for one input and a file-like `out`, else out/<stem><ext>.
    `ext` applies to inputs of its kind (a photo extension to photos, a video one to clips); the
    others keep their own. `others` are the command's other inputs (the model), never overwritten either."""
    if ext is not None and not _EXT.fullmatch(ext.lstrip(".")):
        raise FstError(f"--ext {ext!r}: an extension is letters and digits (e.g. png, jpg)")
    suffix = None if ext is None else "." + ext.lstrip(".").lower()
    file_like = out.suffix.lower() in Image.registered_extensions() or is_clip(out)
    as_file = len(files) == 1 and not out.is_dir() and file_like
    if as_file:
        targets = [out]
    else:
        if file_like and not out.is_dir():
            raise FstError(f"{out}: {len(files)} inputs need --out to be a folder")
        _require_parent(out)
        targets = [out / (f.stem + (suffix if suffix and is_clip(f) == (suffix in VIDEO_SUFFIXES) else own_suffix(f)))
                   for f in files]
    _check_targets(files, targets, others)
    _require_parent(out)
    writable_dir(out.parent if as_file else out)  # before the model loads: a read-only --out is one line
    return targets


def own_suffix(src: Path) -> str:
    """The extension of an input's output without --ext: its own, or .png for a photo format fst
    reads but does not write (PSD, ICO, XPM, ...)."""
    if is_clip(src):
        return src.suffix
    try:
        image_format(src)
    except FstError:
        return ".png"
    return src.suffix


def _check_targets(files: list[Path], targets: list[Path], others: tuple[Path, ...]) -> None:
    """Every target a known image format (a clip's a video one), none an input (by identity: through
    symlinks and hard links too) nor a device, FIFO or folder, no two the same."""
    for target in dict.fromkeys(t for f, t in zip(files, targets) if not is_clip(f)):
        image_format(target)
    seen: dict[Path, Path] = {}
    for src, dst in zip(files, targets):
        if is_clip(src) != is_clip(dst):
            raise FstError(f"{dst}: {'a clip is written as a video' if is_clip(src) else 'a photo is written as an image'}"
                           f" ({', '.join(VIDEO_SUFFIXES)} are videos)")
        if dst in seen:
            raise FstError(f"{dst}: both {seen[dst]} and {src} would be written there")
        seen[dst] = src
    check_outputs(targets, [*files, *others])


def _require_parent(out: Path) -> None:
    # Only --out itself is created: a typo in its parent should not grow a tree of new folders.
    if not out.parent.is_dir():
        problem = f"{out.parent} is not a folder" if out.parent.exists() else f"folder {out.parent} does not exist"
        raise FstError(f"{out}: {problem}")


def with_style_labels(files: list[Path], targets: list[Path], labels: list[str | None],
                      others: tuple[Path, ...] = ()) -> list[list[Path]]:
    """Per style label, each input's output: ``<stem>_<label><ext>`` beside the planned target (the
    planned target itself for None), checked as `plan_outputs` checks its own. Labels are style
    names read from the model file, so each goes through `file_label` first."""
    safe = iter(unique_labels([label for label in labels if label is not None]))
    labels = [None if label is None else next(safe) for label in labels]
    planned = [[t if label is None else t.with_name(f"{t.stem}_{label}{t.suffix}") for t in targets] for label in labels]
    _check_targets([f for f in files for _ in labels], [t for ts in zip(*planned) for t in ts], others)
    return planned
