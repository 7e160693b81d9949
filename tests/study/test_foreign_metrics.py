"""`fst compare --calibrate --from-studies` reads each study's metrics.csv as data: a CSV fst did not
write is one line naming the file and what is wrong in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from fst.cli import main as cli

from crafted import one_line_error

GOOD = ("style,loss,family,weight,style_weight,content\n"
        ",photo (untrained),,,,0.0\n"
        "starry_night,gram,inter,1,1,0.5\nstarry_night,gram,inter,1,10,0.9\n")


@pytest.mark.parametrize(("text", "message"), [
    ("a,b\n1,2\n", "not a metrics.csv that fst compare wrote (no column style, loss, family, weight, style_weight, "
                   "content)"),
    (GOOD.replace(",content", ""), "not a metrics.csv that fst compare wrote (no column content)"),
    (GOOD.replace("1,10,0.9", "1,ten,0.9"), "line 4: style_weight is 'ten', not a number > 0"),
    (GOOD.replace("1,10,0.9", "1,10,-0.9"), "line 4: content is '-0.9', not a number > 0"),
    (GOOD.replace("1,10,0.9", "1,10,nan"), "line 4: content is 'nan', not a number > 0"),
    (GOOD.replace("1,10,0.9", "1,10"), "line 4: content is None, not a number > 0"),
    (GOOD.encode("utf-16").decode("latin-1"), "not a metrics.csv that fst compare wrote ('utf-8' codec can't decode"),
])
def test_a_csv_fst_did_not_write_is_one_line(text: str, message: str, tmp_path: Path, capsys) -> None:
    """Seen: `KeyError: 'loss'` for a CSV of other columns."""
    studies = [tmp_path / "a", tmp_path / "b"]
    for folder in studies:
        folder.mkdir()
        (folder / "metrics.csv").write_bytes(GOOD.encode())
    (studies[1] / "metrics.csv").write_bytes(text.encode("latin-1"))
    err = one_line_error(["compare", "--calibrate", "--losses", "gram", "--from-studies", *map(str, studies),
                          "--out", str(tmp_path / "out")], capsys)
    assert f"{studies[1] / 'metrics.csv'}: {message}" in err
    assert not (tmp_path / "out").exists()


def test_the_csv_fst_writes_is_read(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.csv").write_text(GOOD)
    assert cli(["compare", "--calibrate", "--losses", "gram", "--from-studies", str(tmp_path / "a"),
                "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "calibration_content.csv").read_text().startswith("loss,family,current_weight")
