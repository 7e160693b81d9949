"""The report files of `fst compare`: the image grids, the metrics table as CSV and Markdown, the
machine line, report.md, and the calibration tables."""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import math
import os
import platform
from dataclasses import asdict
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageOps

from fst.core.errors import FstError, first_line
from fst.io.files import write_atomic
from fst.io.pixels import to_image
from fst.metrics.features import OTHER_ARCH
from fst.study.runs import Budget
from fst.untrusted.plain_data import describe

COLUMNS = ["style", "loss", "family", "weight", "style_weight", "temporal_weight",
           "style_gram", "style_mean_std", "style_sliced_wasserstein",
           "style_vs_photo", "content", "ssim", "detail_vs_photo", "detail_vs_painting",
           "color_vs_painting", "off_palette_pct", "clipped_pct",
           "train_ms_per_step", "loss_ms_per_step", "peak_mem_mb"]
PAD, LABEL = 4, 26  # grid spacing and the height of a two-line column label, px
GRID_ROWS = 8  # photos shown in a grid (all of them are scored)
MAX_METRICS_BYTES = 64 << 20  # a study writes a row per run: ~300 bytes each


def columns_of(rows: list[dict]) -> list[str]:
    """COLUMNS, then a flicker column per clip measured (fst.study.flicker)."""
    return COLUMNS + list(dict.fromkeys(k for r in rows for k in r if k.startswith(("warp_", "flicker_"))))


def to_pil(x: torch.Tensor) -> Image.Image:
    return to_image(x.detach().float().cpu().clamp(0, 1))


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


def read_metrics(table: Path, numbers: tuple[str, ...]) -> list[dict]:
    """The rows of a study's metrics.csv, as `csv_text` wrote them: read bounded, UTF-8, with the
    columns naming a run and the `numbers` columns, those of each run's row (not the untrained
    photo's) numbers > 0. Anything else is one FstError naming the file and what is wrong."""
    try:
        with open(table, "rb") as f:
            raw = f.read(MAX_METRICS_BYTES + 1)
        if len(raw) > MAX_METRICS_BYTES:
            raise ValueError(f"over {MAX_METRICS_BYTES >> 20} MiB")
        reader = csv.DictReader(raw.decode("utf-8").splitlines())
        missing = [c for c in ("style", "loss", "family", *numbers) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"no column {', '.join(missing)}")
        rows = list(reader)
    except (OSError, ValueError, csv.Error) as e:  # UnicodeDecodeError is a ValueError
        raise FstError(f"{table}: not a metrics.csv that fst compare wrote ({first_line(e)[:200]})") from None
    for line, row in enumerate(rows, 2):
        for column in numbers if row["family"] else ():
            try:
                ok = float(row[column]) > 0 and math.isfinite(float(row[column]))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise FstError(f"{table}: line {line}: {column} is {describe(row[column])}, not a number > 0")
    return rows


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


def write_report(args: argparse.Namespace, budget: Budget, rows: list[dict], grids: dict[str, Image.Image],
                 photos_at: list[Path], argv: list[str]) -> None:
    """OUT/grid_*.jpg, metrics.csv, metrics.md and report.md, each written whole."""
    out = args.out
    for stem, img in grids.items():
        write_atomic(out / f"grid_{stem}.jpg", jpeg(img))
    columns = columns_of(rows)
    write_atomic(out / "metrics.csv", csv_text(rows, columns))
    write_atomic(out / "metrics.md", markdown_table(rows, columns))
    text = [
        "# Loss study", "",
        f"Command: `fst compare {' '.join(argv)}`", "",
        f"Machine: {machine(args.device)}", "",
        f"Budget (every run): {json.dumps(asdict(budget))}; shards: {args.shards}", "",
        f"Evaluation: {len(photos_at)} photos at {args.eval_size}² ({', '.join(p.stem for p in photos_at)}); "
        f"network {OTHER_ARCH[budget.arch]} (training used {budget.arch}).", "",
        "Flicker: warp_pan and warp_zoom, the warping error of the stylized frames of a pan and a zoom over the "
        "first photo (exact motion); flicker_<clip>, the stylized frames' warping error over the input frames' "
        f"own (1 = as stable as the input) for {', '.join(args.clips) or 'no real clip'} ({args.clip_frames} "
        f"frames from frame {args.clip_skip}, long side {args.clip_size}; motion by OpenCV DIS). "
        "fst/study/flicker.py.", "",
        markdown_table(rows, columns),
        *[f"![{stem}](grid_{stem}.jpg)\n" for stem in grids],
        "Exact configs: runs/*/config.yaml. Columns: see `fst/metrics/features.py` and docs/loss_study.md.",
    ]
    write_atomic(out / "report.md", "\n".join(text) + "\n")


def publish_table(stem: Path, rows: list[dict], cols: list[str], note: str) -> int:
    """Write STEM.csv and STEM.md (note + Markdown table) atomically and print them."""
    table = markdown_table(rows, cols)
    write_atomic(stem.with_suffix(".csv"), csv_text(rows, cols))
    write_atomic(stem.with_suffix(".md"), note + "\n" + table)
    print(note)
    print(table)
    return 0
