#!/usr/bin/env python
"""The README's demo picture: the photos `make demo` stylizes on top, its outputs below.

    python scripts/demo_image.py --stylized runs/quickstart/stylized --out docs/images/demo_quickstart.jpg

Each stylized file is matched to the photo of the same name in fst/assets/photos; every tile is
scaled to one height, tiles are separated by a 2 px white gap.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fst.core.errors import FstError  # noqa: E402
from fst.io.files import write_atomic  # noqa: E402
from fst.io.images import image_files, open_rgb  # noqa: E402

PHOTOS = Path(__file__).resolve().parent.parent / "fst" / "assets" / "photos"
GAP = 2


def strip(pairs: list[tuple[Path, Path]], height: int) -> Image.Image:
    rows = [[open_rgb(p) for p, _ in pairs], [open_rgb(s) for _, s in pairs]]
    rows = [[im.resize((round(im.width * height / im.height), height), Image.Resampling.LANCZOS) for im in row]
            for row in rows]
    width = sum(im.width for im in rows[0]) + GAP * (len(pairs) - 1)
    out = Image.new("RGB", (width, 2 * height + GAP), "white")
    for r, row in enumerate(rows):
        x = 0
        for im in row:
            out.paste(im, (x, r * (height + GAP)))
            x += im.width + GAP
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="demo_image", description=__doc__.split("\n\n")[0])
    p.add_argument("--stylized", type=Path, default=Path("runs/quickstart/stylized"))
    p.add_argument("--out", type=Path, default=Path("docs/images/demo_quickstart.jpg"))
    p.add_argument("--height", type=int, default=168, help="tile height, px (default 168)")
    args = p.parse_args(argv)
    try:
        styled = image_files(args.stylized)
        pairs = [(PHOTOS / f"{s.stem}.jpg", s) for s in styled]
        missing = [str(ph) for ph, _ in pairs if not ph.is_file()]
        if not pairs or missing:
            raise FstError(f"{args.stylized}: no stylized demo photos" if not pairs
                           else f"{missing[0]}: no photo of that name for the stylized one")
        buf = io.BytesIO()
        strip(pairs, args.height).save(buf, "JPEG", quality=88)
        write_atomic(args.out, buf.getvalue())
    except FstError as e:
        print(f"demo_image: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
