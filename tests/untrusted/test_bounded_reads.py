"""Hostile sizes are refused in one line before they cost anything: zip bombs, metadata with huge
integers, shared lists that repeat without end, JSON nested beyond the parser, and an exported
model given where a training checkpoint belongs.

The loads that once took minutes or gigabytes run in a child process under a memory cap and a
timeout (`crafted.load_in_child`), so that an fst without the bounds fails the test instead of
the machine.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from fst.artefacts.checkpoint import payload
from fst.artefacts.exported import load_exported

from crafted import bomb_zip, load_in_child, member, one_line_error, rewrite_zip, stylize_refused
from nets import make_net

pytestmark = pytest.mark.usefixtures("one_thread")

# What importing torch and fst costs a child (about 640 MB resident): a refused bomb adds nothing.
# Reading the 3 GiB member took 4.8 GB and 25 s before the bound.
CHILD_RSS_MB = 1500


def refused_quickly(result: dict[str, Any], message: str) -> str:
    assert "error" in result, result
    assert "\n" not in result["error"] and message in result["error"], result
    assert result["seconds"] < 5 and result["rss_mb"] < CHILD_RSS_MB, result
    return result["error"]


# --- 9. zip bombs -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "suffix"), [("checkpoint", "/data/0"), ("checkpoint", None), ("torchscript", "/data/0"),
                                              ("export", "weights/weight_0")])
def test_zip_bomb_is_refused_before_it_is_decompressed(kind: str, suffix: str | None, ckpt: Path,
                                                       artefacts: dict[str, Path], tmp_path: Path) -> None:
    """A real file with one member (a tensor's storage, or an extra member nothing reads) deflated
    from 3 GiB of zeros, its CRC and size true: 3.3 MB on disk."""
    src = ckpt if kind == "checkpoint" else artefacts[kind]
    name = member(src, suffix) if suffix else f"{member(src, 'data.pkl').split('/')[0]}/junk"
    bomb = bomb_zip(src, tmp_path / f"bomb{src.suffix}", name)
    assert bomb.stat().st_size < 4 << 20 and zipfile.ZipFile(bomb).getinfo(name).file_size == 3 << 30
    result = load_in_child("checkpoint" if kind == "checkpoint" else "exported", bomb)
    err = refused_quickly(result, f"bomb{src.suffix}: refused: its members declare")
    assert f"member {name}: 3221225472 bytes from" in err and "a zip bomb?" in err


def test_oversized_metadata_member_is_refused_unread(artefacts: dict[str, Path], tmp_path: Path) -> None:
    """fst.json within the archive's bound (a stored member, as big as the file) but far over what
    fst writes there."""
    from fst.core.errors import FstError

    src = artefacts["torchscript"]
    name = member(src, "extra/fst.json")
    big = rewrite_zip(src, tmp_path / "big.pt", {name: b" " * (2 << 20) + zipfile.ZipFile(src).read(name)})
    with pytest.raises(FstError, match=re.escape(f"refused: member {name} declares 2")):
        load_exported(big)


# --- 10, 11. metadata with huge values ----------------------------------------------------------


def crafted_checkpoint(path: Path, **meta: Any) -> Path:
    ckpt = payload(make_net(), style_name="s", style_loss="gram", global_step=3)
    ckpt["fst"].update(meta)
    torch.save(ckpt, path)
    return path


def test_checkpoint_with_a_5000_digit_step_is_one_line(image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ValueError: Exceeds the limit (4300 digits)` came from printing the step, after export wrote it."""
    bad = crafted_checkpoint(tmp_path / "big.ckpt", global_step=10**5000)
    err = one_line_error(["export", str(bad), "--out", str(tmp_path / "m.pt")], capsys)
    assert "big.ckpt: refused: its checkpoint holds an integer of 16610 bits" in err
    assert not (tmp_path / "m.pt").exists()
    assert "integer of 16610 bits" in stylize_refused(bad, image, capsys)


def shared_lists(levels: int, width: int = 2) -> list[Any]:
    """`width`^`levels` leaves in a pickle of a few hundred bytes: each level is one list shared."""
    names: list[Any] = ["starry_night"]
    for _ in range(levels):
        names = [names] * width
    return names


@pytest.mark.parametrize(("levels", "width", "message"), [(40, 2, "is nested more than 32 levels deep"),
                                                          (20, 8, "holds more than 100000 values")])
def test_style_names_of_shared_lists_are_refused_quickly(levels: int, width: int, message: str, tmp_path: Path) -> None:
    """2^40 names took two minutes and 5 GB before a MemoryError (repr in stylize, json.dumps in export)."""
    bad = crafted_checkpoint(tmp_path / "lists.ckpt", styles=shared_lists(levels, width))
    assert bad.stat().st_size < 1 << 20
    refused_quickly(load_in_child("export", bad, timeout=30), f"lists.ckpt: refused: its checkpoint {message}")


# --- 12. exported metadata beyond what fst writes -----------------------------------------------


def with_meta(src: Path, dst: Path, text: bytes) -> Path:
    return rewrite_zip(src, dst, {member(src, "extra/fst.json"): text})


def test_exported_metadata_nested_100000_deep_is_one_line(artefacts: dict[str, Path], image: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A RecursionError traceback from json.loads before."""
    bad = with_meta(artefacts["torchscript"], tmp_path / "deep.pt", b"[" * 100_000 + b"]" * 100_000)
    assert "deep.pt: refused: its fst.json is nested too deeply to parse" in stylize_refused(bad, image, capsys)
    bad = with_meta(artefacts["export"], tmp_path / "deep.pt2", b"[" * 40 + b"]" * 40)
    assert "deep.pt2: refused: its fst.json is nested more than 32 levels deep" in stylize_refused(bad, image, capsys)


def exported_meta(src: Path) -> dict[str, Any]:
    return json.loads(zipfile.ZipFile(src).read(member(src, "extra/fst.json")))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("global_step", 10**30, "its fst.json is not readable JSON: an integer of 31 digits"),
    ("global_step", True, "its fst.json has a global_step that is not an integer from 0 to 2^63-1: True"),
    ("global_step", -1, "its fst.json has a global_step that is not an integer from 0 to 2^63-1: -1"),
    ("global_step", 2.5, "its fst.json has a global_step that is not an integer from 0 to 2^63-1: 2.5"),
    ("styles", ["a", 7], "its fst.json has a styles that is not a list of non-empty names: a list"),
    ("style_name", "x" * 100_000, "refused: its fst.json holds a text of 100000 characters"),
    ("style_name", {"a": 1}, "its fst.json has a style_name that is not a name: a dict"),
    ("weights_sha256", 12, "its fst.json has a weights_sha256 that is not 64 hex digits: 12"),
    ("input_range", [0, float("nan")], "its fst.json is not readable JSON: NaN is not a number JSON allows"),
    ("fst_version", ["0.1"], "its fst.json has a fst_version that is not a short text: a list"),
])
def test_exported_metadata_of_the_wrong_type_or_size_is_one_line(field: str, value: Any, message: str,
                                                                 artefacts: dict[str, Path], image: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = artefacts["torchscript"]
    text = json.dumps({**exported_meta(src), field: value}).encode()
    bad = with_meta(src, tmp_path / "m.pt", text)
    err = stylize_refused(bad, image, capsys)
    assert f"m.pt: {message}" in err, err


@pytest.mark.parametrize(("meta", "message"), [
    ({"global_step": -5}, "its fst metadata has a global_step that is not an integer from 0 to 2^63-1: -5"),
    ({"style_name": "s" * 70_000}, "refused: its checkpoint holds a text of 70000 characters"),
    ({"version": 3}, "its fst metadata has a version that is not a short text: 3"),
    ({"styles": ["a", None]}, "its fst metadata has a styles that is not a list of non-empty names: a list"),
    ({"net": {**make_net().config, "channels": True}}, "transformer config"),
    ({"net": {**make_net().config, "output_gain": float("nan")}}, "transformer config"),
    ({"extra": {1.5: object}}, "refused: its checkpoint holds a type, not plain data"),
])
def test_checkpoint_metadata_of_the_wrong_type_or_size_is_one_line(meta: dict[str, Any], message: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = crafted_checkpoint(tmp_path / "m.ckpt", **meta) if "extra" not in meta else None
    if bad is None:  # a global that is not code, but not data either (torch.save pickles a class by name)
        ckpt = payload(make_net(), style_name="s", style_loss="gram")
        ckpt["fst"]["extra"] = {"k": torch.float32}
        torch.save(ckpt, tmp_path / "m.ckpt")
        bad, message = tmp_path / "m.ckpt", "refused: its checkpoint holds a dtype, not plain data"
    err = one_line_error(["export", str(bad), "--out", str(tmp_path / "o.pt")], capsys)
    assert f"m.ckpt: {message}" in err, err


# --- 18. an exported model where a checkpoint belongs -------------------------------------------


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_exporting_an_exported_model_says_what_it_is(fmt: str, artefacts: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """It said the file "holds a pickle that would run code (__torch__.fst.export.InferenceNet)"."""
    src = artefacts[fmt]
    err = one_line_error(["export", str(src), "--out", str(tmp_path / "o.onnx")], capsys)
    kind = {"torchscript": "a TorchScript model", "export": "a torch.export model"}[fmt]
    assert f"{src.name}: is {kind} that fst export wrote, not a training checkpoint" in err
    assert "would run code" not in err and not (tmp_path / "o.onnx").exists()
