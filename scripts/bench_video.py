"""Frames per second of `fst stylize` on a clip: a synthetic clip (moving gradient, AAC-free) at the
given size through the quickstart-size network (TransformerNet defaults: 32 channels, 5 residual
blocks, random weights: speed does not depend on them), decode + stylise + encode end to end.

End to end is timed twice: the stages in turn (decode a batch, stylize it, encode it) and in
threads (decoding ahead of the network, encoding behind it: fst.stylize.video's default).
Each stage is also timed alone: in turn, end to end is their sum; fully overlapped, the slowest.

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
from fst.io.clips import ClipWriter, open_clip
from fst.models.transformer import TransformerNet
from fst.stylize.image import Options
from fst.stylize.stylizer import Stylizer
from fst.stylize.video import BATCH, decoded, stylize_batch, stylize_clip


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


def stage_seconds(stylizer: Stylizer, src: Path, folder: Path) -> dict[str, float]:
    """Seconds for each stage run alone: decode (to upright arrays), network, encode (to a file)."""
    clip = open_clip(src)
    start = time.perf_counter()
    try:
        frames = [item for item in decoded(clip, Options()) if not isinstance(item, av.Packet)]
    finally:
        clip.container.close()
    decode = time.perf_counter() - start
    start = time.perf_counter()
    styled = [stylize_batch(stylizer, [f for f, _, _ in frames[i:i + BATCH]], None, Options())
              for i in range(0, len(frames), BATCH)]
    network = time.perf_counter() - start
    clip = open_clip(src)
    h, w = frames[0][0].shape[:2]
    start = time.perf_counter()
    writer = ClipWriter(folder / "encode.mp4", folder / "encode.mp4", clip, (w, h))
    for rgb, (_, pts, time_base) in zip((f for batch in styled for f in batch), frames):
        writer.write_frame(rgb, pts, time_base)
    writer.close()
    encode = time.perf_counter() - start
    clip.container.close()
    return {"decode": decode, "network": network, "encode": encode}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="1280x720")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--dtype", default="fp32", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
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
        stylizer = Stylizer(folder / "net.ckpt", device=args.device, dtype=args.dtype)
        stylizer(torch.rand(BATCH, 3, height, width, device=args.device))  # warm-up: first-pass allocations
        stages = stage_seconds(stylizer, clip, folder)
        seconds = {}
        for overlap in (False, True):
            start = time.perf_counter()
            stylize_clip(stylizer, clip, [(None, folder / "out.mp4")], progress=False, overlap=overlap)
            seconds[overlap] = time.perf_counter() - start
    alone = ", ".join(f"{k} {args.frames / v:.2f}" for k, v in stages.items())
    print(f"{args.size}, {args.frames} frames, {stylizer.dtype}, {stylizer.device}, {torch.get_num_threads()} threads, "
          f"channels {net.config['channels']}, on {platform.processor() or platform.machine()}; frames/s end to end:")
    for overlap, s in seconds.items():
        print(f"  {'threads' if overlap else 'in turn'} (decode and encode {'beside' if overlap else 'between'} network "
              f"batches{', the default' if overlap else ''}): {s:.1f} s, "
              f"{args.frames / s:.3f} frames/s ({s / args.frames:.2f} s/frame)")
    print(f"stages alone, frames/s: {alone}; their sum {sum(stages.values()):.1f} s")


if __name__ == "__main__":
    main()
