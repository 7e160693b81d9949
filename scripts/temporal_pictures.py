"""Strips of the `--temporal` lever where things move fast and where they appear (docs/video.md), from
the frames `scripts/temporal_study.py --save DIR` kept.

    python scripts/temporal_pictures.py --frames DIR --painting starry_night_intra --clip bikes \
        --weights 0 0.7 0.85 --out docs/images/temporal_strip.jpg

Rows: the input, then the network alone (W 0) and each W; columns: 6 consecutive frames of a
128×96 window. First block: the window and frames of the fastest motion (DIS, input frames);
second block: the frames around the pair where the fewest pixels pass the forward-backward check
(a cut, or what enters the picture).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from fst.metrics.flow import MIN_MATCHED, clip_motion, estimate
from fst.study.flicker import as_tensor

WIDTH, HEIGHT, COLUMNS = 128, 96, 6


def fastest(x: torch.Tensor, masks: torch.Tensor) -> tuple[int, int, int]:
    """(first frame, top, left) of the window and frames of the fastest motion that is followed
    (pairs across a cut and occluded pixels left out)."""
    followed = masks.flatten(1).float().mean(1) >= MIN_MATCHED
    speed = torch.stack([estimate(x[i], x[i + 1]).norm(dim=0) for i in range(len(x) - 1)])
    speed = speed * masks[:, 0] * followed.view(-1, 1, 1)
    pooled = F.avg_pool2d(speed[:, None], (HEIGHT, WIDTH), stride=8)
    t, _, y, xx = np.unravel_index(int(pooled.argmax()), pooled.shape)
    return int(t), int(y) * 8, int(xx) * 8


def block(rows: list[np.ndarray], t: int, top: int, left: int) -> np.ndarray:
    t = max(0, min(t, len(rows[0]) - COLUMNS))
    top, left = min(top, rows[0].shape[1] - HEIGHT), min(left, rows[0].shape[2] - WIDTH)
    return np.concatenate([np.concatenate([r[k, top:top + HEIGHT, left:left + WIDTH] for k in range(t, t + COLUMNS)], 1)
                           for r in rows], 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=Path, required=True)
    p.add_argument("--painting", default="starry_night_intra")
    p.add_argument("--clip", default="bikes")
    p.add_argument("--weights", nargs="+", default=["0", "0.7", "0.85"])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    inputs = np.load(args.frames / f"input_{args.clip}.npy")
    rows = [inputs, *(np.load(args.frames / f"{args.painting}_{args.clip}_W{w}.npy") for w in args.weights)]
    x = as_tensor(inputs)
    masks = clip_motion(x)[1]
    t, top, left = fastest(x, masks)
    matched = masks.flatten(1).float().mean(1)
    cut = int(matched.argmin())
    blocks = [block(rows, t - 2, top, left), block(rows, cut - 1, top, left)]
    gap = np.full((blocks[0].shape[0], 8, 3), 255, np.uint8)
    img = Image.fromarray(np.concatenate([blocks[0], gap, blocks[1]], 1))
    draw = ImageDraw.Draw(img)
    labels = ["input", *(f"W {w}" if w != "0" else "network" for w in args.weights)]
    for i, label in enumerate(labels):
        draw.text((3, i * HEIGHT + 2), label, fill=(255, 255, 0))
    img.save(args.out, quality=88)
    print(f"fastest: frames {max(0, t - 2)}+, window ({top}, {left}); fewest matched: pair {cut}->{cut + 1} "
          f"({matched[cut]:.0%}); {img.size}")


if __name__ == "__main__":
    main()
