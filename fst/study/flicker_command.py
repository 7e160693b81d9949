"""`fst flicker`: how much a stylized clip flickers, measured against the clip it was made from.

    fst flicker street.mp4 street_starry.mp4 [more stylized versions...]

The motion is estimated on the input clip (OpenCV DIS, or Farnebäck with ``--flow farneback``: a
second, independent estimator, for judging what uses DIS's motion itself; fst.metrics.flow),
occluded pixels and frame pairs across a cut are left out (fst.study.flicker; cuts found by DIS's
check under either flow), and each stylized clip's warping error
is divided by the input's own: 1.0 is as stable as the input, 4.0 four times its error. A stylized
clip must have the same frames (`fst stylize` keeps them); a different size (``--max-size``) is
scaled to the input's measuring size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from fst.core.arguments import ArgumentParser
from fst.core.errors import FstError
from fst.io.clips import read_frames
from fst.io.files import write_atomic
from fst.io.targets import check_outputs
from fst.metrics import flow
from fst.study.flicker import EvalClip, as_tensor, real_clip
from fst.study.sample_clips import resolve_clip


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="fst flicker", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="How much stylized clips flicker, measured against the clip they were made from.",
                       epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("input", help="the clip that was stylized (a path, or sample:bikes)")
    p.add_argument("stylized", nargs="+", type=Path, help="its stylized versions (same frames, e.g. from fst stylize)")
    p.add_argument("--frames", type=int, default=250, help="frames measured, from --skip on (default 250)")
    p.add_argument("--skip", type=int, default=0, help="frames skipped at the start (default 0)")
    p.add_argument("--size", type=int, default=320,
                   help="long side the frames are measured at, px (default 320: flow is stable and fast there)")
    p.add_argument("--flow", choices=flow.METHODS, default="dis",
                   help="optical flow estimator: dis (default) or farneback (independent of DIS; slower)")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    return p


def stylized_frames(path: Path, clip: EvalClip, count: int, skip: int, size: int) -> torch.Tensor:
    """`path`'s frames as the input's were read, at the input's measuring size."""
    if not path.is_file():
        raise FstError(f"{path}: clip not found")
    frames = as_tensor(read_frames(path, count, size, skip))
    if frames.shape[0] != clip.frames.shape[0]:
        raise FstError(f"{path}: {frames.shape[0]} frames from frame {skip}, the input {clip.frames.shape[0]}: "
                       "not a stylized version of it")
    if frames.shape[-2:] != clip.frames.shape[-2:]:
        frames = F.interpolate(frames, size=clip.frames.shape[-2:], mode="bilinear", antialias=True).clamp(0, 1)
    return frames


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.frames < 2 or args.skip < 0 or args.size < 16:
        raise FstError("--frames must be >= 2, --skip >= 0 and --size >= 16")
    if args.json:  # before the measuring: --json must name neither clip, nor a device or FIFO
        check_outputs([args.json], [resolve_clip(args.input), *args.stylized])
    flow.require_opencv("fst flicker")
    clip = real_clip(args.input, args.frames, args.size, args.skip, args.flow)
    pairs = f"{int(clip.keep.sum())} of {clip.keep.numel()} frame pairs"
    results = {"input": args.input, "flow": args.flow, "input_warping_error": clip.input_error, "pairs_measured": pairs,
               "flicker": {}}
    print(f"{args.input}: warping error {results['input_warping_error']:.3g} under {args.flow} flow ({pairs}; "
          "the rest are cuts)")
    for path in args.stylized:
        ratio = clip.ratio(stylized_frames(path, clip, args.frames, args.skip, args.size))
        results["flicker"][str(path)] = ratio
        print(f"{path}: flicker {ratio:.2f}x the input's")
    if args.json:
        write_atomic(args.json, json.dumps(results, indent=1) + "\n")
    return 0
