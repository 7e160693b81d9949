"""scripts/study_strip.py: one row per (painting, photo), the painting, the photo and each method's
output at the photo's size, in the order asked."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "study_strip.py"
spec = importlib.util.spec_from_file_location("study_strip", SCRIPT)
strip_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(strip_mod)


def test_strip_rows_and_columns(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (30, 20), (0, 0, 255)).save(tmp_path / "photos" / "p.png")
    painting = tmp_path / "wave.jpg"
    Image.new("RGB", (20, 20), (0, 255, 0)).save(painting)
    for m, colour, size in (("a", (255, 0, 0), (30, 20)), ("peer", (255, 255, 0), (12, 8))):
        (tmp_path / "out" / m).mkdir(parents=True)
        Image.new("RGB", size, colour).save(tmp_path / "out" / m / "p__wave.png")
    out = tmp_path / "strip.jpg"
    assert strip_mod.main([str(tmp_path), "--paintings", str(painting), "--photos", "p", "--methods", "a", "peer",
                           "--cell", "40", "--out", str(out)]) == 0
    img = Image.open(out).convert("RGB")
    # columns: painting 40 px, photo 60, a 60, peer 60 (scaled to the photo's size), 2 px gaps
    assert img.size == (40 + 3 * 60 + 8, strip_mod.LABEL_H + 42)
    y = strip_mod.LABEL_H + 20
    px = [img.getpixel((x, y)) for x in (20, 42 + 30, 104 + 30, 166 + 30)]
    assert px[0][1] > 200 and px[1][2] > 200 and px[2][0] > 200 and px[3][0] > 200 and px[3][1] > 200
