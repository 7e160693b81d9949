#!/usr/bin/env python
"""Inference speed of the default TransformerNet (channels=32, n_residual=5): ms per image.

    python scripts/bench_infer.py --quick                 # CPU, and CUDA when present
    python scripts/bench_infer.py --device cuda --json out/bench_infer.json

Weights are random: speed does not depend on their values, only on shapes and dtypes.
Variants (each at 512x512, 1280x720, 1920x1080, batch 1 or --batch):
  CPU:  eager fp32, exported TorchScript fp32 (the `fst export` artefact), eager bf16 (NCHW and
        channels-last); with --compile also torch.compile (inductor) fp32 and bf16; with --aoti the
        `fst export --format aoti` package (AOTInductor, fp32 and bf16), loaded back from its file.
  CUDA: eager fp32 (TF32 convs as cuDNN defaults), eager fp16 and bf16, TorchScript fp16,
        fp16 channels-last, and fp16 channels-last replayed as a CUDA graph (captured once per shape);
        with --compile also torch.compile (inductor, default mode) of fp16 channels-last; with
        --aoti the AOTI packages fp16 and fp16 channels-last.
AOTI packages take float32 and cast inside (their calling convention), so their input is float32.
CPU variants run with freed memory kept for reuse, as `fst stylize` runs there (fst.core.host_memory;
FST_MALLOC=default keeps glibc's malloc as it comes). CPU times are wall-clock medians; CUDA times
are CUDA-event medians after warm-up, with cudnn.benchmark on (fixed shapes, as a batch job or a video would have). A variant that fails is
reported as an error in its cells, so one failure does not lose the rest of the run.
Prints a Markdown table (machine, torch version, date); --json writes every number.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from fst.artefacts.compiled import load_package, write_aoti  # noqa: E402
from fst.artefacts.export import write_torchscript  # noqa: E402
from fst.artefacts.exported import load_compiled  # noqa: E402
from fst.core.errors import first_line  # noqa: E402
from fst.core.host_memory import keep_freed_memory  # noqa: E402
from fst.models.transformer import TransformerNet  # noqa: E402

SIZES = ((512, 512), (1280, 720), (1920, 1080))  # (W, H)
# Read before any work: the machine's own load from other processes is what skews CPU numbers.
START_LOAD = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
Run = Callable[[torch.Tensor], torch.Tensor]


def torchscript(net: TransformerNet, channels_last: bool = False) -> torch.jit.ScriptModule:
    """The exact artefact `fst export` writes, loaded back from bytes."""
    data = write_torchscript(net.eval(), {"bench": True}, channels_last)
    return torch.jit.load(io.BytesIO(data))


def aoti(net: TransformerNet, channels_last: bool = False) -> Run:
    """The exact package `fst export --format aoti` writes (for net's device and dtype), loaded back
    from its file, trusted because this script just compiled it. Compiling takes about a minute."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pt2"
        path.write_bytes(write_aoti(net.eval(), {"bench": True}, channels_last))
        return load_package(path, trusted=True)


def lazy(build: Callable[[], Run]) -> Callable[[tuple[int, int]], Run]:
    """A variant built on first use, inside the per-cell error handling (one package for every size)."""
    built: list[Run] = []

    def get(size: tuple[int, int]) -> Run:
        if not built:
            built.append(build())
        return built[0]

    return get


def cpu_time(run: Run, x: torch.Tensor, reps: int, budget_s: float) -> list[float]:
    """Wall-clock ms of `reps` runs after one warm-up, stopping early once `budget_s` is spent."""
    run(x)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < reps and (not times or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def cuda_time(run: Run, x: torch.Tensor, reps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run(x)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def cuda_graph(net: torch.nn.Module, x: torch.Tensor) -> Run:
    """Capture net(x) at x's shape once; the returned run copies its input in and replays."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as the capture docs require
        for _ in range(3):
            net(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = net(static_x)

    def run(inp: torch.Tensor) -> torch.Tensor:
        static_x.copy_(inp)
        graph.replay()
        return static_y

    return run


def copy_net(net: TransformerNet, device: str, dtype: torch.dtype, channels_last: bool = False) -> TransformerNet:
    """A fresh copy of `net` (same weights) on `device` in `dtype`, optionally channels-last."""
    n = TransformerNet(**net.config).eval()
    n.load_state_dict(net.state_dict())
    n = n.to(device, dtype)
    return n.to(memory_format=torch.channels_last) if channels_last else n


def cpu_variants(net: TransformerNet, compile: bool = False, aot: bool = False) -> dict[str, tuple[Callable[[tuple[int, int]], Run], torch.dtype, bool]]:
    fp32, bf16 = copy_net(net, "cpu", torch.float32), copy_net(net, "cpu", torch.bfloat16)
    scripted, bf16_cl = torchscript(fp32), copy_net(net, "cpu", torch.bfloat16, True)
    variants = {
        "eager fp32": (lambda size: fp32, torch.float32, False),
        "TorchScript fp32": (lambda size: scripted, torch.float32, False),
        "eager bf16": (lambda size: bf16, torch.bfloat16, False),
        "eager bf16 channels-last": (lambda size: bf16_cl, torch.bfloat16, True),
    }
    if compile:  # as `fst stylize --compile` runs it: compiled once per shape in the untimed warm-up
        fp32_c, bf16_c = (torch.compile(copy_net(net, "cpu", dt), dynamic=False) for dt in (torch.float32, torch.bfloat16))
        variants["torch.compile fp32"] = (lambda size: fp32_c, torch.float32, False)
        variants["torch.compile bf16"] = (lambda size: bf16_c, torch.bfloat16, False)
    if aot:
        variants["AOTI package fp32"] = (lazy(lambda: aoti(copy_net(net, "cpu", torch.float32))), torch.float32, False)
        variants["AOTI package bf16"] = (lazy(lambda: aoti(copy_net(net, "cpu", torch.bfloat16))), torch.float32, False)
    return variants


def cuda_variants(net: TransformerNet, compile: bool = False, aot: bool = False) -> dict[str, tuple[Callable[[tuple[int, int]], Run], torch.dtype, bool]]:
    def copy(dtype: torch.dtype, channels_last: bool = False) -> TransformerNet:
        return copy_net(net, "cuda", dtype, channels_last)

    fp32, fp16, bf16, fp16_cl = copy(torch.float32), copy(torch.float16), copy(torch.bfloat16), copy(torch.float16, True)
    script = lazy(lambda: torchscript(copy(torch.float16)))
    graphs: dict[tuple[int, int], Run] = {}

    def graphed(size: tuple[int, int]) -> Run:
        if size not in graphs:
            w, h = size
            x = torch.rand(1, 3, h, w, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
            graphs[size] = cuda_graph(fp16_cl, x)
        return graphs[size]

    variants = {
        "eager fp32 (TF32)": (lambda size: fp32, torch.float32, False),
        "eager fp16": (lambda size: fp16, torch.float16, False),
        "eager bf16": (lambda size: bf16, torch.bfloat16, False),
        "TorchScript fp16": (script, torch.float16, False),
        "fp16 channels-last": (lambda size: fp16_cl, torch.float16, True),
        "fp16 channels-last + CUDA graph": (graphed, torch.float16, True),
    }
    if compile:  # one compilation per shape (dynamic=False), paid in the warm-up, not timed
        compiled = torch.compile(fp16_cl, dynamic=False)
        variants["torch.compile fp16 channels-last"] = (lambda size: compiled, torch.float16, True)
    if aot:
        variants["AOTI package fp16"] = (lazy(lambda: aoti(copy(torch.float16))), torch.float32, False)
        variants["AOTI package fp16 channels-last"] = (lazy(lambda: aoti(copy(torch.float16, True), True)), torch.float32, False)
    return variants


def package_variant(path: Path, device: str) -> tuple[Callable[[tuple[int, int]], Run], torch.dtype, bool]:
    """An existing `fst export --format aoti` file (its weights do not change its speed). Naming it
    with --package is the trust: fst's checks run first (device, CPU, torch version, digest)."""
    return lazy(lambda: load_compiled(path, device, trusted=True)[0]), torch.float32, False


def bench(device: str, quick: bool, compile: bool = False, aot: bool = False, batches: tuple[int, ...] = (1,),
          only: list[str] | None = None, package: Path | None = None) -> list[dict]:
    torch.manual_seed(0)
    net = TransformerNet().eval()  # default size, random weights
    results = []
    make = cpu_variants(net, compile, aot) if device == "cpu" else cuda_variants(net, compile, aot)
    if package is not None:
        make[f"AOTI package {package.name}"] = package_variant(package, device)
    if only:
        make = {k: v for k, v in make.items() if k in only or (package is not None and k.endswith(package.name))}
    cells = [(batch, name, spec, size) for batch in batches for name, spec in make.items() for size in SIZES]
    for batch, name, (runner, dtype, channels_last), (w, h) in cells:
        row = {"device": device, "variant": name, "width": w, "height": h, "batch": batch}
        try:
            x = torch.rand(batch, 3, h, w, device=device, dtype=dtype)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                run = runner((w, h))
                if device == "cpu":
                    times = cpu_time(run, x, reps=2 if quick else 5, budget_s=20 if quick else 60)
                else:
                    times = cuda_time(run, x, reps=20 if quick else 100, warmup=5 if quick else 20)
            row.update(ms=statistics.median(times), min_ms=min(times), reps=len(times))
        except Exception as e:  # keep going: the other cells are still worth having
            row["error"] = f"{type(e).__name__}: {first_line(e)[:120]}"
        results.append(row)
        print(f"  {device} b{batch} {name:<34} {w}x{h}: {row.get('ms', row.get('error'))}", file=sys.stderr, flush=True)
    return results


def machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    model = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = "" if START_LOAD is None else f", load average {START_LOAD:.1f} at the start"
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads{load}"


def table(results: list[dict], device: str, batch: int) -> str:
    """ms per pass at each size; for batch > 1 also images/s at 1080p."""
    rows = [r for r in results if r["device"] == device and r["batch"] == batch]
    sizes = [f"{w}x{h}" for w, h in SIZES]
    extra = " 1920x1080 images/s |" if batch > 1 else ""
    lines = [f"| {device} variant, batch {batch} | " + " | ".join(f"{s} ms" for s in sizes) + f" |{extra}",
             "|---|" + "---:|" * (len(sizes) + bool(extra))]
    for name in dict.fromkeys(r["variant"] for r in rows):
        cells = []
        for w, h in SIZES:
            r = next(r for r in rows if r["variant"] == name and (r["width"], r["height"]) == (w, h))
            cells.append(f"{r['ms']:.1f}" if "ms" in r else "error")
        if extra:
            cells.append(f"{batch * 1000 / float(cells[-1]):.0f}" if cells[-1] != "error" else "error")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    errors = [f"- {r['variant']} {r['width']}x{r['height']}: {r['error']}" for r in rows if "error" in r]
    return "\n".join(lines + ([""] + errors if errors else []))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CPU, plus CUDA when present")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (CPU: 2 per size)")
    p.add_argument("--json", type=Path, default=None, help="write all results here")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (compiles per shape in the untimed warm-up: minutes on a small CPU)")
    p.add_argument("--aoti", action="store_true", help="also time the AOTInductor package (one compile per variant, about a minute each)")
    p.add_argument("--package", type=Path, default=None, help="also time this `fst export --format aoti` file (no compile"
                   " here); it is machine code and runs, so name only a package you trust")
    p.add_argument("--batch", default="1", help="images per pass, or several: 1,8 (ms are per pass)")
    p.add_argument("--only", nargs="*", help="time only these variants (and --package)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_infer: --device cuda but no CUDA device", file=sys.stderr)
        return 2
    batches = tuple(int(b) for b in args.batch.split(","))
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else ["cpu" if args.device == "auto" else args.device]
    torch.backends.cudnn.benchmark = True
    if "cpu" in devices:
        keep_freed_memory()  # as `fst stylize` runs on a CPU
    results: list[dict] = []
    for device in devices:
        results += bench(device, args.quick, args.compile, args.aoti, batches, args.only, args.package)
    date = dt.date.today().isoformat()
    print(f"torch {torch.__version__}, {date}, default TransformerNet (c=32, R=5, random weights){', --quick' if args.quick else ''}\n")
    for device in devices:
        print(f"**{machine(device)}**\n")
        for batch in batches:
            print(f"{table(results, device, batch)}\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "date": date, "quick": args.quick, "machines": {d: machine(d) for d in devices}}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
