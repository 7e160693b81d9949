#!/usr/bin/env python
"""Forward+backward time of each style loss on real VGG16 activations (relu1_2..relu4_3).

Batch 4 of 256² crops of the sample photos against the starry_night statistics; the VGG forward is
done once outside the timing, so the figures are the loss alone. Prints a Markdown table.

    python scripts/bench_losses.py [--device cpu|cuda] [--repeats 5] [--size 256] [--batch 4]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch
import torchvision.transforms.functional as TF

from fst import losses
from fst.assets import resolve_style_path, sample_photos_dir
from fst.io.images import open_rgb
from fst.losses.criterion import flat
from fst.models.vgg import DEFAULT_LAYERS, VGGFeatures
from fst.training.module import load_style


def machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch {torch.__version__})"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args()
    dev = args.device
    layers = DEFAULT_LAYERS["vgg16"]
    vgg = VGGFeatures("vgg16", layers).to(dev)
    photos = sorted(sample_photos_dir().glob("*.jpg"))[: args.batch]
    x = torch.stack([TF.to_tensor(TF.center_crop(TF.resize(open_rgb(p), args.size), args.size)) for p in photos]).to(dev)
    with torch.no_grad():
        feats = {k: flat(v) for k, v in vgg(x).items()}
        style = {k: flat(v)[0] for k, v in vgg(load_style(resolve_style_path("sample:starry_night"), 512).to(dev)).items()}
    rows = []
    for name, loss in ((n, losses.get(n)) for n in losses.list_losses()):
        targets = {k: loss.stats(style[k]) for k in layers}
        times = []
        for i in range(args.repeats + 1):
            inputs = {k: v.clone().requires_grad_(True) for k, v in feats.items()}
            sync(dev)
            t = time.perf_counter()
            total = sum(loss(inputs[k], targets[k]).mean() for k in layers)
            total.backward()
            sync(dev)
            if i:  # first call warms up caches/kernels
                times.append(time.perf_counter() - t)
        rows.append((name, loss.family, loss.cost, sorted(times)[len(times) // 2] * 1e3))
    gram_ms = next(ms for n, _, _, ms in rows if n == "gram")
    print(f"Style-loss forward+backward, VGG16 {', '.join(layers)}, batch {args.batch}, {args.size}², "
          f"median of {args.repeats}; {machine(dev)}; {datetime.date.today()}\n")
    print("| loss | family | cost | ms | × gram |\n|---|---|---|---:|---:|")
    for name, fam, cost, ms in rows:
        print(f"| {name} | {fam} | {cost} | {ms:.1f} | {ms / gram_ms:.2f} |")


if __name__ == "__main__":
    main()
