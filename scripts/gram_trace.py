"""Each painting's Gram trace (fst.metrics.gram_trace) on the training VGG's style layers, beside the
flicker its networks measured in a finished `fst compare` study (docs/video.md).

The trace of a layer is set against the photos' (the sample photos the study evaluates on, each at
the same long side), so that layers of different scale count alike: `trace_vs_photos` is the
geometric mean over the layers of tr G(painting) / mean tr G(photo).

    python scripts/gram_trace.py --study runs/video_study_trace --clip bikes
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import torch

from fst.assets import resolve_style_path
from fst.metrics.gram_trace import gram_trace
from fst.models.vgg import DEFAULT_LAYERS, VGGFeatures
from fst.study.evaluate import photo_paths
from fst.training.module import load_style


def traces(vgg: VGGFeatures, image: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        return {name: gram_trace(f).item() for name, f in vgg(image).items()}


def flicker_by_painting(study: Path, clip: str) -> dict[str, dict[str, float]]:
    """{painting stem: {network column: flicker_<clip>}} of the study's runs without the temporal term."""
    found: dict[str, dict[str, float]] = {}
    with open(study / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            value = row.get(f"flicker_{clip}", "")
            if value and row["loss"] != "photo (untrained)" and not float(row.get("temporal_weight") or 0):
                found.setdefault(row["style"], {})[row["loss"]] = float(value)
    return found


def spearman(xs: list[float], ys: list[float]) -> float:
    """Rank correlation (no ties expected among a handful of measured values)."""
    def ranks(v: list[float]) -> list[int]:
        return [sorted(v).index(x) for x in v]
    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    return 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry)) / (n * (n * n - 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--styles", nargs="+", default=["sample:starry_night", "sample:the_scream", "sample:great_wave",
                                                   "sample:composition_vii"])
    p.add_argument("--arch", default="vgg16", help="the training VGG (default vgg16, as the study's)")
    p.add_argument("--size", type=int, default=256, help="painting and photo long side, px (the study's --style-size)")
    p.add_argument("--photos", type=int, default=4, help="sample photos the traces are set against")
    p.add_argument("--study", type=Path, help="a finished `fst compare` folder: its flicker goes beside the trace")
    p.add_argument("--clip", default="bikes", help="whose flicker_<clip> column to read")
    args = p.parse_args()
    vgg = VGGFeatures(args.arch, DEFAULT_LAYERS[args.arch])
    photos = [traces(vgg, load_style(path, args.size)) for path in photo_paths(None, args.photos)]
    photo_mean = {name: sum(t[name] for t in photos) / len(photos) for name in vgg.layers}
    flicker = flicker_by_painting(args.study, args.clip) if args.study else {}
    columns = sorted({c for f in flicker.values() for c in f})
    print(f"| painting | {' | '.join(f'tr G {n}' for n in vgg.layers)} | trace_vs_photos | "
          + "".join(f"flicker_{args.clip} {c} | " for c in columns))
    print("|---|" + "---:|" * (len(vgg.layers) + 1 + len(columns)))
    rows = []
    for style in args.styles:
        stem = resolve_style_path(style).stem
        t = traces(vgg, load_style(resolve_style_path(style), args.size))
        relative = math.exp(sum(math.log(t[n] / photo_mean[n]) for n in vgg.layers) / len(vgg.layers))
        rows.append((relative, flicker.get(stem, {})))
        print(f"| {stem} | {' | '.join(f'{t[n]:.3g}' for n in vgg.layers)} | {relative:.2f} | "
              + "".join(f"{flicker.get(stem, {}).get(c, float('nan')):.2f} | " for c in columns))
    print(f"| (the {len(photos)} photos) | {' | '.join(f'{photo_mean[n]:.3g}' for n in vgg.layers)} | 1 |")
    for c in columns:
        pairs = [(r, f[c]) for r, f in rows if c in f]
        if len(pairs) >= 3:
            print(f"Spearman rank correlation of trace_vs_photos and flicker_{args.clip} ({c}, {len(pairs)} paintings): "
                  f"{spearman(*map(list, zip(*pairs))):.2f}")


if __name__ == "__main__":
    main()
