"""`fst export`: every format round-trips to the eager network, runs without fst, refuses bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fst.artefacts.checkpoint import payload
from fst.artefacts.export import export_model
from fst.artefacts.exported import DTYPES, FORMATS, SUFFIXES, adapted, load_exported, transformer_from_exported
from fst.cli import main as cli
from fst.models.transformer import TransformerNet

from nets import export_all, make_net

PHOTOS = Path(__file__).resolve().parents[2] / "fst" / "assets" / "photos"


def photo(name: str, size: tuple[int, int]) -> torch.Tensor:
    """A real photo resized to (W, H), as (1, 3, H, W) in [0, 1]."""
    img = Image.open(PHOTOS / name).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    return make_net()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, net: TransformerNet) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "starry.ckpt"
    torch.save(payload(net, style_name="starry_night", style_loss="gram", global_step=1234), path)
    return path


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory, ckpt: Path) -> dict[str, Path]:
    return export_all(ckpt, tmp_path_factory.mktemp("exported"))


def runtime(path: Path, fmt: str, dtype: str = "fp32", channels_last: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """The artefact run by its own runtime, as its users run it. fst itself never runs an
    artefact's code or graph (only its weights, in fst's network): this is what checks that the
    graph each exporter wrote computes what that network computes. Only on files this test wrote."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated" (torch >= 2.9)
            return torch.jit.load(str(path), map_location="cpu").eval()
    if fmt == "export":
        return adapted(torch.export.load(str(path)).module(), DTYPES[dtype], channels_last)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = np.float16 if dtype == "fp16" else np.float32
    return lambda x: torch.from_numpy(session.run(None, {"image": x.numpy().astype(feed)})[0]).to(x.dtype)


def inputs() -> list[torch.Tensor]:
    torch.manual_seed(1)
    # Odd sizes; a batch of two different images catches batch-statistics instance norm.
    return [torch.rand(1, 3, 67, 91), photo("cat.jpg", (91, 67)), torch.cat([photo("dog.jpg", (53, 97)), torch.rand(1, 3, 97, 53)])]


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_matches_eager(fmt: str, artefacts: dict[str, Path], net: TransformerNet) -> None:
    model, meta = load_exported(artefacts[fmt])
    assert meta["format"] == fmt and meta["dtype"] == "fp32"
    for run in (model, runtime(artefacts[fmt], fmt)):
        for x in inputs():
            with torch.no_grad():
                expected, got = net(x), run(x)
            assert got.shape == x.shape and got.dtype == torch.float32
            assert (got - expected).abs().max().item() < 1e-3, fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata(fmt: str, artefacts: dict[str, Path]) -> None:
    _, meta = load_exported(artefacts[fmt])
    assert meta["style_name"] == "starry_night" and meta["style_loss"] == "gram"
    assert meta["global_step"] == 1234 and meta["styles"] == ["starry_night"]
    assert meta["net"] == {"channels": 8, "n_residual": 1, "output": "linear", "output_gain": 1.0, "n_styles": 1}
    assert meta["input_range"] == [0.0, 1.0] and meta["output_range"] == [0.0, 1.0]
    assert meta["fst_version"] and meta["torch_version"] == torch.__version__


def test_onnx_metadata_props_and_eval_mode_norm(artefacts: dict[str, Path]) -> None:
    import onnx

    proto = onnx.load(str(artefacts["onnx"]))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["style_name"] == "starry_night" and json.loads(props["fst.json"])["global_step"] == 1234
    ops = {n.op_type for n in proto.graph.node}
    assert "InstanceNormalization" in ops and "BatchNormalization" not in ops
    assert proto.opset_import[0].version >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_weights_back_to_eager(fmt: str, artefacts: dict[str, Path], net: TransformerNet) -> None:
    eager, _ = transformer_from_exported(artefacts[fmt])
    for k, v in net.state_dict().items():
        torch.testing.assert_close(eager.state_dict()[k], v, msg=k)


def test_torchscript_runs_without_fst(artefacts: dict[str, Path], net: TransformerNet, tmp_path: Path) -> None:
    x = torch.rand(1, 3, 67, 91)
    torch.save(x, tmp_path / "x.pt")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["fst"] = None  # any `import fst` now fails
        import torch
        extra = {{"fst.json": ""}}
        m = torch.jit.load({str(artefacts["torchscript"])!r}, map_location="cpu", _extra_files=extra)
        y = m(torch.load({str(tmp_path / "x.pt")!r}, weights_only=True))
        torch.save(y, {str(tmp_path / "y.pt")!r})
        assert not any(k == "fst" or k.startswith("fst.") for k, v in sys.modules.items() if v is not None)
        print(extra["fst.json"].decode()[:40])
        """
    )
    run = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "channels_last" in run.stdout  # the metadata came along
    y = torch.load(tmp_path / "y.pt", weights_only=True)
    with torch.no_grad():
        assert (y - net(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize(("fmt", "dtype", "tol"), [("torchscript", "fp16", 1e-2), ("torchscript", "bf16", 3e-2), ("onnx", "fp16", 1e-2)])
def test_reduced_precision(fmt: str, dtype: str, tol: float, ckpt: Path, net: TransformerNet, tmp_path: Path) -> None:
    path = export_model(ckpt, tmp_path / f"m{SUFFIXES[fmt]}", fmt, dtype)
    model, meta = load_exported(path)
    assert meta["dtype"] == dtype
    x = photo("cat.jpg", (91, 67))
    for run in (model, runtime(path, fmt, dtype)):
        with torch.no_grad():
            got = run(x)
            assert got.dtype == torch.float32  # the artefact hands back the caller's dtype
            assert (got - net(x)).abs().max().item() < tol


def test_channels_last(ckpt: Path, net: TransformerNet, tmp_path: Path) -> None:
    path = export_model(ckpt, tmp_path / "cl.pt", channels_last=True)
    model, meta = load_exported(path)
    assert meta["channels_last"] is True
    x = torch.rand(2, 3, 67, 91)
    for run in (model, runtime(path, "torchscript")):
        with torch.no_grad():
            assert (run(x) - net(x)).abs().max().item() < 1e-3


def test_cli_export_and_format_from_suffix(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["export", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert load_exported(tmp_path / "m.onnx")[1]["format"] == "onnx"
    assert cli(["export", str(ckpt), "--out", str(tmp_path)]) == 0  # a folder: named after the checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "starry.pt"]  # and no temp files


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fst export: error: "), err
    return err


def test_refuses_non_fst_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save({"a": 1}, tmp_path / "other.ckpt")
    assert "not an fst checkpoint" in refused(["export", str(tmp_path / "other.ckpt"), "--out", str(tmp_path / "m.pt")], capsys)
    assert not (tmp_path / "m.pt").exists()


def test_refuses_truncated_checkpoint(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ckpt.read_bytes()
    (tmp_path / "half.ckpt").write_bytes(data[: len(data) // 2])
    err = refused(["export", str(tmp_path / "half.ckpt"), "--out", str(tmp_path / "m.pt")], capsys)
    assert "half.ckpt" in err and "truncated" in err
    assert [p.name for p in tmp_path.iterdir()] == ["half.ckpt"]


def test_refuses_unknown_format_and_missing_folder(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "invalid choice: 'tflite'" in refused(["export", str(ckpt), "--out", str(tmp_path / "m"), "--format", "tflite"], capsys)
    assert "does not exist" in refused(["export", str(ckpt), "--out", str(tmp_path / "nope" / "m.pt")], capsys)
    assert "means onnx" in refused(["export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--format", "torchscript"], capsys)
    assert "bf16" in refused(["export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--dtype", "bf16"], capsys)
    assert list(tmp_path.iterdir()) == []


def test_load_exported_refuses_checkpoints_and_damage(ckpt: Path, artefacts: dict[str, Path], tmp_path: Path) -> None:
    from fst.core.errors import FstError

    with pytest.raises(FstError, match="not an exported fst model"):
        load_exported(ckpt)
    data = artefacts["onnx"].read_bytes()
    (tmp_path / "half.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(FstError, match="half.onnx"):
        load_exported(tmp_path / "half.onnx")


@pytest.mark.parametrize("fmt", FORMATS)
def test_stylizer_reads_an_artefact_once_for_full_and_tiled_passes(fmt: str, artefacts: dict[str, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from fst.artefacts import exported
    from fst.stylize.stylizer import Stylizer

    reads: list[str] = []
    readers = {f: (lambda path, read=read, f=f: reads.append(f) or read(path)) for f, read in exported.READERS.items()}
    monkeypatch.setattr(exported, "READERS", readers)
    stylizer = Stylizer(artefacts[fmt], "cpu")
    x = torch.rand(1, 3, 96, 130)
    full, tiled = stylizer(x), stylizer(x, tile=64, overlap=16)
    assert full.shape == tiled.shape == x.shape and reads == [fmt]
