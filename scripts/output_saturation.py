#!/usr/bin/env python
"""Where a trained model's output sits on the flat of its sigmoid: the blob diagnosis.

For each checkpoint, runs the photos through the network with a hook on its last conv (the logits
the sigmoid reads) and prints the percentage of pixels with some logit |z| > 4 (the sigmoid's slope
there is below 7% of its peak: little gradient reaches them), the clipped pixels (some channel at
0-2 or 253-255 in 8 bits) and how many of those are saturated, and the largest |z|. For a linear
output the "logit" is the unclamped value in 0-255 units, rescaled to 0-1.

    python scripts/output_saturation.py runs/a/checkpoints/last.ckpt ... --photos DIR --count 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fst.artefacts.checkpoint import transformer_from_checkpoint  # noqa: E402
from fst.core.errors import FstError  # noqa: E402
from fst.data.photos import square_photos  # noqa: E402
from fst.metrics.features import clipped_percent  # noqa: E402
from fst.models.transformer import PIXEL_SCALE  # noqa: E402
from fst.study.evaluate import photo_paths  # noqa: E402

FLAT = 4.0  # sigmoid'(4) = 0.018, 7% of sigmoid'(0) = 0.25


@torch.no_grad()
def saturation(ckpt: Path, photos: torch.Tensor) -> str:
    net, meta = transformer_from_checkpoint(ckpt)
    logits: list[torch.Tensor] = []
    hook = net.conv_out.register_forward_hook(lambda m, i, o: logits.append(o))
    y = torch.cat([net(chunk) for chunk in photos.split(4)])
    hook.remove()
    z = torch.cat(logits)
    if meta["net"].get("output", "sigmoid") == "linear":
        z = z / PIXEL_SCALE  # the unclamped output in [0, 1] units: "saturated" = outside [0, 1]
        flat = (z < 0) | (z > 1)
    else:
        flat = z.abs() > FLAT
    sat = flat.any(1)
    clipped = ((y * 255).round() <= 2).any(1) | ((y * 255).round() >= 253).any(1)
    share = 100 * (sat & clipped).sum().item() / max(clipped.sum().item(), 1)
    return (f"{ckpt}: output {meta['net'].get('output', 'sigmoid')}; saturated pixels {100 * sat.float().mean():.2f}%; "
            f"clipped {clipped_percent(y).mean():.2f}%, of which saturated {share:.0f}%; max |z| {z.abs().max():.1f}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="output_saturation", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--photos", type=Path, help="folder of photos (default: a fixed handful of the embedded ones)")
    p.add_argument("--count", type=int, default=20, help="photos used (default 20)")
    p.add_argument("--size", type=int, default=256, help="centre-cropped square side (default 256)")
    args = p.parse_args(argv)
    try:
        photos = square_photos(photo_paths(args.photos, args.count), args.size)
        for ckpt in args.checkpoints:
            print(saturation(ckpt, photos))
    except FstError as e:
        print(f"output_saturation: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
