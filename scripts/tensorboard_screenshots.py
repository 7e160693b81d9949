"""Screenshots of a run's TensorBoard pages, as a newcomer sees them, rendered by headless Chromium.

    python scripts/tensorboard_screenshots.py runs/quickstart/tensorboard --out docs/images/tensorboard

Starts TensorBoard on 127.0.0.1 (a free port) over LOGDIR, waits until it serves the run, then asks
Debian's `chromium` (apt-get install chromium) to render each page: the custom-scalars page (loss
terms first, then quality), the time series, the images (previews) and HPARAMS. Every wait is
bounded; TensorBoard is stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PAGES = {"custom_scalars": "#custom_scalars", "timeseries": "#timeseries", "images": "#images", "hparams": "#hparams"}
START_TIMEOUT_S = 60
RENDER_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_served(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as r:
                if r.read().strip() not in (b"", b"[]"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"tensorboard_screenshots: TensorBoard did not serve a run at {url} within {timeout:.0f} s")


def screenshot(chromium: str, url: str, out: Path, size: str) -> None:
    """One page, given ~15 s of virtual time to fetch and draw its charts."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={size}",
           "--virtual-time-budget=15000", f"--screenshot={out}", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
    if done.returncode != 0 or not out.is_file():
        raise SystemExit(f"tensorboard_screenshots: chromium failed on {url}: {done.stderr.strip()[-300:]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logdir", type=Path, help="a run's TensorBoard folder (e.g. runs/quickstart/tensorboard)")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs (one per page)")
    p.add_argument("--size", default="1400,1000", help="window size W,H (default %(default)s)")
    args = p.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("tensorboard_screenshots: no chromium on PATH (apt-get install chromium)")
    if not args.logdir.is_dir():
        raise SystemExit(f"tensorboard_screenshots: {args.logdir}: no such folder")
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(args.logdir), "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_served(url, START_TIMEOUT_S)
        for name, fragment in PAGES.items():
            screenshot(chromium, f"{url}/{fragment}", args.out / f"{name}.png", args.size)
            print(f"wrote {args.out / f'{name}.png'}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
