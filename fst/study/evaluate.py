"""Evaluation for `fst compare`: the photos every model is scored on, each run's outputs, the quality
metrics (`fst.metrics.features`, on the VGG the models were not trained with), the flicker on clips
(`fst.study.flicker`), the time per step of each style
loss alone, and the metrics rows and grids of a whole study."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from fst import losses
from fst.artefacts.checkpoint import transformer_from_checkpoint
from fst.assets import resolve_style_path, sample_photos_dir
from fst.core.errors import FstError
from fst.data.photos import square_photos
from fst.io.images import IMAGE_SUFFIXES, image_files
from fst.losses.criterion import flat
from fst.metrics.features import (
    OTHER_ARCH,
    STYLE_STATS,
    FeatureMetrics,
    clipped_percent,
    color_distance,
    detail,
    off_palette_percent,
    ssim,
)
from fst.models.vgg import DEFAULT_LAYERS, VGGFeatures
from fst.study.flicker import EvalClip, flicker, known_clips, real_clip, reference
from fst.study.report import GRID_ROWS, grid, to_pil
from fst.study.runs import Budget, Run, checkpoint_of
from fst.training.cost_meter import fast_step_ms, sync
from fst.training.module import load_style

# Evaluation photos when none are given: a fixed, varied handful of the embedded photos. The sample
# shards hold all 100 embedded photos, so these were also seen in training (the study compares losses
# with each other, not generalisation).
DEFAULT_EVAL_PHOTOS = ("alpaca", "brandenburg_gate", "butterfly", "chichen_itza",
                       "mont_saint_michel", "cat", "great_wall", "heron")
EVAL_CHUNK = 8  # photos per evaluation forward pass: bounds memory for large evaluation sets


def photo_paths(folder: Path | None, count: int) -> list[Path]:
    """The first `count` images of `folder` (sorted), or the fixed default handful."""
    if folder is None:
        return [sample_photos_dir() / f"{name}.jpg" for name in DEFAULT_EVAL_PHOTOS[:count]]
    if not folder.is_dir():
        raise FstError(f"{folder}: evaluation photo folder not found")
    files = image_files(folder)
    if not files:
        raise FstError(f"{folder}: no photos ({', '.join(IMAGE_SUFFIXES)})")
    return files[:count]


@torch.no_grad()
def stylize(net: torch.nn.Module, photos: torch.Tensor, device: str) -> torch.Tensor:
    """`net` on the (CPU) photos or frames, EVAL_CHUNK at a time on `device`; outputs on the CPU."""
    return torch.cat([net(c.to(device)).float().clamp(0, 1).cpu() for c in photos.split(EVAL_CHUNK)])


def eval_clips(args: argparse.Namespace, photos_at: list[Path]) -> list[EvalClip]:
    """The clips flicker is measured on: a pan and a zoom over the first evaluation photo, then `--clips`."""
    return [*known_clips(photos_at[0], args.eval_size),
            *(real_clip(c, args.clip_frames, args.clip_size, args.clip_skip) for c in args.clips)]


@torch.no_grad()
def score(y: torch.Tensor, x: torch.Tensor, painting: torch.Tensor, metrics: FeatureMetrics,
          target: dict) -> dict[str, float]:
    """Every quality metric of outputs y for photos x (CPU), averaged over the photos; computed on the
    painting's device, EVAL_CHUNK photos at a time."""
    parts = [per_image(yc.to(painting.device), xc.to(painting.device), painting, metrics, target)
             for yc, xc in zip(y.split(EVAL_CHUNK), x.split(EVAL_CHUNK))]
    return {k: torch.cat([p[k] for p in parts]).mean().item() for k in parts[0]}


def per_image(y: torch.Tensor, x: torch.Tensor, painting: torch.Tensor, metrics: FeatureMetrics,
              target: dict) -> dict[str, torch.Tensor]:
    d = dict(metrics.distances(y, x, target))
    d["ssim"] = ssim(y, x)
    d["detail_vs_photo"] = detail(y) / detail(x).clamp_min(1e-8)
    d["detail_vs_painting"] = detail(y) / detail(painting).clamp_min(1e-8)
    d["color_vs_painting"] = color_distance(y, painting)
    d["off_palette_pct"] = off_palette_percent(y, painting)
    d["clipped_pct"] = clipped_percent(y)
    return {k: v.float().cpu() for k, v in d.items()}


def style_vs_photo(row: dict, photo_row: dict) -> float:
    """Geometric mean over the statistics of (style distance / the untrained photo's): 1 = no style
    transferred, 0 = the painting's statistics exactly."""
    logs = [math.log(max(row[f"style_{s}"], 1e-12) / max(photo_row[f"style_{s}"], 1e-12)) for s in STYLE_STATS]
    return math.exp(sum(logs) / len(logs))


def loss_ms(names: list[str], vgg: VGGFeatures, crops: torch.Tensor, painting: torch.Tensor,
            rounds: int = 7) -> dict[str, float]:
    """Each style loss alone, forward + backward over the training layers, on the training network's
    features of one training-sized batch (as scripts/bench_losses.py), in ms: the best of `rounds`
    after a warm-up. The losses take turns within each round, so a burst of load from other jobs on a
    shared machine hits them alike, and the minimum drops what such bursts add."""
    with torch.no_grad():
        feats = {k: flat(v) for k, v in vgg(crops).items()}
        style = {k: flat(v)[0] for k, v in vgg(painting).items()}
    targets = {n: {k: losses.get(n).stats(v) for k, v in style.items()} for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds + 1):
        for n in names:
            inputs = {k: v.clone().requires_grad_(True) for k, v in feats.items()}
            sync(crops.device)
            t = time.perf_counter()
            sum(losses.get(n)(inputs[k], targets[n][k]).mean() for k in vgg.layers).backward()
            sync(crops.device)
            if i:  # the first round warms up caches and kernels
                times[n].append((time.perf_counter() - t) * 1e3)
    return {n: min(t) for n, t in times.items()}


def evaluate_all(runs: list[Run], budget: Budget, args: argparse.Namespace,
                 photos_at: list[Path]) -> tuple[list[dict], dict[str, Image.Image]]:
    """One metrics row per run (plus the untrained photo per painting) and one grid per painting."""
    dev = args.device
    metrics = FeatureMetrics(OTHER_ARCH[budget.arch]).to(dev)
    train_vgg = VGGFeatures(budget.arch, DEFAULT_LAYERS[budget.arch]).to(dev)
    photos = square_photos(photos_at, args.eval_size)  # on the CPU; evaluated EVAL_CHUNK at a time
    crops = square_photos([photos_at[i % len(photos_at)] for i in range(budget.batch)], budget.crop).to(dev)
    clips = eval_clips(args, photos_at)
    rows, grids = [], {}
    bar = tqdm(total=len(runs), desc="evaluate", unit="run")
    for style in args.styles:
        painting = load_style(resolve_style_path(style), budget.style_size).to(dev)
        target = metrics.target(painting)
        stem = resolve_style_path(style).stem
        base = {"style": stem, "loss": "photo (untrained)", "family": "", "style_vs_photo": 1.0,
                **score(photos, photos, painting, metrics, target), **reference(clips)}
        rows.append(base)
        columns = []
        style_runs = [r for r in runs if r.style == style]
        loss_cost = loss_ms(list(dict.fromkeys(r.style_loss.name for r in style_runs)), train_vgg, crops, painting)
        for run in style_runs:
            bar.set_postfix_str(run.name)
            net = transformer_from_checkpoint(checkpoint_of(run))[0].to(dev)
            y = stylize(net, photos, dev)
            loss = run.style_loss
            cost = json.loads((run.dir / "cost.json").read_text())  # written by the run itself
            row = {"style": stem, "loss": run.loss, "family": loss.family, "weight": cost["weight"],
                   "style_weight": run.recipe.get("style_weight", budget.style_weight),
                   "temporal_weight": run.recipe.get("temporal_weight", run.temporal_weight),
                   **score(y, photos, painting, metrics, target), **flicker(lambda f: stylize(net, f, dev), clips),
                   "train_ms_per_step": fast_step_ms(cost), "peak_mem_mb": cost["peak_mem_mb"],
                   "loss_ms_per_step": loss_cost[loss.name]}
            row["style_vs_photo"] = style_vs_photo(row, base)
            rows.append(row)
            label = f"{loss.family}, w={cost['weight']:.3g}" if not run.recipe else f"recipe: {loss.name}"
            label += f", temporal {run.temporal_weight:g}" if run.temporal_weight else ""
            columns.append((f"{run.loss}\n{label}", [to_pil(t) for t in y[:GRID_ROWS]]))
            bar.update(1)
        title = f"style: {stem} (style_size {budget.style_size}); rows: photos; columns: style loss, family, weight"
        grids[stem] = grid(to_pil(painting[0]), title, [to_pil(t) for t in photos[:GRID_ROWS]], columns, args.tile)
    bar.close()
    return rows, grids
