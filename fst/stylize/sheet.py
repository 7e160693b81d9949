"""`fst sheet`: a contact sheet of a universal network, to choose a painting by eye.

    fst sheet photos/ --model universal.ckpt --style-image a.jpg b.jpg c.jpg --out sheet.jpg

Paintings across (the first row shows the paintings themselves), photos down (the first column shows
the photos); each cell is the photo stylized with that column's painting, fitted into a square
`--cell` px box (rows and columns as large as their pictures). Photos are stylized at `--max-size` (the stroke size a full-size run gives
depends on the working size) and then shrunk to the cell. A photo that cannot be read or stylized is
left out with one line; the sheet is written once, atomically, and never over one of its inputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from fst.core.arguments import ArgumentParser
from fst.core.errors import FstError, first_line
from fst.io.clips import is_clip
from fst.io.files import atomic_path
from fst.io.images import open_rgb
from fst.io.targets import check_outputs
from fst.models.transformer import style_weights
from fst.stylize import colour_match
from fst.stylize.image import Options, stylize_image
from fst.stylize.outputs import collect_inputs, image_format
from fst.stylize.paintings import DEFAULT_STYLE_SIZE
from fst.stylize.stylizer import Stylizer

GAP = 8  # px of white between cells
MAX_CELLS = 400  # rows x columns: a sheet is for looking at, not a batch job (fst stylize is)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="fst sheet", description="A contact sheet of a universal network: paintings across "
                       "(first row: the paintings), photos down, each photo stylized with each painting.")
    p.add_argument("inputs", nargs="+", help="photos: files, folders, globs")
    p.add_argument("--model", required=True, type=Path, help="a universal network's checkpoint")
    p.add_argument("--style-image", required=True, nargs="+", type=Path, metavar="PAINTING", help="the paintings, in order")
    p.add_argument("--out", required=True, type=Path, help="the sheet (.jpg, .png, .webp)")
    p.add_argument("--transform", choices=("intra", "inter"), default=None,
                   help="intra (AdaIN) or inter (WCT); default: the network's own")
    p.add_argument("--cell", type=int, default=256, help="side of each cell in px (default 256)")
    p.add_argument("--max-size", type=int, default=512, metavar="PX",
                   help="long side the photos are stylized at before shrinking to the cell (default 512)")
    p.add_argument("--stroke-scale", type=float, default=1.0, metavar="S",
                   help="strokes S times larger (the network at 1/S of the size, the photo's detail added back; default 1)")
    p.add_argument("--style-size", type=int, default=DEFAULT_STYLE_SIZE, metavar="PX",
                   help=f"the paintings' long side when their statistics are taken (default {DEFAULT_STYLE_SIZE})")
    p.add_argument("--color-match", choices=colour_match.MODES, default="off",
                   help="each cell given its painting's RGB statistics, as `fst stylize --color-match` (default off)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def fitted(img: Image.Image, cell: int) -> Image.Image:
    """`img` shrunk (never enlarged) to fit a cell x cell box, keeping its aspect."""
    img = img.copy()
    img.thumbnail((cell, cell), Image.Resampling.LANCZOS)
    return img


def sheet(rows: list[list[Image.Image | None]], cell: int) -> Image.Image:
    """The grid of `rows` (None: an empty cell), GAP px apart: each column as wide and each row as tall
    as its largest fitted picture, so landscape photos sit in landscape cells, not on white squares."""
    n_cols = max(len(r) for r in rows)
    fit = [[None if img is None else fitted(img, cell) for img in row] for row in rows]
    widths = [max((r[j].width for r in fit if j < len(r) and r[j] is not None), default=0) for j in range(n_cols)]
    heights = [max((img.height for img in r if img is not None), default=0) for r in fit]
    out = Image.new("RGB", (sum(widths) + (n_cols + 1) * GAP, sum(heights) + (len(rows) + 1) * GAP), "white")
    y = GAP
    for row, h in zip(fit, heights):
        x = GAP
        for img, w in zip(row, widths):
            if img is not None:
                out.paste(img, (x + (w - img.width) // 2, y + (h - img.height) // 2))
            x += w + GAP
        y += h + GAP
    return out


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    for name in ("cell", "max_size", "style_size"):
        if getattr(args, name) < 16 and not (name == "style_size" and getattr(args, name) == 0):
            raise FstError(f"--{name.replace('_', '-')} must be >= 16, got {getattr(args, name)}")
    photos, problems = collect_inputs(args.inputs)
    problems += [f"{p}: a clip; a sheet shows photos" for p in photos if is_clip(p)]
    photos = [p for p in photos if not is_clip(p)]
    if not photos:
        raise FstError("; ".join(problems) or "no photos")
    if (len(photos) + 1) * (len(args.style_image) + 1) > MAX_CELLS:
        raise FstError(f"{len(photos)} photos x {len(args.style_image)} paintings is over {MAX_CELLS} cells; "
                       "choose fewer (fst stylize writes any number of files)")
    image_format(args.out)  # a format fst writes, before any work
    check_outputs([args.out], [*photos, *args.style_image, args.model])
    stylizer = Stylizer(args.model, args.device, args.dtype, style_images=args.style_image,
                        transform=args.transform, style_size=args.style_size)
    paintings = [open_rgb(p) for p in args.style_image]
    rows: list[list[Image.Image | None]] = [[None, *paintings]]
    colour = None if args.color_match == "off" else colour_match.for_run(
        args.color_match, stylizer.universal, args.style_image, args.style_size, stylizer.min_side)
    opts = Options(max_size=args.max_size, stroke_scale=args.stroke_scale, colour=colour)
    for photo in tqdm(photos, desc="sheet", unit="photo", disable=args.quiet or None, file=sys.stderr):
        try:
            img = open_rgb(photo)
            row: list[Image.Image | None] = [img]
            for k in range(len(args.style_image)):
                stylizer.style = style_weights(len(args.style_image), {k: 1.0})[0]
                row.append(stylize_image(stylizer, img, opts))
            rows.append(row)
        except FstError as e:
            problems.append(str(e) if str(photo) in str(e) else f"{photo}: {e}")
        except Exception as e:  # one photo's failure is that photo's
            problems.append(f"{photo}: {type(e).__name__}: {first_line(e)[:300]}")
    for line in problems:
        print(f"fst sheet: skipped {line}", file=sys.stderr)
    if len(rows) == 1:
        raise FstError("no photo could be stylized; nothing written")
    with atomic_path(args.out) as tmp:
        sheet(rows, args.cell).save(tmp, format=image_format(args.out))
    print(f"sheet of {len(rows) - 1} photos x {len(args.style_image)} paintings -> {args.out}")
    return 1 if problems else 0
