"""`--compile auto|yes|no`: whether compiling the network pays for these inputs, from measured
compile times and savings."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from PIL import Image

from fst.artefacts.exported import COMPILED
from fst.core.errors import FstError
from fst.io.clips import is_clip, open_clip
from fst.stylize.image import Options, fit_size
from fst.stylize.stylizer import Stylizer

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
    if stylizer.meta.get("quantize"):
        return False, f"a {stylizer.meta['quantize']} model runs its whole images in onnxruntime"
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
    sizes, megapixels = set(), 0.0
    for f in files:
        size, count = clip_size(f) if is_clip(f) else (image_size(f), 1)
        fitted = fit_size(size, opts.max_size)
        if fitted is not None:
            sizes.add(fitted)
            megapixels += fitted[0] * fitted[1] * count / 1e6
    cost = COMPILE_SECONDS["one size" if len(sizes) <= 1 else "several sizes"]
    gain = saving * megapixels
    verdict = "pays" if gain > cost else "does not pay"
    return gain > cost, f"auto: ~{gain:.0f} s saved vs ~{cost:.0f} s compiling {verdict}"


def clip_size(path: Path) -> tuple[tuple[int, int] | None, int]:
    """((width, height), frames) of a clip from its header: every frame is stylised, so a clip counts
    as that many images; (None, 0) if unreadable (that clip's own pass reports it)."""
    try:
        clip = open_clip(path)
    except FstError:
        return None, 0
    with clip.container:
        video = clip.video
        frames = clip.declared_frames
        if not frames and video.duration and video.average_rate:
            frames = round(video.duration * video.time_base * video.average_rate)
        return (video.codec_context.width, video.codec_context.height), int(frames or 1)


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the header only, upright as stylised (EXIF rotation); None if unreadable.

    Any input may be hostile and this runs before the per-file guard of `stylize_file`: a
    decompression bomb (PIL's DecompressionBombError) or a header PIL trips over is None here, and
    that file's own pass reports it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                return (h, w) if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)
    except Exception:
        return None
