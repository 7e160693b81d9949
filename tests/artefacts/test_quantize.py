"""`fst export --quantize int8`: an ONNX file with int8 convolutions that fst reads as data, runs as
its own graph in onnxruntime, close to the fp32 export; bad options and tampered files are one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fst.artefacts.checkpoint import payload
from fst.artefacts.export import export_model
from fst.artefacts.exported import META_FILE, read_exported, read_exported_int8
from fst.artefacts.quantized import conv_quant, quant_digest
from fst.models.weights import weights_digest
from fst.stylize.stylizer import Stylizer

from crafted import one_line_error, stylize_refused
from nets import make_net

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
PHOTOS = Path(__file__).resolve().parents[2] / "fst" / "assets" / "photos"
# int8 against fp32, the tiny random net (harder to quantize than a trained one: 0.003 mean for the
# quickstart network, docs/benchmarks.md) on real photos up to 160x120, output in [0, 1]: measured
# 2026-12-07 mean 0.011-0.021, 99th percentile 0.04-0.12 (max 0.16-0.46, a few pixels: not bounded).
# Whether fst's graph is the file's graph is checked exactly, beside it.
P99_DIFF, MEAN_DIFF = 0.2, 0.04

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("int8")
    ckpt = root / "tiny.ckpt"
    torch.save(payload(make_net(), style_name="tiny", style_loss="gram", global_step=7), ckpt)
    calibration = root / "calibration"
    calibration.mkdir()
    for name in ("dog", "bison", "kitten"):
        Image.open(PHOTOS / f"{name}.jpg").resize((96, 64)).save(calibration / f"{name}.png")
    return {"ckpt": ckpt, "fp32": export_model(ckpt, root / "fp32.onnx"),
            "int8": export_model(ckpt, root / "int8.onnx", quantize="int8", calibration=calibration),
            "calibration": calibration, "root": root}


def photo(name: str, size: tuple[int, int]) -> torch.Tensor:
    img = Image.open(PHOTOS / name).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255


def test_int8_file_is_read_as_data_and_holds_int8_convolutions(made: dict[str, Path]) -> None:
    state, meta, params = read_exported_int8(made["int8"])
    assert meta["quantize"] == "int8" and meta["dtype"] == "fp32" and meta["calibration"] == "3 photos of calibration"
    assert len(params) == sum(k.endswith("weight") and v.dim() == 4 for k, v in state.items()) - 1  # all but conv_out
    assert all(q.w.dtype == np.int8 and q.x_zero.dtype == np.uint8 for q in params)
    fp32 = read_exported(made["fp32"])[0]
    assert state.keys() == fp32.keys()  # the same network, its weights dequantized
    assert made["int8"].stat().st_size < made["fp32"].stat().st_size  # 0.26x for the quickstart network


def test_int8_runs_its_numbers_close_to_fp32(made: dict[str, Path]) -> None:
    """fst's rebuilt graph computes what the file's own graph computes in onnxruntime (as its users run
    it: only on a file this test wrote), which is within the stated bound of fp32 but not fp32 itself."""
    int8, fp32 = Stylizer(made["int8"], "cpu"), Stylizer(made["fp32"], "cpu")
    session = ort.InferenceSession(str(made["int8"]), providers=["CPUExecutionProvider"])
    for x in (photo("cat.jpg", (91, 67)), photo("heron.jpg", (160, 120))):
        y, ref = int8(x), fp32(x)
        own = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
        assert torch.allclose(y, own, atol=1e-6)
        diff = (y - ref).abs()
        assert diff.max() > 0 and diff.mean() < MEAN_DIFF and diff.quantile(0.99) < P99_DIFF, (diff.mean(), diff.quantile(0.99))
        tiled = int8(x, tile=64)  # tiles run fst's network on the dequantized weights
        assert (tiled - ref).abs().mean() < MEAN_DIFF


def test_fst_stylize_runs_int8(made: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from fst.cli import main as cli

    src = made["root"] / "cat.png"
    Image.open(PHOTOS / "cat.jpg").resize((120, 90)).save(src)
    outs = {k: made["root"] / f"cat_{k}.png" for k in ("int8", "fp32")}
    for k, out in outs.items():
        assert cli(["stylize", str(src), "--model", str(made[k]), "--out", str(out), "--device", "cpu"]) == 0
    assert "int8 model runs its whole images in onnxruntime" in capsys.readouterr().err
    a, b = (np.asarray(Image.open(outs[k]), dtype=np.float32) / 255 for k in ("int8", "fp32"))
    assert np.abs(a - b).mean() < MEAN_DIFF and np.quantile(np.abs(a - b), 0.99) < P99_DIFF + 1 / 255


@pytest.mark.parametrize(("extra", "said"), [
    (["--quantize", "int4"], "unknown --quantize 'int4' (choose from int8)"),
    (["--quantize", "int8", "--format", "torchscript"], "--quantize int8 writes ONNX for onnxruntime; not a torchscript file"),
    (["--quantize", "int8", "--format", "export"], "not a export file"),
    (["--quantize", "int8", "--dtype", "fp16"], "leave --dtype at fp32, not fp16"),
    (["--calibration", "."], "--calibration is for --quantize int8"),
    (["--quantize", "int8", "--calibration", "missing"], "missing: calibration folder not found"),
])
def test_bad_quantize_options_are_one_line(extra: list[str], said: str, made: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / ("m.pt" if "torchscript" in extra else "m.pt2" if "export" in extra else "m.onnx")
    err = one_line_error(["export", str(made["ckpt"]), "--out", str(out), *extra], capsys)
    assert said in err and not out.exists()


def test_empty_calibration_folder_and_universal_network_are_one_line(made: dict[str, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    err = one_line_error(["export", str(made["ckpt"]), "--out", str(tmp_path / "m.onnx"), "--quantize", "int8",
                          "--calibration", str(tmp_path / "empty")], capsys)
    assert "empty: no calibration photos" in err
    err = one_line_error(["export", "sample:universal", "--out", str(tmp_path / "u.onnx"), "--quantize", "int8"], capsys)
    assert "--quantize is for a per-painting network" in err
    assert not list(tmp_path.glob("*.onnx"))


# --- tampered files -----------------------------------------------------------------------------


def rewritten(src: Path, dst: Path, change: Any, redigest: bool = True) -> Path:
    """A copy of an int8 file with `change(proto)` applied; `redigest`: its digests recomputed (crafted
    to pass them, so only the structure checks stand in the way)."""
    proto = onnx.load(str(src))
    change(proto)
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props[META_FILE])
    if redigest:
        try:
            meta["quant_sha256"] = quant_digest(conv_quant(proto, "crafted"))
        except Exception:  # noqa: BLE001 - a structure the reader refuses anyway
            pass
    props[META_FILE] = json.dumps(meta)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    dst.write_bytes(proto.SerializeToString())
    return dst


def initializer(proto: Any, suffix: str) -> Any:
    return next(t for t in proto.graph.initializer if t.name.endswith(suffix))


def set_array(proto: Any, suffix: str, fn: Any) -> None:
    t = initializer(proto, suffix)
    t.CopyFrom(onnx.numpy_helper.from_array(fn(onnx.numpy_helper.to_array(t).copy()), t.name))


def bump(a: np.ndarray) -> np.ndarray:
    a.reshape(-1)[0] += 1
    return a


def stray_qdq(proto: Any) -> None:
    """A Q/DQ pair on a tensor fst never quantizes (the network's input)."""
    g = proto.graph
    xs = next(t for t in g.initializer if t.name.endswith("_scale") and not t.dims)
    xz = next(t for t in g.initializer if t.name.endswith("_zero_point") and not t.dims)
    first = g.node[0]
    g.node.insert(0, onnx.helper.make_node("QuantizeLinear", ["image", xs.name, xz.name], ["stray_q"]))
    g.node.insert(1, onnx.helper.make_node("DequantizeLinear", ["stray_q", xs.name, xz.name], ["stray"]))
    first.input[:] = ["stray" if i == "image" else i for i in first.input]


def fp32_weight(proto: Any) -> None:
    set_array(proto, "weight_quantized", lambda a: a.astype(np.float32))


def meta_change(**fields: Any) -> Any:
    def change(proto: Any) -> None:
        props = {p.key: p.value for p in proto.metadata_props}
        props[META_FILE] = json.dumps({**json.loads(props[META_FILE]), **fields})
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, props)
    return change


@pytest.mark.parametrize(("change", "redigest", "said"), [
    (lambda p: set_array(p, "weight_quantized", bump), False, "damaged: its int8 numbers do not match the digest"),
    (lambda p: set_array(p, "Conv_output_0_scale", lambda a: a * 2), False, "damaged: its int8 numbers do not match"),
    (lambda p: set_array(p, "weight_zero_point", bump), True, "a zero point that is not 0"),
    (lambda p: set_array(p, "Conv_output_0_scale", lambda a: -a), True, "is not finite and positive"),
    (lambda p: set_array(p, "weight_scale", lambda a: a * np.nan), True, "is not finite and positive"),
    (fp32_weight, True, "is float32 (8, 3, 9, 9), not int8"),
    (stray_qdq, True, "QuantizeLinear and"),
    (meta_change(quantize="int4"), True, "quantize 'int4'"),
    (meta_change(quantize=None), True, "does not hold the transformer's weights"),
    (meta_change(dtype="fp16"), True, "fst writes int8 with fp32 input and output"),
])
def test_tampered_int8_file_is_refused(change: Any, redigest: bool, said: str, made: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = rewritten(made["int8"], tmp_path / "bad.onnx", change, redigest)
    image = tmp_path / "in.png"
    Image.new("RGB", (40, 30), (90, 120, 200)).save(image)
    err = stylize_refused(bad, image, capsys)
    assert "bad.onnx: " in err and said in err, err


def test_quantize_field_on_an_fp32_file_is_refused(made: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """fp32 weights claimed to be int8: the graph has no int8 numbers to run."""
    bad = rewritten(made["fp32"], tmp_path / "bad.onnx", meta_change(quantize="int8", quant_sha256="0" * 64), False)
    image = tmp_path / "in.png"
    Image.new("RGB", (40, 30)).save(image)
    assert "its int8 graph is not one fst writes" in stylize_refused(bad, image, capsys)


def test_weights_digest_is_of_the_dequantized_weights(made: dict[str, Path]) -> None:
    state, meta = read_exported(made["int8"])
    assert weights_digest(state) == meta["weights_sha256"]


def test_a_network_of_several_styles_runs_each_style_in_int8(tmp_path: Path) -> None:
    """Calibrated with one style a photo in turn; fst's rebuilt graph takes the style weights too."""
    from fst.models.transformer import style_weights

    from nets import save_styles_checkpoint

    ckpt = save_styles_checkpoint(tmp_path / "three.ckpt", ["a", "b", "c"])
    int8 = Stylizer(export_model(ckpt, tmp_path / "q.onnx", quantize="int8"), "cpu")
    fp32 = Stylizer(export_model(ckpt, tmp_path / "f.onnx"), "cpu")
    x = photo("cat.jpg", (80, 64))
    outs = []
    for k in range(3):
        int8.style = fp32.style = style_weights(3, {k: 1.0})[0]
        y = int8(x)
        assert (y - fp32(x)).abs().mean() < MEAN_DIFF
        outs.append(y)
    assert (outs[0] - outs[1]).abs().mean() > MEAN_DIFF / 4  # the style weights reach the int8 graph
