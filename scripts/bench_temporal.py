"""The `--temporal` lever's cost per frame on the CPU (docs/benchmarks.md): `ClipBlend` (two DIS flows
at up to FLOW_SIDE px, the confidence, the warp and blend at full size) on the first frames of a clip
at its own size and scaled, one output, the network left out (its frames stand in for themselves).

    python scripts/bench_temporal.py --clip sample:bigbuckbunny --sizes 320 640 1280 --threads 1 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fst.io.clips import read_frames
from fst.stylize.temporal_blend import FLOW_SIDE, ClipBlend
from fst.study.sample_clips import resolve_clip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="sample:bigbuckbunny")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--sizes", nargs="+", type=int, default=[320, 640, 1280])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = p.parse_args()
    for size in args.sizes:
        frames = read_frames(resolve_clip(args.clip), args.frames, size)
        for threads in args.threads:
            torch.set_num_threads(threads)
            lever, times = ClipBlend(0.7, 1), []
            for f in frames:
                t = time.perf_counter()
                lever([f], [f[None]])
                times.append((time.perf_counter() - t) * 1e3)
            h, w = frames.shape[1:3]
            print(f"{w}x{h} (flow at <= {FLOW_SIDE} px), {threads} thread(s): median {statistics.median(times[1:]):.1f} ms"
                  f" per frame, best {min(times[1:]):.1f} ms ({len(times) - 1} frames)", flush=True)


if __name__ == "__main__":
    main()
