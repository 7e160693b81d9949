"""Damaged and misplaced files are refused in one line: flipped bytes, files that are no fst
checkpoint, metadata that does not fit the weights; and the readers give what torch's own loaders
give on good files."""

from __future__ import annotations

import json
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from fst.artefacts.checkpoint import payload
from fst.artefacts.exported import load_exported
from fst.cli import main as cli

from crafted import member, one_line_error, rewrite_zip, stylize_refused, torch_bytes
from nets import make_net

pytestmark = pytest.mark.usefixtures("one_thread")


# --- 2. silent corruption -----------------------------------------------------------------------


def flip_bytes(path: Path, where: int, dst: Path) -> Path:
    data = bytearray(path.read_bytes())
    for i in range(where, where + 4):
        data[i] ^= 0x5A
    dst.write_bytes(bytes(data))
    return dst


def member_data_offset(path: Path, suffix: str) -> int:
    """Where a stored zip member's bytes start: after its 30-byte local header, name and extra field."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member(path, suffix))
    data = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def test_checkpoint_with_flipped_bytes_is_not_exported(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = flip_bytes(ckpt, member_data_offset(ckpt, "/data/0") + 100, tmp_path / "bad.ckpt")
    assert zipfile.ZipFile(bad).testzip() is not None  # what the user saw: a bad CRC, and exit 0
    err = one_line_error(["export", str(bad), "--out", str(tmp_path / "m.pt")], capsys)
    assert "bad.ckpt: damaged: member starry/data/0 fails its CRC check" in err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(("fmt", "where"), [("torchscript", "data/0"), ("export", "weights/weight_0"), ("onnx", None)])
def test_artefact_with_flipped_weight_bytes_is_refused(fmt: str, where: str | None, artefacts: dict[str, Path], image: Path,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = artefacts[fmt]
    if where is not None:  # zip archives: the member's CRC
        offset = member_data_offset(src, where) + 100
    else:  # ONNX has no checksum: the weights digest fst records at export
        import onnx

        offset = src.read_bytes().index(onnx.load(str(src)).graph.initializer[0].raw_data) + 100
    bad = flip_bytes(src, offset, tmp_path / f"bad{src.suffix}")
    err = stylize_refused(bad, image, capsys)
    assert f"bad{src.suffix}: damaged: " in err and ("CRC" in err if where else "digest recorded at export" in err)


# --- 3. data loss -------------------------------------------------------------------------------


def test_export_never_overwrites_a_checkpoint(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run.ckpt"
    run.write_bytes(ckpt.read_bytes())
    before = run.read_bytes()
    (tmp_path / "link.pt").symlink_to(run)
    (tmp_path / "other.ckpt").write_bytes(before)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "m.pt").write_bytes(before)  # a checkpoint named like the export it would become
    cases = [
        (str(run), str(run), "run.ckpt: is an input of this command"),
        (str(run), str(tmp_path / "link.pt"), "link.pt: is an input of this command"),
        (str(tmp_path / "d" / "m.pt"), str(tmp_path / "d"), "m.pt: is an input of this command"),
        (str(run), str(tmp_path / "other.ckpt"), "other.ckpt: is a training checkpoint, which fst export never overwrites"),
    ]
    for src, out, message in cases:
        assert message in one_line_error(["export", src, "--out", out, "--format", "torchscript"], capsys)
    for path in (run, tmp_path / "other.ckpt", tmp_path / "d" / "m.pt"):
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "link.pt", "other.ckpt", "run.ckpt"]
    # Exporting again over an exported model is still allowed.
    assert cli(["export", str(run), "--out", str(tmp_path / "m.pt")]) == 0
    assert cli(["export", str(run), "--out", str(tmp_path / "m.pt")]) == 0


# --- 5. not a checkpoint at all -----------------------------------------------------------------


def not_checkpoints(tmp: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (file contents, what the one-line error says)."""
    good = payload(make_net(), style_name="s", style_loss="gram")

    def changed(**kw: Any) -> dict[str, Any]:
        return {**good, **kw}

    return {
        "text": (b"hi\n", "not a checkpoint: neither a zip archive nor a pickle"),
        "empty": (b"", "not a checkpoint: neither a zip archive nor a pickle"),
        "plain pickle": (pickle.dumps({"fst": {}, "state_dict": {}}),
                         "not a checkpoint (a pickle, but not one torch.save wrote)"),
        "other torch file": (torch_bytes({"a": 1}, tmp / "t"), "not an fst checkpoint (no 'fst' metadata"),
        "a tensor": (torch_bytes(torch.ones(3), tmp / "t"), "not an fst checkpoint (no 'fst' metadata"),
        "fst not a dict": (torch_bytes(changed(fst=[1, 2]), tmp / "t"), "its 'fst' entry is a list, not a dict"),
        "state_dict not a dict": (torch_bytes(changed(state_dict=[1]), tmp / "t"), "its 'state_dict' is not a dict"),
        "step not an int": (torch_bytes(changed(global_step="7"), tmp / "t"), "its global_step is not an integer"),
        "config not ints": (torch_bytes(changed(fst={**good["fst"], "net": {"channels": "8", "n_residual": 1}}), tmp / "t"),
                            "transformer config {'channels': '8', 'n_residual': 1} is not integers"),
        "huge config": (torch_bytes(changed(fst={**good["fst"], "net": {"channels": 8, "n_residual": 10**9}}), tmp / "t"),
                        "too few for the 1000000000 residual blocks of its config"),
        "wrong shapes": (torch_bytes(changed(fst={**good["fst"], "net": {"channels": 16, "n_residual": 1}}), tmp / "t"),
                         "transformer weights do not match its config {'channels': 16, 'n_residual': 1, 'output': 'sigmoid', 'output_gain': 1.0, 'n_styles': 1}: "
                         "conv_in.1.weight has shape (8, 3, 9, 9), expected (16, 3, 9, 9)"),
        "int weights": (torch_bytes(changed(state_dict={k: v.long() for k, v in good["state_dict"].items()}), tmp / "t"),
                        "is a torch.int64, not a float tensor"),
        "half a zip": (torch_bytes(good, tmp / "t")[:3000], "not a readable checkpoint (truncated or corrupt?)"),
    }


NOT_CHECKPOINTS = ["text", "empty", "plain pickle", "other torch file", "a tensor", "fst not a dict", "state_dict not a dict",
                   "step not an int", "config not ints", "huge config", "wrong shapes", "int weights", "half a zip"]


@pytest.mark.parametrize("case", NOT_CHECKPOINTS)
def test_file_that_is_no_fst_checkpoint_is_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    contents, message = not_checkpoints(tmp_path)[case]
    (tmp_path / "x.ckpt").write_bytes(contents)
    err = one_line_error(["export", str(tmp_path / "x.ckpt"), "--out", str(tmp_path / "m.pt")], capsys)
    assert "x.ckpt: " in err and message in err, err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"net": {"channels": 16, "n_residual": 1}}, "weights do not match its config {'channels': 16, 'n_residual': 1, 'output': 'sigmoid', 'output_gain': 1.0, 'n_styles': 1}"),
    ({"dtype": "fp64"}, "fst metadata with dtype 'fp64'"),
    ({"dtype": "fp16"}, "weight conv_in.1.bias is not fp16, the dtype its metadata records"),
])
def test_artefact_whose_metadata_does_not_fit_its_weights_is_refused(change: dict[str, Any], message: str,
                                                                     artefacts: dict[str, Path], tmp_path: Path) -> None:
    from fst.core.errors import FstError

    src = artefacts["torchscript"]
    name = member(src, "extra/fst.json")
    meta = {**json.loads(zipfile.ZipFile(src).read(name)), **change}
    with pytest.raises(FstError, match=re.escape(message)):
        load_exported(rewrite_zip(src, tmp_path / "m.pt", {name: json.dumps(meta).encode()}))


def test_pt2_in_the_flat_layout_of_older_torch_is_read(artefacts: dict[str, Path], tmp_path: Path) -> None:
    """torch < 2.8 (fst supports >= 2.4) writes .pt2 files as flat members with pickled weights."""
    serde = pytest.importorskip("torch._export.serde.serialize")
    from torch.export import Dim

    net = make_net()
    dims = {0: Dim("batch", min=1, max=64), 2: Dim("height", min=5), 3: Dim("width", min=5)}
    artifact = serde.serialize(torch.export.export(net, (torch.rand(2, 3, 67, 91),), dynamic_shapes={"x": dims}))
    meta = zipfile.ZipFile(artefacts["export"]).read(member(artefacts["export"], "extra/fst.json"))
    with zipfile.ZipFile(tmp_path / "old.pt2", "w") as z:  # the members torch 2.4-2.7 writes
        for name, data in (("serialized_exported_program.json", artifact.exported_program),
                           ("serialized_state_dict.pt", artifact.state_dict), ("serialized_constants.pt", artifact.constants),
                           ("serialized_example_inputs.pt", artifact.example_inputs), ("version", b"8.0"),
                           ("extra_files/fst.json", meta)):
            z.writestr(name, data)
    model, got = load_exported(tmp_path / "old.pt2")
    x = torch.rand(1, 3, 37, 50)
    assert got["format"] == "export" and torch.equal(model(x), net(x).detach())


# --- the reader itself --------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reader_gives_what_torch_load_gives(legacy: bool, tmp_path: Path) -> None:
    from fst.untrusted.torch_files import read_torch

    base = torch.arange(20, dtype=torch.bfloat16).reshape(4, 5)
    obj = {"view": base[1:, 2:], "base": base, "half": torch.ones(3, dtype=torch.float16), "bool": torch.tensor([True, False]),
           "param": torch.nn.Parameter(torch.ones(2)), "empty": torch.empty(0), "scalar": torch.tensor(3.0),
           "cl": torch.rand(2, 3, 4, 5).to(memory_format=torch.channels_last), "state": make_net().state_dict(),
           "plain": [1, 2.5, "x", None, (True, b"y"), {3}]}
    torch.save(obj, tmp_path / "f.pt", _use_new_zipfile_serialization=not legacy)
    got, want = read_torch(tmp_path / "f.pt", "f.pt"), torch.load(tmp_path / "f.pt", weights_only=True)

    def same(a: Any, b: Any) -> bool:
        if isinstance(b, torch.Tensor):
            return type(a) is torch.Tensor and a.dtype == b.dtype and a.stride() == b.stride() and torch.equal(a, b)
        if isinstance(b, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in b)
        if isinstance(b, (list, tuple)):
            return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return a == b

    assert same(got, want)
    assert got["view"].untyped_storage().data_ptr() == got["base"].untyped_storage().data_ptr()  # one storage, shared


def test_pt2_dtype_codes_are_torch_schema_codes() -> None:
    from torch._export.serde.schema import ScalarType

    from fst.untrusted.torch_export import PT2_DTYPES

    assert PT2_DTYPES == {ScalarType.HALF.value: torch.float16, ScalarType.FLOAT.value: torch.float32,
                          ScalarType.BFLOAT16.value: torch.bfloat16}
