"""scripts/study_universal.py: how the per-image scores become the study's rows (the means over photos,
the style moved relative to the unstylized photo, the mean over paintings)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "study_universal.py"
spec = importlib.util.spec_from_file_location("study_universal", SCRIPT)
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def row(method: str, painting: str, photo: str, gram: float, mean_std: float, sw: float, content: float) -> dict:
    return {"method": method, "painting": painting, "photo": photo, "style_gram": gram, "style_mean_std": mean_std,
            "style_sliced_wasserstein": sw, "content": content}


def test_rows_average_photos_and_measure_style_against_the_photo() -> None:
    per = [row("photo", "a", "p1", 4.0, 2.0, 1.0, 0.0), row("photo", "a", "p2", 4.0, 2.0, 1.0, 0.0),
           row("net", "a", "p1", 1.0, 1.0, 1.0, 0.2), row("net", "a", "p2", 3.0, 1.0, 1.0, 0.4),
           row("photo", "b", "p1", 1.0, 1.0, 1.0, 0.0), row("net", "b", "p1", 1.0, 1.0, 1.0, 0.6)]
    rows = {(r["method"], r["painting"]): r for r in study.summarise(per)}
    net_a = rows["net", "a"]
    assert net_a["photos"] == 2 and net_a["style_gram"] == 2.0 and net_a["content"] == pytest.approx(0.3)
    # geometric mean of 2/4, 1/2 and 1/1
    assert net_a["style_vs_photo"] == pytest.approx(math.exp((math.log(0.5) * 2) / 3))
    assert rows["photo", "a"]["style_vs_photo"] == 1.0
    assert rows["net", "b"]["style_vs_photo"] == 1.0  # the photo's own painting, not painting a's
    both = rows["net", "all"]  # each painting counts once, whatever its number of photos
    assert both["content"] == pytest.approx((0.3 + 0.6) / 2) and both["photos"] == 3
    assert both["style_vs_photo"] == pytest.approx((net_a["style_vs_photo"] + 1.0) / 2)


def test_method_pairs_are_name_equals_path() -> None:
    assert study.pairs(["shipped=sample:universal", "a=b=c"], "--universal") == [("shipped", "sample:universal"),
                                                                                 ("a", "b=c")]
    with pytest.raises(SystemExit, match="NAME=PATH"):
        study.pairs(["no_name"], "--universal")
