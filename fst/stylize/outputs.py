"""Inputs and outputs of `fst stylize`, planned before any model loads: the image files that files,
folders and globs name, and where each output goes (per style too), every target checked."""

from __future__ import annotations

import glob
from pathlib import Path

from PIL import Image

from fst.core.errors import FstError
from fst.io.images import image_paths, not_regular
from fst.io.output_dir import writable_dir


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
