"""scripts/gram_trace.py: each painting's Gram trace on the real VGG16, set against the photos', beside
the flicker a study's metrics.csv holds for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gram_trace.py"


def test_traces_are_set_beside_the_studys_flicker(tmp_path: Path, vgg16_weights: object) -> None:
    (tmp_path / "metrics.csv").write_text(
        "style,loss,temporal_weight,flicker_bikes\n"
        "starry_night,photo (untrained),,1.0\n"
        "starry_night,gram,0.0,14.0\nstarry_night,gram,300.0,3.9\n"
        "the_scream,gram,0.0,4.7\ngreat_wave,gram,0.0,7.5\n")
    out = subprocess.run([sys.executable, str(SCRIPT), "--size", "64", "--photos", "2", "--study", str(tmp_path),
                          "--styles", "sample:starry_night", "sample:the_scream", "sample:great_wave"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split(" | ")[0].strip("| "): line.strip("| ").split(" | ") for line in out.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| painting")}
    assert float(rows["starry_night"][-1]) == 14.0  # the run without the term, not the one with it
    assert float(rows["the_scream"][-1]) == 4.7
    relative = {name: float(rows[name][5]) for name in ("starry_night", "the_scream", "great_wave")}
    assert all(v > 0 for v in relative.values()) and len(set(relative.values())) == 3
    assert rows["(the 2 photos)"][5] == "1"
    assert "Spearman rank correlation of trace_vs_photos and flicker_bikes (gram, 3 paintings)" in out.stdout
