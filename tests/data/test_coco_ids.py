"""A COCO captions file is data: its ids are checked to be what COCO's are (integers from 0 to
2^63-1) before any is used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fst.cli import main as cli

from crafted import one_line_error
from runs import ROOT

CAT = ROOT / "fst" / "assets" / "photos" / "cat.jpg"


def coco_root(tmp_path: Path, image_id: str, annotation_image_id: str = "1") -> Path:
    root = tmp_path / "coco"
    (root / "train2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    shutil.copy(CAT, root / "train2017" / "000000000001.jpg")
    # Written as text: JSON's 1e999 is a number Python reads as inf.
    (root / "annotations" / "captions_train2017.json").write_text(
        '{"images": [{"file_name": "000000000001.jpg", "id": %s}], '
        '"annotations": [{"image_id": %s, "id": 7, "caption": "a cat"}]}' % (image_id, annotation_image_id))
    return root


@pytest.mark.parametrize(("image_id", "annotation_image_id", "message"), [
    ("1e999", "1", "image id inf is not an integer from 0 to 2^63-1"),
    ("1", "-1e999", "image_id -inf is not an integer from 0 to 2^63-1"),
    ("1e300", "1", "image id 1e+300 is not an integer from 0 to 2^63-1"),
    ("-3", "1", "image id -3 is not an integer from 0 to 2^63-1"),
    ("true", "1", "image id True is not an integer from 0 to 2^63-1"),
    ("[1]", "1", "image id a list is not an integer from 0 to 2^63-1"),
    ('"12a"', "1", "image id '12a' is not an integer from 0 to 2^63-1"),
])
def test_a_coco_id_that_is_no_id_is_one_line(image_id: str, annotation_image_id: str, message: str,
                                             tmp_path: Path, capsys) -> None:
    """Seen: `OverflowError: cannot convert float infinity to integer` for an image id 1e999."""
    root = coco_root(tmp_path, image_id, annotation_image_id)
    err = one_line_error(["shards", str(root), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert f"{root}/annotations/captions_train2017.json: not a COCO captions file (ValueError: {message})" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("image_id", ["1", "1.0", '"1"'])
def test_coco_ids_as_coco_writes_them_still_read(image_id: str, tmp_path: Path, capsys) -> None:
    root = coco_root(tmp_path, image_id)
    assert cli(["shards", str(root), "--out", str(tmp_path / "out"), "--quiet", "--workers", "1"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["samples"] == 1
