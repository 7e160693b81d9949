"""The speed-quality curve of per-painting networks of different sizes and kinds (``model.net``,
``model.channels``, ``model.n_residual``), each a checkpoint trained on the same painting and recipe.

    python scripts/bench_nets.py --model johnson_c32_r5=runs/a/checkpoints/last.ckpt mobile_c32_r5=... \\
        --painting sample:starry_night --photos P1.jpg ... --out DIR

For each network:
- quality: `fst compare`'s judge (fst.study.evaluate.score: style distances on the VGG none was trained
  with, content distance; style vs photo = geometric mean over the style statistics of the output's
  distance over the photo's own, 1 = no style) over --photos, centre-cropped to --eval-size;
- the forward alone at 1920x1080 in this process (eager CPU inference in the dtype `fst stylize`
  picks here, after one warm-up pass; median of --repeats);
- a whole `fst stylize` of a 1920x1080 photo in its own process (interpreter, imports, model load,
  decode, forward, encode; `--compile no`, so each run is the same eager pass): wall seconds, median of
  --repeats, and its peak memory (ru_maxrss from wait4);
- one picture strip: the first photo, then each network's output (--strip).
Writes DIR/nets.json and prints a Markdown table (with the load average, read before the timings).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from fst.artefacts.checkpoint import transformer_from_checkpoint  # noqa: E402
from fst.assets import resolve_style_path  # noqa: E402
from fst.core.host_memory import keep_freed_memory  # noqa: E402
from fst.data.photos import square_photos  # noqa: E402
from fst.metrics.features import OTHER_ARCH, FeatureMetrics  # noqa: E402
from fst.models.transformer import TransformerNet, count_parameters  # noqa: E402
from fst.study.evaluate import score, style_vs_photo, stylize  # noqa: E402
from fst.training.style_image import load_style  # noqa: E402


def whole_process(model: Path, photo: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, peak MB) of one `fst stylize` in its own process."""
    cmd = [sys.executable, "-m", "fst.cli", "stylize", str(photo), "--model", str(model), "--out", str(out),
           "--compile", "no", "--quiet"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return seconds, usage.ru_maxrss / 1024


def cpu_dtype() -> torch.dtype:
    """What `fst stylize --dtype auto` runs on this CPU: bf16 where it is native, else fp32."""
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.bfloat16 if native else torch.float32


@torch.no_grad()
def forward_seconds(net: torch.nn.Module, repeats: int, dtype: torch.dtype) -> float:
    net = net.to(dtype)
    x = torch.rand(1, 3, 1080, 1920, dtype=dtype)
    net(x)  # warm-up: oneDNN picks its kernels, the allocator grows
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", required=True, help="NAME=CHECKPOINT, in the table's order")
    p.add_argument("--speed-only", nargs="*", default=[], metavar="NAME=NET,C,R",
                   help="untrained networks timed (forward alone; speed does not depend on weights), not scored")
    p.add_argument("--painting", required=True, help="the painting every network was trained on")
    p.add_argument("--photos", nargs="+", type=Path, required=True)
    p.add_argument("--photo-1080", type=Path, required=True, help="a 1920x1080 photo for the whole-process timing")
    p.add_argument("--eval-size", type=int, default=256)
    p.add_argument("--style-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--strip", type=int, default=320, help="picture strip: each image's long side, px")
    p.add_argument("--skip", choices=["none", "quality", "speed"], default="none",
                   help="leave out the scores (speed does not depend on the weights: time any checkpoint of the "
                        "network) or the timings")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    keep_freed_memory()
    models = dict(m.split("=", 1) for m in args.model)
    load = os.getloadavg()
    metrics = FeatureMetrics(OTHER_ARCH["vgg16"])
    painting = load_style(resolve_style_path(args.painting), args.style_size)
    target = metrics.target(painting)
    photos = square_photos(args.photos, args.eval_size)
    photo_row = score(photos, photos, painting, metrics, target)
    first = Image.open(args.photos[0]).convert("RGB")
    first.thumbnail((args.strip, args.strip))
    strip = [first]
    rows = []
    for name, path in models.items():
        net, meta = transformer_from_checkpoint(path)
        net.cpu_fast = True
        rows.append({"name": name, "net": meta["net"], "global_step": meta["global_step"], "params": count_parameters(net)})
        if args.skip != "quality":
            row = score(stylize(net, photos, "cpu"), photos, painting, metrics, target)
            with torch.no_grad():
                x = torch.from_numpy(np.array(first)).permute(2, 0, 1)[None].float() / 255
                y = net(x)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
            strip.append(Image.fromarray(y))
            rows[-1].update({"style_vs_photo": style_vs_photo(row, photo_row), "content": row["content"],
                             "style_gram": row["style_gram"], "ssim": row["ssim"]})
        if args.skip != "speed":
            dtype = cpu_dtype()
            fwd = forward_seconds(net, args.repeats, dtype)
            runs = [whole_process(Path(path), args.photo_1080, args.out / f"{name}_1080.jpg") for _ in range(args.repeats)]
            rows[-1].update({"forward_s": fwd, "forward_dtype": str(dtype).removeprefix("torch."),
                             "process_s": statistics.median(s for s, _ in runs), "peak_mb": max(m for _, m in runs)})
        print(json.dumps(rows[-1]), flush=True)
    for spec in args.speed_only:
        name, kind = spec.split("=", 1)
        net_kind, c, r = kind.split(",")
        net = TransformerNet(int(c), int(r), net=net_kind).eval()
        rows.append({"name": name, "net": net.config, "params": count_parameters(net),
                     "forward_s": forward_seconds(net, args.repeats, cpu_dtype()), "forward_dtype": str(cpu_dtype()).removeprefix("torch.")})
        print(json.dumps(rows[-1]), flush=True)
    w = sum(im.width for im in strip) + 4 * (len(strip) - 1)
    sheet = Image.new("RGB", (w, max(im.height for im in strip)), "white")
    x0 = 0
    for im in strip:
        sheet.paste(im, (x0, 0))
        x0 += im.width + 4
    sheet.save(args.out / "strip.jpg", quality=85)
    report = {"loadavg_before": load, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "photos": [p.name for p in args.photos], "painting": args.painting, "rows": rows,
              "loadavg_after": os.getloadavg()}
    (args.out / "nets.json").write_text(json.dumps(report, indent=1))
    print(f"\nload average before {load[0]:.2f}, after {report['loadavg_after'][0]:.2f}; torch {torch.__version__}")
    print("| network | params | style vs photo | content | forward 1080p (s) | `fst stylize` 1080p (s) | peak MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        scored = f"{r['style_vs_photo']:.3f} | {r['content']:.3f}" if "content" in r else "(not scored) | "
        timed = (f"{r['forward_s']:.2f} ({r['forward_dtype']}) | " + (f"{r['process_s']:.1f} | {r['peak_mb']:.0f}" if "process_s" in r else "| ")
                 if "forward_s" in r else "| | ")
        print(f"| {r['name']} | {r['params'] / 1e6:.2f} M | {scored} | {timed} |")


if __name__ == "__main__":
    main()
