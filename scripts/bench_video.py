"""Frames per second of `fst stylize` on a clip: a synthetic clip (moving gradient, AAC-free) at the
given size through the quickstart-size network (TransformerNet defaults: 32 channels, 5 residual
blocks, random weights: speed does not depend on them), decode + stylise + encode end to end.

    python scripts/bench_video.py --size 1280x720 --frames 16 --dtype fp32
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from fst.artefacts.checkpoint import payload
from fst.models.transformer import TransformerNet
from fst.stylize.stylizer import Stylizer
from fst.stylize.video import stylize_clip


def synthetic_clip(path: Path, width: int, height: int, frames: int) -> Path:
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    for i in range(frames):
        img = np.concatenate([(x + 8 * i) % 256 + 0 * y, (y + 4 * i) % 256 + 0 * x, (x + y) / 2 % 256], axis=2)
        frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, 30)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
    out.close()
    return path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="1280x720")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--dtype", default="fp32", choices=("auto", "fp32", "bf16"))
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        net = TransformerNet().eval()
        torch.save(payload(net, style_name="bench", style_loss="gram", global_step=0), folder / "net.ckpt")
        clip = synthetic_clip(folder / "clip.mp4", width, height, args.frames)
        stylizer = Stylizer(folder / "net.ckpt", device="cpu", dtype=args.dtype)
        stylizer(torch.rand(1, 3, height, width))  # warm-up: first-pass allocations are not per frame
        start = time.perf_counter()
        stylize_clip(stylizer, clip, [(None, folder / "out.mp4")], progress=False)
        seconds = time.perf_counter() - start
    fps = args.frames / seconds
    print(f"{args.size}, {args.frames} frames, {stylizer.dtype}, {torch.get_num_threads()} threads, "
          f"channels {net.config['channels']}: {seconds:.1f} s, {fps:.3f} frames/s ({1 / fps:.2f} s/frame) "
          f"on {platform.processor() or platform.machine()}")


if __name__ == "__main__":
    main()
