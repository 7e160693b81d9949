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


def test_knob_grid_names_keep_the_defaults_name_and_tell_the_others_apart() -> None:
    assert study.knob_suffix(1.0, 512) == ""  # the study's earlier rows keep their names
    names = {study.knob_suffix(s, z) for s in (1.0, 1.5, 2.0) for z in (256, 512, 1024)}
    assert len(names) == 9 and "_ss1.5_sz256" in names and "_ss1_sz1024" in names


def test_photos_cover_the_frame_and_are_cropped_to_it(tmp_path: Path) -> None:
    from PIL import Image
    wide, tall = tmp_path / "wide.png", tmp_path / "tall.png"
    Image.new("RGB", (40, 20), (200, 10, 10)).save(wide)
    Image.new("RGB", (12, 30), (10, 200, 10)).save(tall)
    out = study.prepare_photos([wide, tall], 512, tmp_path / "photos", (16, 9))
    assert [Image.open(p).size for p in out] == [(16, 9), (16, 9)]
    assert Image.open(out[0]).getpixel((8, 4))[0] > 150  # the photo's pixels, scaled, not padding
    plain = study.prepare_photos([wide], 24, tmp_path / "plain")
    assert Image.open(plain[0]).size == (24, 12)  # without a frame: the long side, aspect kept


def test_a_two_pass_variant_stylizes_each_first_output_again_with_its_own_painting(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`--variants "tpc=two-pass --color-match covariance"`: the first pass as usual, then each output
    once more with its painting and the same arguments (the commands recorded, not run: fst's own
    stylize is tested elsewhere)."""
    from PIL import Image
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], log: Path | None = None) -> float:
        calls.append(cmd)
        out = Path(cmd[cmd.index("--out") + 1])
        if out.suffix:  # a second pass: one file
            Image.new("RGB", (8, 8)).save(out)
        else:
            out.mkdir(parents=True)
            for photo in ("p1", "p2"):
                for painting in ("a", "b"):
                    Image.new("RGB", (8, 8)).save(out / f"{photo}_{painting}.png")
        return 0.0

    monkeypatch.setattr(study, "run", fake_run)
    photos, paintings = [tmp_path / "p1.png", tmp_path / "p2.png"], [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    study.fst_universal("M", "inter", photos, paintings, tmp_path, (1.0, 512), ["two-pass", "--color-match", "covariance"])
    assert len(calls) == 1 + 4
    assert all("two-pass" not in c and c[c.index("--color-match") + 1] == "covariance" for c in calls)
    second = calls[1:]
    assert sorted((Path(c[c.index("stylize") + 1]).name, Path(c[c.index("--style-image") + 1]).name) for c in second) == [
        ("p1_a.png", "a.jpg"), ("p1_b.png", "b.jpg"), ("p2_a.png", "a.jpg"), ("p2_b.png", "b.jpg")]
    assert all(c.count("--style-image") == 1 for c in second)
    assert sorted(p.name for p in tmp_path.glob("*__*.png")) == ["p1__a.png", "p1__b.png", "p2__a.png", "p2__b.png"]
