#!/usr/bin/env python
"""A contact strip of a study folder (scripts/study_universal.py --out DIR): one row per (photo,
painting), columns the painting, the photo and each method's output, every cell `--cell` px tall.

    python scripts/study_strip.py DIR --methods u_inter_ss2_sz1024 peer --photos owl panda \\
        --paintings fst-assets__great_wave ... --labels "fst" "peer" --out strip.jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fst.io.files import writing  # noqa: E402
from fst.io.images import open_rgb  # noqa: E402

LABEL_H = 16


def cell(img: Image.Image, height: int) -> Image.Image:
    return img.resize((max(1, round(img.width * height / img.height)), height), Image.Resampling.LANCZOS)


def strip(study: Path, paintings: list[Path], photos: list[str], methods: list[str], labels: list[str],
          height: int) -> Image.Image:
    rows = []
    for pa in paintings:
        for ph in photos:
            cells = [cell(open_rgb(pa), height), cell(open_rgb(study / "photos" / f"{ph}.png"), height)]
            for m in methods:  # the peer's 384 px result, as the metrics read it: at the photo's size
                out = open_rgb(study / "out" / m / f"{ph}__{pa.stem}.png").resize(cells[1].size, Image.Resampling.LANCZOS)
                cells.append(out)
            rows.append(cells)
    widths = [max(r[i].width for r in rows) for i in range(len(rows[0]))]
    sheet = Image.new("RGB", (sum(widths) + 2 * len(widths), LABEL_H + len(rows) * (height + 2)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, name in enumerate(["painting", "photo", *labels]):
        draw.text((sum(widths[:i]) + 2 * i + 3, 2), name, fill="black")
    for j, r in enumerate(rows):
        for i, c in enumerate(r):
            sheet.paste(c, (sum(widths[:i]) + 2 * i, LABEL_H + j * (height + 2)))
    return sheet


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study", type=Path)
    p.add_argument("--paintings", type=Path, nargs="+", required=True)
    p.add_argument("--photos", nargs="+", required=True, help="photo stems of DIR/photos")
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--labels", nargs="+", help="column titles (default: the method names)")
    p.add_argument("--cell", type=int, default=160)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    labels = a.labels or a.methods
    if len(labels) != len(a.methods):
        raise SystemExit("--labels: one per method")
    img = strip(a.study, a.paintings, a.photos, a.methods, labels, a.cell)
    with writing(a.out) as tmp:
        img.save(tmp, format="JPEG", quality=88)
    return 0


if __name__ == "__main__":
    sys.exit(main())
