"""Artefacts are data, never code: crafted, damaged and misplaced files are refused in one line.

Every crafted file here would create `marker` if fst let torch, TorchScript or onnxruntime run what
it carries; the marker must never exist. fst-specific modules are imported inside the tests that
need them, so each test also runs against an fst without them (how each was seen failing first).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from fst.checkpoint import payload
from fst.cli import main as cli
from fst.exported import load_exported
from crafted import member, one_line_error, rewrite_zip, stylize_refused
from nets import export_all, make_net, save_checkpoint

TINY = str(Path(__file__).resolve().parent / "configs" / "tiny.yaml")

pytestmark = pytest.mark.usefixtures("one_thread")


class RunsCode:
    """Unpickling this runs a shell command that creates `marker`: what a crafted pickle carries."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


RUNS = f"would run code ({os.system.__module__}.system); fst loads only tensors"  # posix.system on Linux


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "starry.ckpt"
    save_checkpoint(path, "starry_night", 7)
    return path


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory, ckpt: Path) -> dict[str, Path]:
    return export_all(ckpt, tmp_path_factory.mktemp("exported"))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    Image.new("RGB", (40, 30), (90, 140, 200)).save(tmp_path / "in.png")
    return tmp_path / "in.png"


def torch_bytes(obj: Any, path: Path) -> bytes:
    torch.save(obj, path)
    return path.read_bytes()


# --- 1. code execution --------------------------------------------------------------------------


def test_checkpoint_whose_pickle_runs_code_is_refused(ckpt: Path, image: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    evil = payload(make_net(), style_name="starry_night", style_loss="gram")
    evil["fst"]["style_name"] = RunsCode(marker)
    torch.save(evil, tmp_path / "evil.ckpt")
    err = one_line_error(["export", str(tmp_path / "evil.ckpt"), "--out", str(tmp_path / "m.pt")], capsys)
    assert f"evil.ckpt: refused: the file holds a pickle that {RUNS}" in err
    assert not (tmp_path / "m.pt").exists()
    assert RUNS in stylize_refused(tmp_path / "evil.ckpt", image, capsys)
    assert not marker.exists()


def scripted_payload(kind: str, marker: Path, meta: str, path: Path) -> Path:
    """A TorchScript archive with fst's weights and metadata whose own code creates `marker`: on
    every call ("call"), or on load, in ``__setstate__`` ("load"). `torch.from_file(shared=True)` is
    an aten op that creates the file it maps (an op without a used result would be optimised away)."""
    from typing import Tuple

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notes, the tracer's notes
        traced = torch.jit.trace(make_net(), torch.rand(1, 3, 32, 32), check_trace=False)

    class OnCall(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.marker = traced, str(marker)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) + torch.from_file(self.marker, True, 2, dtype=torch.uint8).sum() * 0

    class OnLoad(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.marker, self.blob = traced, str(marker), torch.zeros(2, dtype=torch.uint8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        @torch.jit.export
        def __getstate__(self) -> Tuple[str, bool]:
            return (self.marker, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[str, bool]) -> None:
            self.blob = torch.from_file(state[0], True, 2, dtype=torch.uint8)
            self.marker, self.training = state

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.* is deprecated" (torch >= 2.9)
        module = torch.jit.script(OnCall() if kind == "call" else OnLoad())
        torch.jit.save(module, str(path), _extra_files={"fst.json": meta})
    return path


@pytest.mark.parametrize(("kind", "message"), [("call", "calls torch.from_file"), ("load", "defines __setstate__")])
def test_torchscript_whose_code_creates_a_file_is_refused(kind: str, message: str, artefacts: dict[str, Path], image: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    meta = zipfile.ZipFile(artefacts["torchscript"]).read(member(artefacts["torchscript"], "extra/fst.json")).decode()
    evil = scripted_payload(kind, marker, meta, tmp_path / "evil.pt")
    err = stylize_refused(evil, image, capsys)
    assert f"evil.pt: refused: its TorchScript code {message}" in err and "fst runs no file's code" in err
    assert not marker.exists()


def test_torchscript_calling_a_torchvision_file_op_is_refused(artefacts: dict[str, Path], tmp_path: Path) -> None:
    from fst.errors import FstError

    src = artefacts["torchscript"]
    with zipfile.ZipFile(src) as z:  # InferenceNet's code (mangled to export/___torch_mangle_N.py if scripted before)
        code = next(n for n in z.namelist() if "/code/__torch__/fst/export" in n and n.endswith(".py"))
        text = z.read(code).decode()
    assert "    return _0" in text
    text = text.replace("    return _0", '    ops.image.write_file("ran", torch.zeros([2], dtype=0))\n    return _0')
    evil = rewrite_zip(src, tmp_path / "evil.pt", {code: text.encode()})
    with pytest.raises(FstError, match=r"evil.pt: refused: its TorchScript code calls ops.image.write_file"):
        load_exported(evil)


def test_pt2_whose_weight_is_a_pickle_that_runs_code_is_refused(artefacts: dict[str, Path], image: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The case seen: `torch.export.load` unpickles a weight marked `use_pickle` with weights_only=False."""
    marker, src = tmp_path / "ran", artefacts["export"]
    config_name = member(src, "data/weights/model_weights_config.json")
    config = json.loads(zipfile.ZipFile(src).read(config_name))
    entry = config["config"]["conv_in.1.weight"]
    entry["use_pickle"] = True
    weight = f"{config_name.rsplit('/', 1)[0]}/{entry['path_name']}"
    evil = rewrite_zip(src, tmp_path / "evil.pt2", {config_name: json.dumps(config).encode(),
                                                    weight: torch_bytes(RunsCode(marker), tmp_path / "w.pt")})
    assert f"evil.pt2: refused: the file holds a pickle that {RUNS}" in stylize_refused(evil, image, capsys)
    assert not marker.exists()


def test_pt2_whose_graph_calls_another_op_is_refused(artefacts: dict[str, Path], tmp_path: Path) -> None:
    from fst.errors import FstError

    src = artefacts["export"]
    name = member(src, "models/model.json")
    text = zipfile.ZipFile(src).read(name).decode()
    assert "torch.ops.aten.clamp.default" in text
    evil = rewrite_zip(src, tmp_path / "evil.pt2", {name: text.replace("torch.ops.aten.clamp.default",
                                                                       "torch.ops.image.write_file.default").encode()})
    with pytest.raises(FstError, match=r"refused: its graph calls torch.ops.image.write_file.default"):
        load_exported(evil)


def test_onnx_external_data_and_foreign_ops_are_refused(artefacts: dict[str, Path], image: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """ONNX runs no Python, but onnxruntime reads the files an ONNX model points to, and a
    runtime may register ops that do anything. fst reads only the initializers inside the file."""
    import onnx

    proto = onnx.load(str(artefacts["onnx"]))
    weight = proto.graph.initializer[0]
    (tmp_path / "elsewhere.bin").write_bytes(weight.raw_data)
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "elsewhere.bin"), ("length", str(len((tmp_path / "elsewhere.bin").read_bytes())))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "external.onnx").write_bytes(proto.SerializeToString())
    err = stylize_refused(tmp_path / "external.onnx", image, capsys)
    assert f"external.onnx: refused: tensor {weight.name!r} points to data in another file" in err

    proto = onnx.load(str(artefacts["onnx"]))
    proto.graph.node.append(onnx.helper.make_node("WriteFile", [], [], name="w", domain="evil.ops"))
    proto.opset_import.append(onnx.helper.make_opsetid("evil.ops", 1))
    (tmp_path / "foreign.onnx").write_bytes(proto.SerializeToString())
    assert "foreign.onnx: refused: node w is a evil.ops.WriteFile op" in stylize_refused(tmp_path / "foreign.onnx", image, capsys)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_weights_file_whose_pickle_runs_code_is_refused(legacy: bool, tmp_path: Path) -> None:
    from fst.errors import FstError
    from fst.weights import load_path

    marker = tmp_path / "ran"
    torch.save({"0.weight": RunsCode(marker)}, tmp_path / "vgg.pth", _use_new_zipfile_serialization=not legacy)
    with pytest.raises(FstError, match=re.escape(f"vgg.pth: refused: the file holds a pickle that {RUNS}")):
        load_path(tmp_path / "vgg.pth", "vgg16")
    (tmp_path / "vgg.safetensors").write_bytes((tmp_path / "vgg.pth").read_bytes())  # a pickle by another name
    with pytest.raises(FstError, match="vgg.safetensors: cannot read weights"):
        load_path(tmp_path / "vgg.safetensors", "vgg16")
    assert not marker.exists()


def test_fit_with_a_weights_file_that_runs_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    torch.save({"0.weight": RunsCode(marker)}, tmp_path / "vgg.pth")
    argv = ["fit", "--config", TINY, "--model.vgg_weights", str(tmp_path / "vgg.pth"),
            "--trainer.default_root_dir", str(tmp_path / "run"), "--checkpoint.dirpath", str(tmp_path / "run")]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("fst fit: error: ")  # after any notes
    assert f"vgg.pth: refused: the file holds a pickle that {RUNS}" in err
    assert not marker.exists()



def test_resume_from_a_checkpoint_that_runs_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--ckpt_path` goes through Lightning's loader, which on torch < 2.6 unpickles anything:
    fst's CheckpointIO reads it as data instead."""
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "global_step": 1, "loops": RunsCode(marker)}, tmp_path / "evil.ckpt")
    argv = ["fit", "--config", TINY, "--ckpt_path", str(tmp_path / "evil.ckpt"),
            "--trainer.default_root_dir", str(tmp_path / "run"), "--checkpoint.dirpath", str(tmp_path / "run" / "ckpt")]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"evil.ckpt: refused: the file holds a pickle that {RUNS}" in err
    assert not marker.exists()


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
        (str(run), str(run), "run.ckpt: is the checkpoint being exported"),
        (str(run), str(tmp_path / "link.pt"), "link.pt: is the checkpoint being exported"),
        (str(tmp_path / "d" / "m.pt"), str(tmp_path / "d"), "m.pt: is the checkpoint being exported"),
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
    from fst.errors import FstError

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
    from fst.untrusted import read_torch

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

    from fst.untrusted import PT2_DTYPES

    assert PT2_DTYPES == {ScalarType.HALF.value: torch.float16, ScalarType.FLOAT.value: torch.float32,
                          ScalarType.BFLOAT16.value: torch.bfloat16}
