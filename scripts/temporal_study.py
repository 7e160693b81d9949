"""The `--temporal` lever measured (docs/video.md): a network's frames of a clip, blended at several
weights W by `fst.stylize.temporal_blend` (exactly what `fst stylize --temporal W` writes, before
the encoder), each scored for flicker under two independent flows (DIS, which the lever itself uses,
and Farnebäck) and for style against the same frames without the lever.

    python scripts/temporal_study.py --json runs/temporal_study.json
    python scripts/temporal_study.py --model runs/x/last.ckpt --paintings none --json ...   # a per-painting net

Style: `style_vs_photo` of every 8th frame (the VGG the universal network was not built on, as `fst
compare` scores), for the input frames (1 by definition), the network alone, and each W.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fst.assets import resolve_style_path
from fst.io.clips import read_frames
from fst.metrics.features import OTHER_ARCH, FeatureMetrics
from fst.stylize.image import Options
from fst.stylize.styles import style_choices
from fst.stylize.stylizer import Stylizer
from fst.stylize.temporal_blend import ClipBlend
from fst.stylize.video import BATCH, stylize_batch
from fst.study.evaluate import score, style_vs_photo
from fst.study.flicker import as_tensor, motion_clip
from fst.study.sample_clips import resolve_clip
from fst.training.module import load_style

PAINTINGS = ("starry_night", "the_scream", "great_wave", "composition_vii")
EVERY = 8  # frames scored for style


def styled_frames(stylizer: Stylizer, frames: np.ndarray) -> np.ndarray:
    weights = style_choices(stylizer.style_names, None, None)[0][1]
    return np.concatenate([stylize_batch(stylizer, list(frames[i:i + BATCH]), weights, Options())
                           for i in range(0, len(frames), BATCH)])


def blended(frames: np.ndarray, styled: np.ndarray, weight: float) -> tuple[np.ndarray, float]:
    """The lever's output for every frame, and its cost in ms per frame (flow and blend)."""
    lever = ClipBlend(weight, 1)
    t = time.perf_counter()
    out = np.concatenate([lever(list(frames[i:i + BATCH]), [styled[i:i + BATCH]])[0]
                          for i in range(0, len(frames), BATCH)])
    return out, (time.perf_counter() - t) * 1e3 / len(frames)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sample:universal")
    p.add_argument("--paintings", nargs="+", default=list(PAINTINGS), help="'none' for a per-painting network")
    p.add_argument("--transforms", nargs="+", default=["intra", "inter"])
    p.add_argument("--clips", nargs="+", default=["sample:bikes", "sample:bigbuckbunny"])
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--weights", nargs="+", type=float, default=[0.5, 0.7, 0.8, 0.9])
    p.add_argument("--style-size", type=int, default=256, help="painting size for the style score")
    p.add_argument("--save", type=Path, help="folder to keep each clip's frames (.npy) for pictures")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)  # on the loaded 2-core machine, two threads stalled each of the lever's small ops
    torch.manual_seed(0)
    metrics = FeatureMetrics(OTHER_ARCH["vgg16"])
    clips = {}
    for spec in args.clips:
        frames = read_frames(resolve_clip(spec), args.frames, args.size)
        x = as_tensor(frames)
        clips[spec] = (frames, {m: motion_clip(spec, x, m) for m in ("dis", "farneback")})
        print(spec, frames.shape, {m: f"{c.input_error:.3g} ({int(c.keep.sum())}/{c.keep.numel()} pairs)"
                                   for m, c in clips[spec][1].items()}, flush=True)
    rows = []
    paintings = [None] if args.paintings == ["none"] else args.paintings
    for painting in paintings:
        target, art = None, None
        if painting:
            art = load_style(resolve_style_path(f"sample:{painting}"), args.style_size)
            target = metrics.target(art)
        for transform in (args.transforms if painting else [None]):
            stylizer = Stylizer(args.model, "cpu", "auto",
                                style_images=[resolve_style_path(f"sample:{painting}")] if painting else None,
                                transform=transform)
            for spec, (frames, evals) in clips.items():
                t = time.perf_counter()
                styled = styled_frames(stylizer, frames)
                net_ms = (time.perf_counter() - t) * 1e3 / len(frames)
                x = as_tensor(frames[::EVERY])
                base = score(x, x, art, metrics, target) if target else None
                for w in [0.0, *args.weights]:
                    out, ms = blended(frames, styled, w) if w else (styled, 0.0)
                    y = as_tensor(out)
                    row = {"painting": painting or args.model, "transform": transform, "clip": spec, "W": w,
                           "flicker_dis": evals["dis"].ratio(y), "flicker_farneback": evals["farneback"].ratio(y),
                           "lever_ms_per_frame": ms, "net_ms_per_frame": net_ms}
                    if target:
                        row["style_vs_photo"] = style_vs_photo(score(y[::EVERY], x, art, metrics, target), base)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if args.save:
                        args.save.mkdir(parents=True, exist_ok=True)
                        name = f"{painting}_{transform}_{Path(spec).name.removeprefix('sample:')}_W{w:g}.npy"
                        np.save(args.save / name, out)
                if args.save:
                    np.save(args.save / f"input_{spec.removeprefix('sample:')}.npy", frames)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
