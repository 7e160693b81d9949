"""Registry weights for `fst compare --calibrate`: from the start gradient of each style loss (no
training), or from finished studies by matching content distances."""

from __future__ import annotations

import argparse
import datetime
import math
from pathlib import Path

import torch
from tqdm import tqdm

from fst import losses
from fst.assets import resolve_style_path
from fst.core.errors import FstError
from fst.data.photos import square_photos
from fst.losses.criterion import flat
from fst.models.vgg import DEFAULT_LAYERS, VGGFeatures
from fst.study.report import machine, publish_table, read_metrics
from fst.study.runs import Budget
from fst.training.module import load_style


def gradient_norms(vgg: VGGFeatures, photos: torch.Tensor, painting: torch.Tensor, loss: losses.StyleLoss,
                   draws: int) -> torch.Tensor:
    """‖∂ L_style / ∂ y‖ at y = photo, per photo (P,): how hard the unweighted style term (sum over
    the style layers, as in training) pushes the output away from the photo at the start of training.
    Random-projection losses average `draws` evaluations (the expected gradient, not one noisy draw)."""
    with torch.no_grad():
        targets = {k: loss.stats(flat(v)[0]) for k, v in vgg(painting).items()}
    y = photos.clone().requires_grad_(True)
    feats = vgg(y)
    value = sum(sum(loss(flat(feats[k]), targets[k]) for k in vgg.layers) for _ in range(draws)) / draws
    (grad,) = torch.autograd.grad(value.sum(), y)  # per-image terms: the sum keeps them apart
    return grad.flatten(1).norm(dim=1)


def calibrate(loss_names: list[str], styles: list[str], photos: torch.Tensor, budget: Budget,
              device: str, draws: int, reference: str) -> list[dict]:
    """New registry weights: weight_i = weight_ref · geomean over (photo, painting) of g_ref / g_i, so
    that every loss's weighted style term pushes as hard as the reference's does today."""
    vgg = VGGFeatures(budget.arch, DEFAULT_LAYERS[budget.arch]).to(device)
    paintings = [load_style(resolve_style_path(s), budget.style_size).to(device) for s in styles]
    g = {}
    for name in tqdm(loss_names, desc="calibrate", unit="loss"):
        torch.manual_seed(budget.seed)
        g[name] = torch.stack([gradient_norms(vgg, photos, p, losses.get(name), draws) for p in paintings]).cpu()
    ref_push = losses.get(reference).weight * g[reference].mean().item()
    rows = []
    for name in loss_names:
        log_ratio = (g[reference] / g[name]).log()  # (paintings, photos)
        rows.append({
            "loss": name, "family": losses.get(name).family, "current_weight": losses.get(name).weight,
            "grad_norm": g[name].mean().item(),
            "current_push_vs_ref": losses.get(name).weight * g[name].mean().item() / ref_push,
            "new_weight": losses.get(reference).weight * log_ratio.mean().exp().item(),
            "spread": log_ratio.std().exp().item() if log_ratio.numel() > 1 else 1.0,
        })
    return rows


def content_matched(rows: list[dict], reference: str) -> list[dict]:
    """New registry weights from trained models. Per painting and loss, the runs' (effective weight
    e = weight · style_weight, content distance) points form a curve, read piecewise-linearly in
    log-log; each loss gets the e at which its curve reaches the reference loss's content distance at
    the reference's registry weight (style_weight 1). The new weight is the geometric mean over
    paintings. `rows`: metrics.csv rows of studies run at >= 2 style weights."""
    curves: dict[tuple[str, str], dict[float, list[float]]] = {}
    for r in rows:
        if r["family"]:  # not the untrained-photo row
            e = math.log(float(r["weight"]) * float(r["style_weight"]))
            curves.setdefault((r["style"], r["loss"]), {}).setdefault(e, []).append(math.log(float(r["content"])))
    points = {key: sorted((x, sum(ys) / len(ys)) for x, ys in c.items()) for key, c in curves.items()}
    for key, pts in points.items():
        if len(pts) < 2:
            raise FstError(f"{key[0]}/{key[1]}: needs runs at >= 2 different style weights")
    out = []
    styles = sorted({s for s, _ in points})
    for loss in dict.fromkeys(name for _, name in points):
        solved, slopes = [], []
        for style in (s for s in styles if (s, loss) in points and (s, reference) in points):
            target = y_at(points[style, reference], math.log(losses.get(reference).weight))
            x, slope = x_at(points[style, loss], target)
            solved.append(x)
            slopes.append(slope)
        out.append({"loss": loss, "family": losses.get(loss).family, "current_weight": losses.get(loss).weight,
                    "slope": sum(slopes) / len(slopes), "new_weight": math.exp(sum(solved) / len(solved)),
                    "per_style": " ".join(f"{math.exp(v):.3g}" for v in solved)})
    return out


def y_at(pts: list[tuple[float, float]], x: float) -> float:
    """The curve's log content at log weight x (linear between, and beyond, the nearest points)."""
    pairs = list(zip(pts, pts[1:]))
    (x0, y0), (x1, y1) = next((p for p in pairs if p[0][0] <= x <= p[1][0]), pairs[0] if x < pts[0][0] else pairs[-1])
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def x_at(pts: list[tuple[float, float]], y: float) -> tuple[float, float]:
    """(log weight where the curve reaches log content y, the slope used); nan where content does not
    grow with the weight there (no weight would reach y)."""
    pairs = list(zip(pts, pts[1:]))
    lo = y < min(p[1] for p in pts)
    (x0, y0), (x1, y1) = next((p for p in pairs if min(p[0][1], p[1][1]) <= y <= max(p[0][1], p[1][1])),
                              pairs[0] if lo else pairs[-1])
    slope = (y1 - y0) / (x1 - x0)
    return (x0 + (y - y0) / slope if slope > 0 else float("nan")), slope


def run_calibration(args: argparse.Namespace, names: list[str], budget: Budget, photos_at: list[Path]) -> int:
    """`fst compare --calibrate`: gradient-matched weights, or content-matched ones with --from-studies."""
    reference = "gram" if "gram" in names else names[0]
    if args.from_studies:
        return run_content_calibration(args, reference)
    photos = square_photos(photos_at, budget.crop).to(args.device)
    rows = calibrate(names, args.styles, photos, budget, args.device, args.draws, reference)
    cols = ["loss", "family", "current_weight", "grad_norm", "current_push_vs_ref", "new_weight", "spread"]
    note = (f"Reference {reference}; {len(photos_at)} photos at {budget.crop}² × {len(args.styles)} paintings "
            f"({', '.join(resolve_style_path(s).stem for s in args.styles)}) at style_size {budget.style_size}; "
            f"{budget.arch}; {args.draws} draws per gradient; {machine(args.device)}.\n")
    return publish_table(args.out / "calibration_gradient", rows, cols, note)


def run_content_calibration(args: argparse.Namespace, reference: str) -> int:
    """Content-matched weights from the metrics.csv of each --from-studies folder."""
    rows = []
    for folder in args.from_studies:
        table = folder / "metrics.csv"
        if not table.is_file():
            raise FstError(f"{table}: no study results (run `fst compare --out {folder}` first)")
        rows += read_metrics(table, ("weight", "style_weight", "content"))
    if not any(r["loss"] == reference for r in rows):
        raise FstError(f"reference loss {reference!r} is not in the studies")
    out = content_matched(rows, reference)
    cols = ["loss", "family", "current_weight", "slope", "new_weight", "per_style"]
    note = (f"Content-matched weights: reference {reference} at weight {losses.get(reference).weight:g}, "
            f"from {', '.join(str(f) for f in args.from_studies)}; {datetime.date.today()}.\n")
    return publish_table(args.out / "calibration_content", out, cols, note)
