#!/usr/bin/env python
"""int8 ONNX (`fst export --quantize int8`) against fp32 and fst's default path on the CPU: speed,
memory and quality, for one trained per-painting checkpoint.

    python scripts/bench_int8.py runs/quickstart/checkpoints/last.ckpt --out out/int8
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python scripts/bench_int8.py CKPT --out out/int8_avx2 --skip-quality

1. Exports CKPT as fp32 ONNX and int8 ONNX (default calibration photos) into --out.
2. Forward at --size (default 1920x1080), median of --reps after one warm-up, each in its own process:
   `fst stylize`'s pass for the checkpoint (dtype auto: bf16 where native), for the fp32 .onnx (fst's
   network, fp32) and for the int8 .onnx (onnxruntime, fst's graph with the file's int8 numbers), and
   the fp32 .onnx file in onnxruntime as its users would run it.
3. Whole process: `fst stylize` of a --size photo, each model, wall seconds and peak RSS (/usr/bin/time).
4. Quality on fst compare's default evaluation photos (held out from calibration), long side
   --eval-size: fst compare's metrics (style distances, content, colour vs painting) for int8, fp32 and
   bf16, and int8's and bf16's pixel difference from fp32; a side-by-side crop PNG.
Prints Markdown; --json writes every number.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from fst.artefacts.export import export_model  # noqa: E402
from fst.assets import resolve_style_path, sample_photos_dir  # noqa: E402
from fst.stylize.stylizer import Stylizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
START_LOAD = os.getloadavg()[0]


def photo(name: str, size: tuple[int, int] | None = None, long_side: int | None = None) -> torch.Tensor:
    img = Image.open(sample_photos_dir() / f"{name}.jpg").convert("RGB")
    if long_side:
        img.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    if size:
        img = img.resize(size, Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255


def forward(models: dict[str, Path], size: tuple[int, int], reps: int) -> dict[str, dict[str, float]]:
    """Each variant in a child process of its own: its peak memory is its own, and one variant's
    kept memory (fst keeps freed blocks for reuse on the CPU) is not the next one's."""
    out = {}
    for name, path in [*models.items(), ("onnxruntime on the fp32 .onnx file", models["fp32 .onnx"])]:
        cmd = [sys.executable, __file__, "--forward-one", str(path), "--size", f"{size[0]}x{size[1]}", "--reps", str(reps)]
        if name.startswith("onnxruntime"):
            cmd.append("--onnxruntime")
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"{name}: {p.stderr[-2000:]}")
        out[name] = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"  forward {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


def forward_one(path: Path, size: tuple[int, int], reps: int, onnxruntime: bool) -> None:
    """One variant's median seconds a pass after a warm-up, and this process's peak RSS (GB), as JSON."""
    import resource

    x = photo("alpaca", size)
    if onnxruntime:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run, what = (lambda t: session.run(None, {"image": t.numpy()})[0]), "fp32, the file's graph"
    else:
        run = Stylizer(path, "cpu")
        what = f"{run.dtype}{', int8 in onnxruntime' if run.meta.get('quantize') else ''}"
    times = []
    with torch.inference_mode():
        for _ in range(reps + 1):
            t = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(json.dumps({"seconds": statistics.median(times[1:]), "first_s": times[0], "runs": what, "peak_rss_gb": peak}))


def whole_process(models: dict[str, Path], size: tuple[int, int], out: Path) -> dict[str, dict[str, float]]:
    src = out / f"photo_{size[0]}x{size[1]}.png"
    Image.fromarray((photo("alpaca", size)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(src)
    res = {}
    for name, path in models.items():
        dst = out / f"stylized_{re.sub(r'[^a-z0-9]+', '_', name)}.png"
        cmd = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "fst.cli", "stylize", str(src), "--model", str(path),
               "--out", str(dst), "--device", "cpu"]
        dst.unlink(missing_ok=True)
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"{name}: {p.stderr[-2000:]}")
        wall, rss = p.stderr.strip().splitlines()[-1].split()
        res[name] = {"seconds": float(wall), "peak_rss_gb": int(rss) / 1e6}
        print(f"  whole process {name}: {res[name]}", file=sys.stderr, flush=True)
    return res


def quality(models: dict[str, Path], eval_size: int, out: Path) -> dict[str, dict[str, float]]:
    from fst.metrics.features import OTHER_ARCH, FeatureMetrics
    from fst.study.evaluate import DEFAULT_EVAL_PHOTOS, score
    from fst.training.module import load_style

    metrics = FeatureMetrics(OTHER_ARCH["vgg16"])
    painting = load_style(resolve_style_path("sample:starry_night"), 256)
    target = metrics.target(painting)
    ys: dict[str, list[torch.Tensor]] = {}
    xs = [photo(n, long_side=eval_size) for n in DEFAULT_EVAL_PHOTOS]
    for name, path in models.items():
        s = Stylizer(path, "cpu")
        ys[name] = [s(x).clamp(0, 1) for x in xs]
    res = {}
    for name, y in ys.items():
        scores = [score(yi, xi, painting, metrics, target) for yi, xi in zip(y, xs)]
        row = {k: statistics.mean(s[k] for s in scores) for k in ("style_gram", "style_mean_std", "style_sliced_wasserstein",
                                                                   "content", "color_vs_painting", "ssim")}
        diffs = [((a - b) * 255).abs() for a, b in zip(y, ys["fp32 .onnx"])]
        row["mean_abs_vs_fp32_levels"] = statistics.mean(float(d.mean()) for d in diffs)
        row["p99_abs_vs_fp32_levels"] = statistics.mean(float(d.flatten().quantile(0.99)) for d in diffs)
        res[name] = row
    side_by_side(xs[0], {k: v[0] for k, v in ys.items()}, out / "int8_side_by_side.png")
    return res


def side_by_side(x: torch.Tensor, ys: dict[str, torch.Tensor], dst: Path, crop: int = 256) -> None:
    """A 1:1 crop from the middle of photo, fp32, int8 and bf16, left to right."""
    h, w = x.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    tiles = [x] + [ys[k] for k in ("fp32 .onnx", "int8 .onnx", "checkpoint")]
    strip = torch.cat([t[0, :, top:top + crop, left:left + crop] for t in tiles], 2)
    Image.fromarray((strip.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(dst)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, nargs="?")
    p.add_argument("--out", type=Path)
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--eval-size", type=int, default=512)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--json", type=Path)
    p.add_argument("--forward-one", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--onnxruntime", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.forward_one:
        forward_one(args.forward_one, size, args.reps, args.onnxruntime)
        return 0
    if args.checkpoint is None or args.out is None:
        p.error("CHECKPOINT and --out are required")
    args.out.mkdir(parents=True, exist_ok=True)
    fp32, int8 = args.out / "model_fp32.onnx", args.out / "model_int8.onnx"
    t = time.perf_counter()
    export_model(args.checkpoint, fp32)
    export_model(args.checkpoint, int8, quantize="int8")
    export_s = time.perf_counter() - t
    models = {"checkpoint": args.checkpoint, "fp32 .onnx": fp32, "int8 .onnx": int8}
    result = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "load_at_start": START_LOAD,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
              "env": {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if k in os.environ},
              "sizes_mb": {k: v.stat().st_size / 1e6 for k, v in models.items()}, "export_both_s": export_s}
    result["forward_s"] = forward(models, size, args.reps)
    result["whole_process"] = whole_process(models, size, args.out)
    if not args.skip_quality:
        result["quality"] = quality(models, args.eval_size, args.out)
    result["load_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
