"""Pictures of flicker for docs/video.md: a frame strip (the same pixels of consecutive frames, the
input above each model's), a temporal profile (one row of pixels through every frame of the clip)
and a short side-by-side clip (the input beside each model, labelled).

    python scripts/video_pictures.py --models A.ckpt B.ckpt --labels "gram" "gram + temporal" \\
        --clip sample:bikes --out docs/images/video

writes OUT_strip.jpg, OUT_profile.png and OUT_side_by_side.mp4 (H.264, small enough for the repository).
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fst.artefacts.checkpoint import load_checkpoint, transformer_from_checkpoint  # noqa: E402
from fst.core.arguments import ArgumentParser  # noqa: E402
from fst.io.clips import PIX_FMT, read_frames  # noqa: E402
from fst.io.files import writing  # noqa: E402
from fst.study.evaluate import stylize  # noqa: E402
from fst.study.flicker import as_tensor  # noqa: E402
from fst.study.sample_clips import resolve_clip  # noqa: E402

LABEL = 14  # px of the label band above each panel


def as_uint8(frames: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) in [0, 1] -> (T, H, W, 3) uint8."""
    return (frames.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def labelled(panel: np.ndarray, text: str) -> np.ndarray:
    """A white band with `text` over `panel` (H, W, 3)."""
    band = Image.new("RGB", (panel.shape[1], LABEL), "white")
    ImageDraw.Draw(band).text((3, 1), text, fill="black")
    return np.concatenate([np.asarray(band), panel], 0)


def strip(rows: list[tuple[str, np.ndarray]], box: tuple[int, int, int, int], count: int) -> Image.Image:
    """One row per (label, frames): the `box` (x, y, w, h) of `count` consecutive frames, side by side."""
    x, y, w, h = box
    lines = [labelled(np.concatenate([f[y:y + h, x:x + w] for f in frames[:count]], 1), label)
             for label, frames in rows]
    return Image.fromarray(np.concatenate(lines, 0))


def profile(rows: list[tuple[str, np.ndarray]], y: int, stretch: int) -> Image.Image:
    """The temporal profile of pixel row `y`: that row of every frame, one under the other (time runs
    down, each frame `stretch` px tall), one panel per (label, frames). A still scene draws vertical
    lines; flicker draws speckle across them."""
    panels = [labelled(np.repeat(frames[:, y], stretch, axis=0), label) for label, frames in rows]
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return Image.fromarray(np.concatenate([x for p in panels for x in (p, gap)][:-1], 1))


def side_by_side(rows: list[tuple[str, np.ndarray]], columns: int) -> np.ndarray:
    """(T, H, W, 3): the labelled clips in a grid of `columns` panels a row."""
    panels = [np.stack([labelled(f, label) for f in frames]) for label, frames in rows]
    while len(panels) % columns:
        panels.append(np.full_like(panels[0], 255))
    grid_rows = [np.concatenate(panels[i:i + columns], 2) for i in range(0, len(panels), columns)]
    return np.concatenate(grid_rows, 1)


def write_clip(path: Path, frames: np.ndarray, fps: int) -> None:
    """`frames` as H.264 (crf 28: a small file), written whole or not at all."""
    with writing(path) as tmp:
        with av.open(str(tmp), "w") as out:
            stream = out.add_stream("libx264", rate=fps, options={"crf": "28", "preset": "slow"})
            stream.height, stream.width, stream.pix_fmt = frames.shape[1] - frames.shape[1] % 2, \
                frames.shape[2] - frames.shape[2] % 2, PIX_FMT
            stream.codec_context.time_base = Fraction(1, fps)
            for i, f in enumerate(frames):
                rgb = np.ascontiguousarray(f[:stream.height, :stream.width])
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))


def main(argv: list[str]) -> int:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", type=Path, required=True, help="fst checkpoints")
    p.add_argument("--labels", nargs="+", required=True, help="one label per model")
    p.add_argument("--clip", default="sample:bikes", help="a clip path or sample:NAME (default sample:bikes)")
    p.add_argument("--skip", type=int, default=10, help="first frame of the strip (default 10)")
    p.add_argument("--strip-frames", type=int, default=8, help="consecutive frames in the strip (default 8)")
    p.add_argument("--box", type=int, nargs=4, default=[128, 160, 96, 96], metavar=("X", "Y", "W", "H"),
                   help="the strip's pixels, in the frames at --size (default 128 160 96 96: a still part of sample:bikes)")
    p.add_argument("--clip-skip", type=int, default=137, help="first frame of the side-by-side clip (default 137)")
    p.add_argument("--clip-frames", type=int, default=105, help="frames of the side-by-side clip (default 105)")
    p.add_argument("--size", type=int, default=640, help="strip frames' long side (default 640)")
    p.add_argument("--clip-size", type=int, default=320, help="side-by-side panels' long side (default 320)")
    p.add_argument("--profile-row", type=int, default=90, help="pixel row of the temporal profile (default 90)")
    p.add_argument("--columns", type=int, default=3, help="panels a row in the side-by-side clip (default 3)")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--out", type=Path, required=True,
                   help="prefix: OUT_strip.jpg, OUT_profile.png, OUT_side_by_side.mp4")
    args = p.parse_args(argv)
    if len(args.labels) != len(args.models):
        p.error("give one --labels entry per --models entry")
    torch.set_grad_enabled(False)
    nets = [transformer_from_checkpoint(load_checkpoint(m))[0].eval() for m in args.models]
    path = resolve_clip(args.clip)

    def rows(skip: int, count: int, side: int) -> list[tuple[str, np.ndarray]]:
        x = as_tensor(read_frames(path, count, side, skip))
        styled = [(label, as_uint8(stylize(net, x, "cpu"))) for label, net in zip(args.labels, nets)]
        return [("input", as_uint8(x)), *styled]

    picture = strip(rows(args.skip, args.strip_frames, args.size), tuple(args.box), args.strip_frames)
    with writing(args.out.with_name(args.out.name + "_strip.jpg")) as tmp:
        picture.save(tmp, quality=90)
    clip_rows = rows(args.clip_skip, args.clip_frames, args.clip_size)
    with writing(args.out.with_name(args.out.name + "_profile.png")) as tmp:
        profile(clip_rows, args.profile_row, 2).save(tmp)
    if args.columns == 3 and len(clip_rows) == 5:  # input, then two models a row: the input beside each pair
        clip_rows = [clip_rows[0], *clip_rows[1:3], clip_rows[0], *clip_rows[3:5]]
    write_clip(args.out.with_name(args.out.name + "_side_by_side.mp4"), side_by_side(clip_rows, args.columns), args.fps)
    print(f"{args.out}_strip.jpg, {args.out}_profile.png, {args.out}_side_by_side.mp4")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
