"""`fst compare`: the loss study (Cui et al. 2018) as a rerunnable tool.

One model per (painting, style loss), plus one per (painting, recipe) for every baseline recipe
(``--baselines configs/classic.yaml``: that config's ``model:`` section), all under one budget, each
trained by a real `fst fit` in a fresh process (so its time per step and peak memory are its own),
then evaluated on the same photos by `fst.metrics` on the VGG the models were *not* trained with. The report folder holds:

    OUT/metrics.csv, OUT/metrics.md     one row per run (+ the untrained photo as a reference row)
    OUT/grid_<painting>.jpg             rows: photos; columns: the photo, then each loss; painting on top
    OUT/report.md                       command, budget, machine, table, grids
    OUT/runs/<painting>__<loss|recipe>/ config.yaml (the exact `fst fit` config), train.log, cost.json,
                                        checkpoints/, tensorboard/
    OUT/calibration_gradient.{csv,md}   with --calibrate (no training): registry weights from start gradients
    OUT/calibration_content.{csv,md}    with --calibrate --from-studies A B: weights matching content distance

A finished run whose config is unchanged is reused, so a rerun only trains what is missing; report
files are written whole at the end (temp file + rename), never half.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import inspect
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
import yaml
from PIL import Image, ImageDraw, ImageOps
from tqdm import tqdm

from fst import losses
from fst.arguments import ArgumentParser
from fst.assets import resolve_style_path, sample_photos_dir
from fst.checkpoint import transformer_from_checkpoint
from fst.cost_meter import fast_step_ms, sync
from fst.criterion import flat
from fst.data import square_photo
from fst.errors import FstError
from fst.files import write_atomic
from fst.images import IMAGE_SUFFIXES, image_files
from fst.metrics import (OTHER_ARCH, STYLE_STATS, FeatureMetrics, clipped_percent, color_distance, detail,
                         off_palette_percent, ssim)
from fst.module import StyleTransferModule, load_style
from fst.transformer import OUTPUTS
from fst.vgg import DEFAULT_LAYERS, VGGFeatures

# Evaluation photos when none are given: a fixed, varied handful of the embedded photos. The sample
# shards hold all 100 embedded photos, so these were also seen in training (the study compares losses
# with each other, not generalisation).
DEFAULT_EVAL_PHOTOS = ("alpaca", "brandenburg_gate", "butterfly", "chichen_itza",
                       "mont_saint_michel", "cat", "great_wall", "heron")
COLUMNS = ["style", "loss", "family", "weight", "style_weight",
           "style_gram", "style_mean_std", "style_sliced_wasserstein",
           "style_vs_photo", "content", "ssim", "detail_vs_photo", "detail_vs_painting",
           "color_vs_painting", "off_palette_pct", "clipped_pct",
           "train_ms_per_step", "loss_ms_per_step", "peak_mem_mb"]
PAD, LABEL = 4, 26  # grid spacing and the height of a two-line column label, px
EVAL_CHUNK = 8  # photos per evaluation forward pass: bounds memory for large evaluation sets
GRID_ROWS = 8  # photos shown in a grid (all of them are scored)


@dataclass(frozen=True)
class Budget:
    """What every run shares: the study changes only the painting and the loss. The defaults are the
    CPU budget of docs/loss_study.md (14 runs in about 15 minutes on 2 idle cores)."""

    steps: int = 100
    batch: int = 2
    crop: int = 128
    seed: int = 0
    lr: float = 2e-3
    style_weight: float = 1.0
    content_weight: float = 1.0
    tv_weight: float = 1e-4
    style_size: int = 256
    arch: str = "vgg16"
    channels: int = 16
    n_residual: int = 3
    output: str = "linear"  # the transformer's output (fst.transformer)
    output_gain: float = 4.0  # the linear output's gain (fst.transformer)
    precision: str = "auto"  # fst.precision: bf16 only where the hardware has it natively
    workers: int = 0


@dataclass(frozen=True)
class Run:
    style: str  # a path or sample:NAME
    loss: str  # the column: a registered loss name, or a recipe's name (its config file's stem)
    dir: Path
    recipe: dict = field(default_factory=dict)  # model keys a baseline recipe sets over the budget's

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def style_loss(self) -> losses.StyleLoss:
        return losses.get(self.recipe.get("style_loss", self.loss))


# Model keys the budget sets for every run, recipes included: the painting, its size, the network.
SHARED_MODEL_KEYS = ("style_image", "style_size", "arch", "channels", "n_residual")


def load_recipe(path: Path) -> dict:
    """A baseline recipe: the ``model:`` section of an `fst fit` config, less the keys the budget
    shares (`SHARED_MODEL_KEYS`); what it leaves out (lr, weights) comes from the budget too."""
    if not path.is_file():
        raise FstError(f"{path}: recipe config not found")
    try:
        model = (yaml.safe_load(path.read_text()) or {}).get("model")
    except (yaml.YAMLError, AttributeError, UnicodeDecodeError) as e:
        raise FstError(f"{path}: not a YAML config with a model: section ({type(e).__name__})") from None
    if not isinstance(model, dict) or "style_loss" not in model:
        raise FstError(f"{path}: no model: section with a style_loss")
    known = set(inspect.signature(StyleTransferModule).parameters)
    unknown = sorted(set(model) - known)
    if unknown:
        raise FstError(f"{path}: unknown model keys {unknown} (see fst fit --help)")
    losses.get(model["style_loss"])
    return {k: v for k, v in model.items() if k not in SHARED_MODEL_KEYS}


# --- training: a real `fst fit` per run ---------------------------------------------------------


def run_config(run: Run, budget: Budget, shards: str, device: str) -> dict:
    """The complete `fst fit` config of one run: everything but painting and loss comes from the budget."""
    b = budget
    return {
        "seed_everything": b.seed,
        "trainer": {
            "accelerator": "gpu" if device == "cuda" else "cpu", "devices": 1, "precision": b.precision,
            "max_steps": b.steps, "default_root_dir": str(run.dir), "log_every_n_steps": 10,
            "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": str(run.dir), "name": "tensorboard"}},
            "limit_val_batches": 0, "num_sanity_val_steps": 0,
            "enable_progress_bar": False, "enable_model_summary": False,
            "callbacks": [{"class_path": "fst.cost_meter.CostMeter",
                           "init_args": {"out": str(run.dir / "cost.json"), "warmup": min(2, b.steps - 1)}}],
        },
        "model": {
            "style_image": run.style, "style_loss": run.loss, "style_size": b.style_size, "arch": b.arch,
            "content_weight": b.content_weight, "style_weight": b.style_weight, "tv_weight": b.tv_weight,
            "channels": b.channels, "n_residual": b.n_residual, "output": b.output, "output_gain": b.output_gain, "lr": b.lr,
            **run.recipe,
        },
        "data": {
            "train_shards": shards, "val_photos": None, "crop_size": b.crop, "batch_size": b.batch,
            "num_workers": b.workers, "resampled": True, "epoch_length": b.steps, "seed": b.seed,
        },
        "checkpoint": {"dirpath": str(run.dir / "checkpoints"), "every_n_train_steps": b.steps,
                       "save_top_k": 1, "save_last": True},
    }


def config_text(run: Run, budget: Budget, shards: str, device: str) -> str:
    """The YAML, headed by the loss's registry weight: not a config key, but it changes what is trained
    (so a weight edited in fst/losses.py makes the run stale)."""
    header = (f"# fst compare run {run.name}: style loss {run.style_loss.name}, registry weight "
              f"{run.style_loss.weight!r} (fst/losses.py)\n")
    return header + yaml.safe_dump(run_config(run, budget, shards, device), sort_keys=False)


def checkpoint_of(run: Run) -> Path:
    return run.dir / "checkpoints" / "last.ckpt"


def is_done(run: Run, config_text: str) -> bool:
    """Finished earlier with exactly this config: cost.json is written only when training completes."""
    cfg = run.dir / "config.yaml"
    return (cfg.is_file() and cfg.read_text() == config_text and (run.dir / "cost.json").is_file()
            and checkpoint_of(run).is_file())


def train(run: Run, config_text: str) -> None:
    """`fst fit --config <run>/config.yaml` in a fresh process, output to <run>/train.log."""
    if run.dir.exists():
        shutil.rmtree(run.dir)  # a stale or partial run of ours: start clean
    run.dir.mkdir(parents=True)
    write_atomic(run.dir / "config.yaml", config_text)
    log = run.dir / "train.log"
    with open(log, "w") as f:
        rc = subprocess.call([sys.executable, "-m", "fst.cli", "fit", "--config", str(run.dir / "config.yaml")],
                             stdout=f, stderr=subprocess.STDOUT)
    if rc != 0 or not (run.dir / "cost.json").is_file() or not checkpoint_of(run).is_file():
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise FstError(f"run {run.name} failed (exit {rc}): {lines[-1].strip() if lines else 'no output'} "
                       f"(full log: {log})")


# --- evaluation ----------------------------------------------------------------------------------


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


def load_photos(paths: list[Path], size: int) -> torch.Tensor:
    """(P, 3, size, size): each photo's short side resized to `size` and centre-cropped."""
    return torch.stack([square_photo(p, size) for p in paths])


@torch.no_grad()
def stylize(run: Run, photos: torch.Tensor, device: str) -> torch.Tensor:
    """The run's transformer on the (CPU) photos, EVAL_CHUNK at a time on `device`; outputs on the CPU."""
    net = transformer_from_checkpoint(checkpoint_of(run))[0].to(device)
    return torch.cat([net(c.to(device)).float().clamp(0, 1).cpu() for c in photos.split(EVAL_CHUNK)])


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


# --- calibration ---------------------------------------------------------------------------------


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


# --- report --------------------------------------------------------------------------------------


def to_pil(x: torch.Tensor) -> Image.Image:
    return TF.to_pil_image(x.detach().float().cpu().clamp(0, 1))


def grid_size(n_photos: int, n_columns: int, tile: int) -> tuple[int, int]:
    """(width, height) of a grid: painting band, label row, then one row per photo."""
    return n_columns * (tile + PAD) + PAD, PAD + LABEL + tile + PAD + LABEL + n_photos * (tile + PAD)


def grid(painting: Image.Image, title: str, photos: list[Image.Image], columns: list[tuple[str, list[Image.Image]]],
         tile: int) -> Image.Image:
    """Painting on top; then columns 'photo', then one per (label, outputs); one row per photo."""
    w, h = grid_size(len(photos), len(columns) + 1, tile)
    canvas = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(canvas)
    band = ImageOps.contain(painting, (w - 2 * PAD, tile))
    draw.text((PAD, PAD), title, fill="black")
    canvas.paste(band, ((w - band.width) // 2, PAD + LABEL))
    top = PAD + LABEL + tile + PAD
    for j, (label, images) in enumerate([("photo", photos), *columns]):
        x = PAD + j * (tile + PAD)
        draw.multiline_text((x, top), label, fill="black", spacing=2)
        for i, img in enumerate(images):
            canvas.paste(ImageOps.fit(img, (tile, tile), Image.Resampling.LANCZOS), (x, top + LABEL + i * (tile + PAD)))
    return canvas


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=88)
    return buf.getvalue()


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows([{k: fmt(r.get(k)) for k in columns} for r in rows])
    return buf.getvalue()


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if c in ("style", "loss", "family") else "---:"
                                                            for c in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def machine(device: str) -> str:
    if device == "cuda":
        hw = torch.cuda.get_device_name()
    else:
        hw = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU used"
    return f"{hw}; torch {torch.__version__}; {datetime.date.today()}"


# --- the command ---------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    d = Budget()
    p = ArgumentParser(
        prog="fst compare",
        description="Train one model per (painting, style loss) under one budget with `fst fit`, evaluate them "
                    "on the same photos with the other VGG, write a grid, a metrics table and each run's config.",
        epilog="example: fst compare --styles sample:starry_night sample:the_scream --steps 100 --out runs/study\n"
               "         fst compare --calibrate --styles sample:starry_night sample:udnie --out runs/calib",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="report folder (runs are kept in OUT/runs and reused)")
    p.add_argument("--styles", nargs="+", default=["sample:starry_night", "sample:the_scream"],
                   help="paintings: paths or sample:NAME (default: starry_night and the_scream)")
    p.add_argument("--losses", nargs="*", default=losses.list_losses(absolute=False),
                   help="style losses, under the budget's weights (default: every registered one but the absolute "
                        "gram_mse, which only a recipe's own weights fit)")
    p.add_argument("--baselines", nargs="+", type=Path, default=[], metavar="CONFIG",
                   help="recipes to compare with, each an `fst fit` config whose model: section (its loss, weights, "
                        "lr, output) is one more column, e.g. configs/classic.yaml; the painting, its size and the "
                        "network size still come from the budget")
    p.add_argument("--shards", default="sample",
                   help="training shards, as `fst fit --data.train_shards` (default sample)")
    p.add_argument("--eval-photos", type=Path,
                   help="folder of evaluation photos (default: a fixed handful of the sample photos)")
    p.add_argument("--eval-count", type=int, default=4, help="evaluation photos used (default 4)")
    p.add_argument("--eval-size", type=int, default=256,
                   help="evaluation photos are centre-cropped to this square (default 256)")
    p.add_argument("--tile", type=int, default=160, help="grid tile side, px (default 160)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="training and evaluation device (default cpu)")
    p.add_argument("--retrain", action="store_true", help="train every run again even if a finished one matches")
    p.add_argument("--calibrate", action="store_true", help="no training: measure each loss's registry weight")
    p.add_argument("--draws", type=int, default=8, help="calibration: evaluations averaged per gradient (default 8)")
    p.add_argument("--from-studies", nargs="+", type=Path, metavar="DIR",
                   help="with --calibrate: match content distances using these finished studies (>= 2 style weights) "
                        "instead of start gradients")
    b = p.add_argument_group("budget (shared by every run)")
    b.add_argument("--steps", type=int, default=d.steps)
    b.add_argument("--batch", type=int, default=d.batch)
    b.add_argument("--crop", type=int, default=d.crop, help="training crop side, px")
    b.add_argument("--seed", type=int, default=d.seed)
    b.add_argument("--lr", type=float, default=d.lr)
    b.add_argument("--style-weight", type=float, default=d.style_weight)
    b.add_argument("--content-weight", type=float, default=d.content_weight)
    b.add_argument("--tv-weight", type=float, default=d.tv_weight)
    b.add_argument("--style-size", type=int, default=d.style_size, help="painting long side, px")
    b.add_argument("--arch", default=d.arch, choices=["vgg16", "vgg19"], help="training loss network")
    b.add_argument("--channels", type=int, default=d.channels, help="transformer width")
    b.add_argument("--n-residual", type=int, default=d.n_residual, help="transformer residual blocks")
    b.add_argument("--output", default=d.output, choices=list(OUTPUTS), help="transformer output (default linear)")
    b.add_argument("--output-gain", type=float, default=d.output_gain, help="linear output gain (default %(default)s; the classic recipe's is 1)")
    b.add_argument("--precision", default=d.precision, choices=["auto", "32-true", "bf16-mixed", "16-mixed"],
                   help="auto: bf16-mixed where the hardware has native bf16, else 16-mixed (GPU) or 32-true (CPU)")
    b.add_argument("--workers", type=int, default=d.workers, help="data loader processes per run")
    return p


def check_inputs(args: argparse.Namespace) -> list[str]:
    """Fail before any training: unknown loss, missing painting, bad numbers, no CUDA. Returns the loss names."""
    names = list(dict.fromkeys(losses.get(n).name for n in args.losses))
    for s in args.styles:
        if not resolve_style_path(s).is_file():
            raise FstError(f"{resolve_style_path(s)}: style image not found")
    stems = [resolve_style_path(s).stem for s in args.styles]
    if len(set(stems)) != len(stems):
        raise FstError(f"two paintings share a file name ({', '.join(stems)}): their runs would collide")
    for key in ("steps", "batch", "crop", "eval_count", "eval_size", "tile", "draws", "channels", "n_residual"):
        if getattr(args, key) < 1:
            raise FstError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    stems = [p.stem for p in args.baselines]
    if len(set(stems)) < len(stems) or set(stems) & set(names):
        raise FstError(f"baseline config names ({', '.join(stems)}) must differ from each other and from the losses")
    if not names and not args.baselines:
        raise FstError("nothing to compare: no --losses and no --baselines")
    if args.from_studies and not args.calibrate:
        raise FstError("--from-studies goes with --calibrate")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise FstError("--device cuda: no CUDA device available")
    return names


def budget_of(args: argparse.Namespace) -> Budget:
    return Budget(**{k: getattr(args, k) for k in asdict(Budget())})


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    names = check_inputs(args)
    budget = budget_of(args)
    photos_at = photo_paths(args.eval_photos, args.eval_count)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.calibrate:
        return run_calibration(args, names, budget, photos_at)
    from fst.data import resolve_shards

    recipes = {path.stem: load_recipe(path) for path in args.baselines}
    resolve_shards(args.shards)  # missing shards: one line now, not after the first run
    columns = [(n, {}) for n in names] + list(recipes.items())
    runs = [Run(s, n, args.out / "runs" / f"{resolve_style_path(s).stem}__{n}", r)
            for s in args.styles for n, r in columns]
    train_all(runs, budget, args)
    rows, grids = evaluate_all(runs, budget, args, photos_at)
    write_report(args, budget, rows, grids, photos_at, argv)
    print(markdown_table(rows, COLUMNS))
    print(f"report: {args.out / 'report.md'}")
    return 0


def train_all(runs: list[Run], budget: Budget, args: argparse.Namespace) -> None:
    bar = tqdm(runs, desc="train", unit="run")
    for run in bar:
        bar.set_postfix_str(run.name)
        text = config_text(run, budget, args.shards, args.device)
        if args.retrain or not is_done(run, text):
            train(run, text)


def evaluate_all(runs: list[Run], budget: Budget, args: argparse.Namespace,
                 photos_at: list[Path]) -> tuple[list[dict], dict[str, Image.Image]]:
    """One metrics row per run (plus the untrained photo per painting) and one grid per painting."""
    dev = args.device
    metrics = FeatureMetrics(OTHER_ARCH[budget.arch]).to(dev)
    train_vgg = VGGFeatures(budget.arch, DEFAULT_LAYERS[budget.arch]).to(dev)
    photos = load_photos(photos_at, args.eval_size)  # on the CPU; evaluated EVAL_CHUNK at a time
    crops = load_photos([photos_at[i % len(photos_at)] for i in range(budget.batch)], budget.crop).to(dev)
    rows, grids = [], {}
    bar = tqdm(total=len(runs), desc="evaluate", unit="run")
    for style in args.styles:
        painting = load_style(resolve_style_path(style), budget.style_size).to(dev)
        target = metrics.target(painting)
        stem = resolve_style_path(style).stem
        base = {"style": stem, "loss": "photo (untrained)", "family": "", "style_vs_photo": 1.0,
                **score(photos, photos, painting, metrics, target)}
        rows.append(base)
        columns = []
        style_runs = [r for r in runs if r.style == style]
        loss_cost = loss_ms(list(dict.fromkeys(r.style_loss.name for r in style_runs)), train_vgg, crops, painting)
        for run in style_runs:
            bar.set_postfix_str(run.name)
            y = stylize(run, photos, dev)
            loss = run.style_loss
            cost = json.loads((run.dir / "cost.json").read_text())  # written by the run itself
            row = {"style": stem, "loss": run.loss, "family": loss.family, "weight": cost["weight"],
                   "style_weight": run.recipe.get("style_weight", budget.style_weight),
                   **score(y, photos, painting, metrics, target),
                   "train_ms_per_step": fast_step_ms(cost), "peak_mem_mb": cost["peak_mem_mb"],
                   "loss_ms_per_step": loss_cost[loss.name]}
            row["style_vs_photo"] = style_vs_photo(row, base)
            rows.append(row)
            label = f"{loss.family}, w={cost['weight']:.3g}" if not run.recipe else f"recipe: {loss.name}"
            columns.append((f"{run.loss}\n{label}", [to_pil(t) for t in y[:GRID_ROWS]]))
            bar.update(1)
        title = f"style: {stem} (style_size {budget.style_size}); rows: photos; columns: style loss, family, weight"
        grids[stem] = grid(to_pil(painting[0]), title, [to_pil(t) for t in photos[:GRID_ROWS]], columns, args.tile)
    bar.close()
    return rows, grids


def write_report(args: argparse.Namespace, budget: Budget, rows: list[dict], grids: dict[str, Image.Image],
                 photos_at: list[Path], argv: list[str]) -> None:
    out = args.out
    for stem, img in grids.items():
        write_atomic(out / f"grid_{stem}.jpg", jpeg(img))
    write_atomic(out / "metrics.csv", csv_text(rows, COLUMNS))
    write_atomic(out / "metrics.md", markdown_table(rows, COLUMNS))
    text = [
        "# Loss study", "",
        f"Command: `fst compare {' '.join(argv)}`", "",
        f"Machine: {machine(args.device)}", "",
        f"Budget (every run): {json.dumps(asdict(budget))}; shards: {args.shards}", "",
        f"Evaluation: {len(photos_at)} photos at {args.eval_size}² ({', '.join(p.stem for p in photos_at)}); "
        f"network {OTHER_ARCH[budget.arch]} (training used {budget.arch}).", "",
        markdown_table(rows, COLUMNS),
        *[f"![{stem}](grid_{stem}.jpg)\n" for stem in grids],
        "Exact configs: runs/*/config.yaml. Columns: see `fst/metrics.py` and docs/loss_study.md.",
    ]
    write_atomic(out / "report.md", "\n".join(text) + "\n")


def run_calibration(args: argparse.Namespace, names: list[str], budget: Budget, photos_at: list[Path]) -> int:
    reference = "gram" if "gram" in names else names[0]
    if args.from_studies:
        return run_content_calibration(args, reference)
    photos = load_photos(photos_at, budget.crop).to(args.device)
    rows = calibrate(names, args.styles, photos, budget, args.device, args.draws, reference)
    cols = ["loss", "family", "current_weight", "grad_norm", "current_push_vs_ref", "new_weight", "spread"]
    note = (f"Reference {reference}; {len(photos_at)} photos at {budget.crop}² × {len(args.styles)} paintings "
            f"({', '.join(resolve_style_path(s).stem for s in args.styles)}) at style_size {budget.style_size}; "
            f"{budget.arch}; {args.draws} draws per gradient; {machine(args.device)}.\n")
    return publish_table(args.out / "calibration_gradient", rows, cols, note)


def publish_table(stem: Path, rows: list[dict], cols: list[str], note: str) -> int:
    """Write STEM.csv and STEM.md (note + Markdown table) atomically and print them."""
    table = markdown_table(rows, cols)
    write_atomic(stem.with_suffix(".csv"), csv_text(rows, cols))
    write_atomic(stem.with_suffix(".md"), note + "\n" + table)
    print(note)
    print(table)
    return 0


def run_content_calibration(args: argparse.Namespace, reference: str) -> int:
    rows = []
    for folder in args.from_studies:
        table = folder / "metrics.csv"
        if not table.is_file():
            raise FstError(f"{table}: no study results (run `fst compare --out {folder}` first)")
        rows += list(csv.DictReader(table.read_text().splitlines()))
    if not any(r["loss"] == reference for r in rows):
        raise FstError(f"reference loss {reference!r} is not in the studies")
    out = content_matched(rows, reference)
    cols = ["loss", "family", "current_weight", "slope", "new_weight", "per_style"]
    note = (f"Content-matched weights: reference {reference} at weight {losses.get(reference).weight:g}, "
            f"from {', '.join(str(f) for f in args.from_studies)}; {datetime.date.today()}.\n")
    return publish_table(args.out / "calibration_content", out, cols, note)
