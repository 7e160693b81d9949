#!/usr/bin/env python
"""Speed of a universal network against a per-painting one, on the CPU: seconds per image, and the
seconds a painting's statistics take.

    python scripts/bench_universal.py                      # 1920x1080, the dtype fst stylize picks here
    python scripts/bench_universal.py --size 1280x720 --repeat 5 --dtype fp32

Weights are random (speed depends on shapes and dtypes only). Rows: the per-painting TransformerNet
(32 channels, 5 blocks: the quickstart's), the universal network (relu3_1, width 1) with the intra
and the inter transform, and the painting's statistics at --style-size (one encoder pass and, for
inter, an eigendecomposition). Wall-clock medians after one warm-up; inference mode; freed memory
kept for reuse as fst stylize keeps it. Prints a Markdown table naming the machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from fst.core import host_memory  # noqa: E402
from fst.core import precision as fst_precision  # noqa: E402
from fst.models.transformer import TransformerNet  # noqa: E402
from fst.models.universal import BoundStyles, UniversalNet  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: oneDNN primitives, allocator
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1920x1080", help="WxH of the photo")
    p.add_argument("--style-size", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dtype", choices=("auto", *DTYPES), default="auto")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    dtype_name = fst_precision.inference_dtype("cpu").value if args.dtype == "auto" else args.dtype
    dtype = DTYPES[dtype_name]
    host_memory.keep_freed_memory()
    torch.manual_seed(0)
    x = torch.rand(1, 3, h, w, dtype=dtype)
    painting = torch.rand(1, 3, args.style_size, args.style_size * 3 // 4)
    rows = []
    with torch.inference_mode():
        per_painting = TransformerNet().eval().to(dtype)
        rows.append(("per-painting TransformerNet (32, 5)", median_seconds(lambda: per_painting(x), args.repeat)))
        for transform in ("intra", "inter"):
            net = UniversalNet(transform).eval()
            stats = median_seconds(lambda: net.style_stats(painting), args.repeat)
            bound = BoundStyles(net, net.style_stats(painting)[None]).to(dtype)
            rows.append((f"universal {transform} (relu3_1)", median_seconds(lambda: bound(x), args.repeat)))
            rows.append((f"  its painting's statistics at {args.style_size} px, fp32", stats))
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{dt.date.today()}, {w}x{h}, {dtype_name}, median of {args.repeat}")
    print("| network | seconds |\n|---|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.2f} |")


if __name__ == "__main__":
    main()
