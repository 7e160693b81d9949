#!/usr/bin/env python
"""Quality of networks fine-tuned from the universal network, step by step, against per-painting ones:
fst compare's metrics (fst/study/evaluate.py: style distances on the VGG the networks were not trained
with, style vs photo, content, SSIM) of each model on the same evaluation photos.

    python scripts/finetune_steps.py --style sample:starry_night \\
        universal=sample:universal ft25=runs/ft/checkpoints/step0000025.ckpt scratch400=runs/quickstart/checkpoints/last.ckpt

Each model is LABEL=PATH: a per-painting checkpoint, a network fine-tuned from a universal one, or a
universal network (given --style at fst stylize's default style size). The painting's statistics the
metrics compare with are taken at --style-size (the quickstart's 256). Prints a Markdown table naming
the machine and date. Labels NAME#SEED (runs of one recipe with different seeds) also get a row
NAME: the mean, and the spread (max - min) of each metric. --grid OUT.png writes the painting, the
photos and each model's outputs side by side, to look at.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from fst.artefacts.universal_checkpoint import bound_styles, is_universal, load_model_checkpoint  # noqa: E402
from fst.assets import resolve_model_path, resolve_style_path  # noqa: E402
from fst.data.photos import square_photos  # noqa: E402
from fst.io.files import writing  # noqa: E402
from fst.metrics.features import FeatureMetrics  # noqa: E402
from fst.study.evaluate import photo_paths, score, style_vs_photo  # noqa: E402
from fst.study.report import grid, to_pil  # noqa: E402
from fst.stylize.stylizer import Stylizer  # noqa: E402
from fst.training.style_image import load_style  # noqa: E402

COLUMNS = ("style_gram", "style_mean_std", "style_sliced_wasserstein", "style_vs_photo", "content", "ssim")


def stylizer(path: str, style: Path) -> Stylizer:
    """fp32 on the CPU; a universal network without bound statistics gets the painting."""
    ckpt = load_model_checkpoint(resolve_model_path(path))
    paintings = [style] if is_universal(ckpt["fst"]) and bound_styles(ckpt) is None else None
    return Stylizer(path, device="cpu", dtype="fp32", style_images=paintings)


def seed_groups(rows: list[tuple[str, dict]]) -> list[tuple[str, dict, dict, int]]:
    """(NAME, mean, spread = max - min, runs) of the rows labelled NAME#SEED, per NAME in order."""
    groups: dict[str, list[dict]] = {}
    for label, row in rows:
        if "#" in label:
            groups.setdefault(label.split("#", 1)[0], []).append(row)
    return [(name, {k: sum(r[k] for r in rs) / len(rs) for k in COLUMNS},
             {k: max(r[k] for r in rs) - min(r[k] for r in rs) for k in COLUMNS}, len(rs))
            for name, rs in groups.items()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="LABEL=PATH")
    p.add_argument("--style", default="sample:starry_night")
    p.add_argument("--style-size", type=int, default=256)
    p.add_argument("--eval-size", type=int, default=256)
    p.add_argument("--eval-count", type=int, default=4)
    p.add_argument("--grid", type=Path, help="write a PNG of the painting, the photos and every model's outputs")
    args = p.parse_args()
    torch.manual_seed(0)
    style = resolve_style_path(args.style)
    photos = square_photos(photo_paths(None, args.eval_count), args.eval_size)
    painting = load_style(style, args.style_size)
    metrics = FeatureMetrics("vgg19")
    target = metrics.target(painting)
    base = score(photos, photos, painting, metrics, target)
    rows = [("photo", base)]
    columns = []
    for label, path in (m.split("=", 1) for m in args.models):
        with torch.no_grad():
            y = stylizer(path, style).full(photos).clamp(0, 1)
        columns.append((label, [to_pil(t) for t in y]))
        row = score(y, photos, painting, metrics, target)
        row["style_vs_photo"] = style_vs_photo(row, base)
        rows.append((label, row))
        print(label, {k: round(row[k], 4) for k in COLUMNS}, file=sys.stderr, flush=True)
    base["style_vs_photo"] = 1.0
    print(f"{platform.node()} ({platform.processor() or platform.machine()}), {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"painting {style.stem} at {args.style_size} px, {args.eval_count} photos at {args.eval_size}² (VGG19 metrics)\n")
    print("| model | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for label, row in rows:
        print(f"| {label} | " + " | ".join(f"{row[k]:.4g}" for k in COLUMNS) + " |")
    for name, mean, spread, n in seed_groups(rows):
        print(f"| {name} (mean of {n} seeds ± spread) | " + " | ".join(f"{mean[k]:.4g} ± {spread[k]:.2g}" for k in COLUMNS) + " |")
    if args.grid:
        picture = grid(to_pil(painting[0]), f"{style.stem}: photos and each model's outputs",
                       [to_pil(t) for t in photos], columns, args.eval_size)
        with writing(args.grid) as tmp:
            picture.save(tmp, "PNG")


if __name__ == "__main__":
    main()
