"""PyAV against torchcodec for what `fst stylize` does with a clip: decode every frame to RGB uint8
and encode RGB frames to H.264 (crf 18, preset medium, yuv420p), on the same synthetic clip.

fst reads and writes clips with PyAV (fst/io/clips.py). torchcodec is not a dependency of fst: this
script needs it installed beside it (`pip install torchcodec`, which uses the system's FFmpeg
libraries; PyAV's wheel bundles its own), and says what each library can keep of a clip besides
speed (a variable frame rate, audio packets copied untouched).

    python scripts/bench_video_libs.py --size 1280x720 --frames 60
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from fst.io.clips import PIX_FMT, ClipWriter, open_clip
from fst.stylize.image import Options
from fst.stylize.video import decoded

from bench_video import synthetic_clip


def pyav_decode(path: Path) -> list[np.ndarray]:
    """fst's own reader (fst.stylize.video.decoded: frame threads on, frames upright, full size)."""
    clip = open_clip(path)
    try:
        return [item[0] for item in decoded(clip, Options()) if not isinstance(item, av.Packet)]
    finally:
        clip.container.close()


def torchcodec_decode(path: Path, batch: int = 8) -> list[torch.Tensor]:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=0, seek_mode="approximate")
    n = decoder.metadata.num_frames
    return [f for start in range(0, n, batch) for f in decoder.get_frames_in_range(start, min(n, start + batch)).data]


def pyav_encode(frames: list[np.ndarray], path: Path, rate: int, clip: Path) -> None:
    """fst's own writer (fst.io.clips.ClipWriter), set up from the input clip as `fst stylize` sets it up."""
    src = open_clip(clip)
    try:
        writer = ClipWriter(path, path, src, frames[0].shape[1::-1])
        for i, rgb in enumerate(frames):
            writer.write_frame(rgb, i, Fraction(1, rate))
        writer.close()
    finally:
        src.container.close()


def torchcodec_encode(frames: list[np.ndarray], path: Path, rate: int, clip: Path) -> None:
    from torchcodec.encoders import VideoEncoder

    data = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()  # NCHW uint8
    VideoEncoder(data, frame_rate=rate).to_file(path, codec="libx264", pixel_format=PIX_FMT, crf=18, preset="medium")


def timed(fn, *args) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="1280x720")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs of each")
    args = p.parse_args()
    width, height = map(int, args.size.split("x"))
    try:
        import torchcodec
    except ImportError:
        raise SystemExit("bench_video_libs: torchcodec is not installed (pip install torchcodec)") from None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = synthetic_clip(folder / "clip.mp4", width, height, args.frames)
        frames = pyav_decode(clip)
        rows = []
        for name, decode, encode in (("PyAV " + av.__version__, pyav_decode, pyav_encode),
                                     ("torchcodec " + torchcodec.__version__, torchcodec_decode, torchcodec_encode)):
            dec = min(timed(decode, clip)[0] for _ in range(args.repeats))
            got = decode(clip)
            same = len(got) == len(frames) and all(np.abs(np.asarray(a, np.int16) - b).max() <= 3 for a, b in zip(got, frames))
            enc = min(timed(encode, frames, folder / "out.mp4", 30, clip)[0] for _ in range(args.repeats))
            rows.append((name, args.frames / dec, args.frames / enc, same))
    print(f"{args.size}, {args.frames} frames, {torch.get_num_threads()} torch threads, best of {args.repeats}")
    print("| library | decode, frames/s | encode (x264 crf 18 medium), frames/s | decoded pixels within 3 levels of PyAV's |")
    print("|---|---:|---:|---|")
    for name, dec, enc, same in rows:
        print(f"| {name} | {dec:.0f} | {enc:.1f} | {'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
