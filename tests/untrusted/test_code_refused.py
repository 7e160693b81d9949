"""Artefacts are data, never code: a crafted file whose pickle, TorchScript code, graph or ONNX
external data would run code or read other files is refused in one line.

Every crafted file here would create `marker` if fst let torch, TorchScript or onnxruntime run what
it carries; the marker must never exist. fst-specific modules are imported inside the tests that
need them, so each test also runs against an fst without them (how each was seen failing first).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import warnings
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
from runs import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


class RunsCode:
    """Unpickling this runs a shell command that creates `marker`: what a crafted pickle carries."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


RUNS = f"would run code ({os.system.__module__}.system); fst loads only tensors"  # posix.system on Linux


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
    from fst.core.errors import FstError

    src = artefacts["torchscript"]
    with zipfile.ZipFile(src) as z:  # InferenceNet's code (mangled to export/___torch_mangle_N.py if scripted before)
        code = next(n for n in z.namelist() if "/code/__torch__/fst/artefacts/export" in n and n.endswith(".py"))
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
    from fst.core.errors import FstError

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
    from fst.core.errors import FstError
    from fst.models.weights import load_path

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
