"""`fst stylize`: photos and clips in, stylised photos and clips out, with a checkpoint or an exported model.

    fst stylize photo.jpg --model starry.ckpt --out styled.jpg
    fst stylize clip.mp4 --model starry.ckpt --out styled.mp4
    fst stylize photos/ 'more/*.png' --model starry.pt --out styled/ --ext png --tile 1024

- Inputs: files, folders (every image Pillow reads and every clip in them, not recursive; any other
  file is named on a line) and globs. Outputs: a file for a single input, else a folder of
  ``<stem><ext>`` (the input's extension unless ``--ext``; PNG for a format Pillow reads but does not
  write); the format follows the extension. Every output is written to a temp name beside it, then renamed.
- Images are read by `fst.io.images` (EXIF orientation applied; grayscale, palette, CMYK, 16-bit,
  float converted to 8-bit RGB). An alpha channel and an RGB ICC profile are carried over where the
  output format has them; every frame of an animated GIF, PNG or WebP is stylised (`fst.stylize.image`).
- Device: CUDA when present (fp16 by default), else CPU fp32; ``--device``/``--dtype`` override.
  Exported models run in the dtype they were exported with. An AOTInductor package (``fst export
  --format aoti``) is machine code and runs only with ``--trust-compiled`` (`fst.artefacts.compiled`). ``--compile`` runs the network through
  torch.compile (an eager copy of an artefact's weights), falling back to eager if compiling fails.
- Large images: ``--tile`` runs overlapping tiles with whole-image instance-norm statistics
  (`fst.models.tiling`); a full pass that runs out of memory falls back to that automatically, and on
  the CPU one that would not fit in the free memory is tiled from the start (`fst.stylize.memory`).
  Tiling needs module hooks, so for exported models it runs an eager copy of the artefact's weights.
  Images under the network's smallest side (`MIN_SIDE`, after ``--max-size``) are skipped.
- A network of several styles (``fst fit`` with ``style_images``): every style by default, one
  output per style named ``<stem>_<style><ext>`` (the name made safe for a file name: it is data
  from the model file); ``--style NAME`` (or its index; repeatable) picks
  styles, ``--mix NAME=W,NAME=W`` blends them (weights normalised to sum 1). A single output (one
  style, or a blend) is named as without styles.
- A universal network (``fst fit --config configs/universal.yaml``) takes any painting with
  ``--style-image PAINTING`` (repeatable: one output per painting, ``--mix``/``--style`` by the
  paintings' names), ``--transform intra|inter`` and ``--style-size``; no training per painting.
  Its export (``fst export``) takes ``--style-image`` too (the paintings' statistics computed with the
  encoder the file carries); one exported with a painting baked in takes none (docs/universal.md).
- ``--strength s``: s * stylised + (1 - s) * content. ``--preserve-color``: luminance from the
  stylised image, chroma from the content.
- Clips (.mp4 .mov .mkv .webm .avi; `fst.stylize.video`): every frame with the same options, the
  same frames and timestamps, audio and subtitles copied untouched (a stream the output cannot hold
  is named on one line); ``--ext`` applies to inputs of its kind.
- ``--temporal [W]`` (clips): each frame blended with the previous output frame moved along the
  clip's own motion, where that motion can be trusted (`fst.stylize.temporal_blend`): less flicker
  from any network, no retraining; needs OpenCV (the ``eval`` extra).
- A file that cannot be read, stylised or written, for whatever reason, is reported on one line and
  skipped; the rest are done, and the exit status is 1 with a summary. A stop signal still stops.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from tqdm import tqdm

from fst.artefacts.exported import DTYPES
from fst.core import host_memory
from fst.core.arguments import ArgumentParser
from fst.core.errors import FstError, first_line
from fst.io.clips import is_clip
from fst.models import tiling
from fst.stylize.compile_choice import COMPILE_CHOICES, compile_pays
from fst.stylize.image import Options, Output, PartlyWritten, stylize_file
from fst.stylize.paintings import DEFAULT_STYLE_SIZE
from fst.stylize.outputs import collect_inputs, plan_outputs, with_style_labels
from fst.stylize.styles import style_choices
from fst.stylize.stylizer import Stylizer
from fst.stylize import colour_match, temporal_blend
from fst.metrics.flow import require_opencv
from fst.stylize.video import stylize_clip


def stylize_files(stylizer: Stylizer, files: list[Path], outputs: list[list[Output]], opts: Options,
                   progress: bool = True) -> tuple[int, list[str]]:
    """Stylise each file to its outputs: (how many outputs were written, the one-line problems of
    the files that failed)."""
    failed: list[str] = []
    written = 0
    for src, outs in tqdm(list(zip(files, outputs)), desc="stylize", unit="img", disable=not progress or None, file=sys.stderr):
        try:
            if is_clip(src):
                written += stylize_clip(stylizer, src, outs, opts, progress)
            else:
                written += stylize_file(stylizer, src, outs, opts)
            continue
        except PartlyWritten as e:
            written += e.written
            failed.append(f"{src}: {e}")
        except FstError as e:  # images.ImageError names the file already
            failed.append(str(e) if str(src) in str(e) else f"{src}: {e}")
        except Exception as e:  # whatever one file does is that file's; a stop signal is no Exception
            failed.append(f"{src}: {type(e).__name__}: {first_line(e)[:300]}")
        tqdm.write(f"fst stylize: skipped {printable(failed[-1])}", file=sys.stderr)
    return written, failed


def printable(text: str) -> str:
    """`text` as one line that cannot steer a terminal: a newline or an escape sequence in a file's
    name is shown escaped, as repr shows it."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
    p.add_argument("--overlap", type=int, default=None, metavar="PX",
                   help=f"tile overlap (default {tiling.DEFAULT_OVERLAP}, at most a quarter of --tile)")
    p.add_argument("--max-size", type=int, default=None, metavar="PX", help="downscale so the long side is at most PX")
    p.add_argument("--style", action="append", metavar="NAME", default=None,
                   help="a model of several styles: the style to apply, by name or index (repeat or comma-separate"
                   " for several; default: every style, one output each, named <stem>_<style><ext>)")
    p.add_argument("--mix", metavar="NAME=W,...", default=None,
                   help="a model of several styles: blend styles with these weights (normalised to sum 1)")
    p.add_argument("--style-image", action="append", type=Path, metavar="PAINTING", default=None,
                   help="a universal network (fst fit --config configs/universal.yaml): the painting to apply, any"
                   " image, no training; repeat for several (one output each, named <stem>_<painting><ext>; --mix"
                   " NAME=W,... blends them, --style picks). Its statistics are taken once per run")
    p.add_argument("--transform", choices=("intra", "inter"), default=None,
                   help="a universal network: intra (AdaIN, per-channel statistics) or inter (WCT, the channel"
                   " covariance); default: the one it was trained with")
    p.add_argument("--style-size", type=int, default=DEFAULT_STYLE_SIZE, metavar="PX",
                   help=f"a universal network: the painting's long side when its statistics are taken (default"
                   f" {DEFAULT_STYLE_SIZE}; larger gives finer strokes, smaller bolder ones)")
    p.add_argument("--strength", type=float, default=1.0, help="0 = content, 1 = fully stylised (default 1)")
    p.add_argument("--stroke-scale", type=float, default=1.0, metavar="S",
                   help="paint strokes S times larger (1-16, default 1): the network runs at 1/S of the size and"
                   " the result comes back to full size with the photo's own fine detail added back, so the"
                   " picture stays sharp; any network")
    p.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance transfer)")
    p.add_argument("--color-match", choices=colour_match.MODES, default="off",
                   help="a universal network with --style-image: give each output the painting's RGB statistics"
                   " after decoding (the painting's taken once at --style-size; the output's over the whole image,"
                   " tiles joined): mean-std per channel, covariance the 3x3 colour covariance too (default off;"
                   " excludes --preserve-color; --strength then blends the matched output with the photo)")
    p.add_argument("--temporal", type=float, nargs="?", const=temporal_blend.DEFAULT_WEIGHT, default=0.0, metavar="W",
                   help="clips: blend each frame with the previous output frame moved along the clip's own motion"
                   f" (optical flow), by W in [0, 1) where the motion is trusted (default W"
                   f" {temporal_blend.DEFAULT_WEIGHT}): less flicker, any network, no retraining; needs OpenCV")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def default_overlap(tile: int | None) -> int:
    """DEFAULT_OVERLAP, or a quarter of a tile too small for it (`--tile 64` alone is no error)."""
    return tiling.DEFAULT_OVERLAP if tile is None else max(0, min(tiling.DEFAULT_OVERLAP, tile // 4))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    overlap = args.overlap if args.overlap is not None else default_overlap(args.tile)
    opts = Options(args.tile, overlap, args.max_size, args.strength, args.preserve_color, args.stroke_scale,
                   args.temporal)
    notes: list[str] = []  # a folder's files that are neither images nor clips
    files, problems = collect_inputs(args.inputs, notes)
    if not files:
        raise FstError("; ".join(problems) or "no inputs")
    has_clips = any(map(is_clip, files))
    if opts.temporal and has_clips:
        require_opencv("--temporal")
    targets = plan_outputs(files, args.out, args.ext, others=(Path(args.model), *(args.style_image or [])))
    if args.style_size < 0:
        raise FstError(f"--style-size must be >= 0, got {args.style_size}")
    stylizer = Stylizer(args.model, args.device, args.dtype, trust_compiled=args.trust_compiled,
                        style_images=args.style_image, transform=args.transform, style_size=args.style_size)
    if stylizer.warning:
        print(f"fst stylize: warning: {stylizer.warning}", file=sys.stderr)
    if args.color_match != "off":
        opts = dataclasses.replace(opts, colour=colour_match.for_run(args.color_match, stylizer.universal,
                                                                     args.style_image, args.style_size, stylizer.min_side))
    choices = style_choices(stylizer.style_names, args.style, args.mix)
    if len(files) * len(choices) == 1 and not has_clips:  # one pass reuses nothing, and blocks kept
        host_memory.give_back_freed_memory()  # for reuse raised a 1080p photo's peak by 0.2-0.4 GB
    per_style = with_style_labels(files, targets, [label for label, _ in choices], others=(Path(args.model),))
    compile_, why = compile_pays(args.compile, stylizer, files * len(choices), opts)  # a pass per style
    if compile_:
        stylizer.compile()
    if not args.quiet:
        print(f"fst stylize: {stylizer.describe()}; compile {'on' if compile_ else 'off'} ({why})", file=sys.stderr)
    if has_clips and not opts.temporal and not args.quiet:
        print("fst stylize: hint: --temporal blends each frame with the one before along the clip's motion,"
              " for less flicker", file=sys.stderr)
    for line in notes:
        print(f"fst stylize: left out {printable(line)}", file=sys.stderr)
    for line in problems:
        print(f"fst stylize: skipped {printable(line)}", file=sys.stderr)
    # Per file, every chosen style: each image is read and decoded once.
    outputs = [[(weights, targets_of[i]) for (_, weights), targets_of in zip(choices, per_style)] for i in range(len(files))]
    done, failed = stylize_files(stylizer, files, outputs, opts, progress=not args.quiet)
    failed = problems + failed
    expected = len(files) * len(choices) + len(problems)
    where = per_style[0][0] if len(files) * len(choices) == 1 else args.out if args.out.is_dir() else args.out.parent
    if failed:
        print(f"fst stylize: {done} of {expected} written to {where}; {len(failed)} failed", file=sys.stderr)
        return 1
    clips = sum(map(is_clip, files)) * len(choices)
    print(f"stylized {what_was_done(done - clips, clips)} -> {where}")
    return 0


def what_was_done(images: int, clips: int) -> str:
    """'3 images', '1 clip', '2 images and 1 clip'."""
    parts = [f"{n} {noun}{'s' * (n != 1)}" for n, noun in ((images, "image"), (clips, "clip")) if n]
    return " and ".join(parts) or "0 images"
