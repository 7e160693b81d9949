#!/usr/bin/env python
"""Speed of a universal network against a per-painting one, on the CPU: seconds per image, and the
seconds a painting's statistics take.

    python scripts/bench_universal.py                      # 1920x1080, the dtype fst stylize picks here
    python scripts/bench_universal.py --size 1280x720 --repeat 5 --dtype fp32

Weights are random (speed depends on shapes and dtypes only). Rows: the per-painting TransformerNet
(32 channels, 5 blocks: the quickstart's) in its NCHW reference pass and its CPU fast pass
(fst/models/cpu_fast.py; --per-painting: these rows only), the universal network (relu3_1, width 1) with the intra
and the inter transform, and the painting's statistics at --style-size (one encoder pass and, for
inter, an eigendecomposition). Wall-clock medians after one warm-up; inference mode; freed memory
kept for reuse as fst stylize keeps it. Prints a Markdown table naming the machine and date, the
wall-clock and CPU seconds; with --memory each pass's peak resident memory instead of keeping freed
memory (the process's high-water mark, reset before each row; Linux); with
--phases the phases of `fst stylize PHOTO --model sample:universal --style-image PAINTING` timed in
this process (the checkpoint, the painting's decode and resize, its statistics on a first and a later
call, the photo's pass), each phase once, in a fresh process for first-call costs:

    python scripts/bench_universal.py --phases --transform inter
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
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
ASSETS = Path(__file__).resolve().parent.parent / "fst" / "assets"
STATUS = Path("/proc/self/status")


def reset_peak() -> None:
    """Restart the process's resident high-water mark (Linux: writing 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_gb() -> float:
    """The process's resident high-water mark in GB (NaN where /proc is absent)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return float("nan")


def phases(args: argparse.Namespace, w: int, h: int) -> list[tuple[str, float, float]]:
    """Seconds of each phase of `fst stylize` with the shipped universal network, in this process."""
    from fst.artefacts.universal_checkpoint import universal_from_checkpoint
    from fst.assets import resolve_model_path
    from fst.io.images import open_rgb
    from fst.stylize.paintings import load_painting
    from fst.stylize.stylizer import Stylizer
    import torchvision.transforms.functional as TF

    painting_path, photo_path = ASSETS / "styles" / args.painting, ASSETS / "photos" / args.photo
    rows: list[tuple[str, float, float]] = []

    def timed(name: str, fn: Callable[[], object]) -> object:
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        rows.append((name, time.perf_counter() - start, time.process_time() - cpu))
        return out

    net, _ = timed("open the checkpoint", lambda: universal_from_checkpoint(resolve_model_path("sample:universal")))
    net = net.with_transform(args.transform)
    painting = timed(f"decode and resize the painting to {args.style_size} px",
                     lambda: load_painting(painting_path, args.style_size, net.min_side))
    with torch.inference_mode():
        for when in ("first call", "second call"):
            timed(f"its {args.transform} statistics, fp32, {when}", lambda: net.style_stats(painting))
    stylizer = timed("Stylizer: checkpoint, painting and statistics together",
                     lambda: Stylizer("sample:universal", device="cpu", dtype=args.dtype, style_images=[painting_path],
                                      transform=args.transform, style_size=args.style_size))
    x = TF.to_tensor(open_rgb(photo_path).resize((w, h), resample=3))[None]
    for when in ("first", "second"):
        timed(f"{w}x{h} pass, {stylizer.dtype}, {when}", lambda: stylizer(x))
    return rows


def median_seconds(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall-clock seconds and median CPU seconds of this process (all threads) of fn()."""
    fn()  # warm-up: oneDNN primitives, allocator
    times, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(times), statistics.median(cpus)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1920x1080", help="WxH of the photo")
    p.add_argument("--style-size", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dtype", choices=("auto", *DTYPES), default="auto")
    p.add_argument("--memory", action="store_true", help="peak resident memory per row (freed memory returned)")
    p.add_argument("--per-painting", action="store_true", help="the per-painting network's rows only")
    p.add_argument("--phases", action="store_true", help="time the phases of fst stylize instead")
    p.add_argument("--transform", choices=("intra", "inter"), default="intra", help="with --phases")
    p.add_argument("--painting", default="starry_night.jpg", help="with --phases: one of fst/assets/styles")
    p.add_argument("--photo", default="alpaca.jpg", help="with --phases: one of fst/assets/photos")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    dtype_name = fst_precision.inference_dtype("cpu").value if args.dtype == "auto" else args.dtype
    dtype = DTYPES[dtype_name]
    if not args.memory:  # kept, a block stays resident: a high-water mark would only grow
        host_memory.keep_freed_memory()
    load = os.getloadavg()[0]
    if args.phases:
        rows = phases(args, w, h)
        print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
              f"{dt.date.today()}, load average {load:.1f} at the start, sample:universal {args.transform}, "
              f"{args.painting} at {args.style_size} px, {args.photo} at {w}x{h}")
        print("| phase of fst stylize | seconds | CPU seconds (both threads) |\n|---|---:|---:|")
        for name, sec, cpu in rows:
            print(f"| {name} | {sec:.2f} | {cpu:.2f} |")
        return
    torch.manual_seed(0)
    x = torch.rand(1, 3, h, w, dtype=dtype)
    painting = torch.rand(1, 3, args.style_size, args.style_size * 3 // 4)
    rows = []

    def timed(name: str, fn: Callable[[], object]) -> None:
        reset_peak()
        rows.append((name, *median_seconds(fn, args.repeat), peak_gb()))

    with torch.inference_mode():
        per_painting = TransformerNet().eval().to(dtype)
        per_painting.cpu_fast = False  # the NCHW pass training and exports run (fst/models/cpu_fast.py)
        timed("per-painting TransformerNet (32, 5), NCHW reference pass", lambda: per_painting(x))
        per_painting = per_painting.to(memory_format=torch.channels_last)  # as the Stylizer keeps it
        per_painting.cpu_fast = True
        timed("per-painting TransformerNet (32, 5)", lambda: per_painting(x))
        for transform in () if args.per_painting else ("intra", "inter"):
            net = UniversalNet(transform).eval()
            stats_row = len(rows)
            timed(f"  its painting's statistics at {args.style_size} px, fp32", lambda: net.style_stats(painting))
            bound = BoundStyles(net, net.style_stats(painting)[None]).to(dtype).to(memory_format=torch.channels_last)
            timed(f"universal {transform} (relu3_1)", lambda: bound(x))
            rows.insert(stats_row + 1, rows.pop(stats_row))  # the network's row first
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{dt.date.today()}, load average {load:.1f} at the start, {w}x{h}, {dtype_name}, median of {args.repeat}")
    print("| network | seconds | CPU seconds (both threads) |" + (" peak resident GB |" if args.memory else ""))
    print("|---|---:|---:|" + ("---:|" if args.memory else ""))
    for name, sec, cpu, gb in rows:
        print(f"| {name} | {sec:.2f} | {cpu:.2f} |" + (f" {gb:.2f} |" if args.memory else ""))


if __name__ == "__main__":
    main()
