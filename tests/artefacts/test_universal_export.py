"""`fst export` of a universal network: the painting's statistics as an input (`model(x, stats)`) or one
painting baked in (`model(x)`), in every format; each gives the checkpoint's output (through fst, and
through the format's own runtime), and is read back under the rules of every artefact."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fst.artefacts import checkpoint, exported, universal_export
from fst.artefacts.export import export_model
from fst.artefacts.exported import SUFFIXES, load_exported
from fst.artefacts.universal_checkpoint import payload
from fst.core.errors import FstError
from fst.io.files import sha256_file
from fst.io.style_images import load_painting
from fst.models.universal import UniversalNet

from crafted import member, one_line_error, rewrite_zip
from nets import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

PAINTING = Path(__file__).resolve().parents[2] / "fst" / "assets" / "styles" / "arcimboldo_spring.jpg"
STYLE_SIZE = 64  # small paintings and photos: the tests' time is the exporters'
# (transform, format): ONNX of inter is refused (no eigendecomposition op), every other pair exports
PAIRS = [("intra", "torchscript"), ("intra", "export"), ("intra", "onnx"), ("inter", "torchscript"), ("inter", "export")]


def tiny(transform: str) -> UniversalNet:
    """A small universal network (relu2_1, a quarter of the width) with random, fixed weights."""
    torch.manual_seed(0)
    return UniversalNet(transform, "relu2_1", 0.25).eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("universal")


@pytest.fixture(scope="module")
def ckpts(folder: Path) -> dict[str, Path]:
    paths = {}
    for transform in ("intra", "inter"):
        paths[transform] = folder / f"{transform}.ckpt"
        torch.save(payload(tiny(transform), global_step=42), paths[transform])
    return paths


@pytest.fixture(scope="module")
def exports(folder: Path, ckpts: dict[str, Path]) -> Callable[[str, str, bool], Path]:
    """Each (transform, format, baked) exported once, when a test first asks for it."""
    made: dict[tuple[str, str, bool], Path] = {}

    def get(transform: str, fmt: str, baked: bool) -> Path:
        key = (transform, fmt, baked)
        if key not in made:
            out = folder / f"{transform}_{'baked' if baked else 'stats'}{SUFFIXES[fmt]}"
            made[key] = export_model(ckpts[transform], out, fmt, style_image=PAINTING if baked else None,
                                     style_size=STYLE_SIZE)
        return made[key]

    return get


def stats_of(net: UniversalNet) -> torch.Tensor:
    with torch.no_grad():
        return net.style_stats(load_painting(PAINTING, STYLE_SIZE, net.min_side))


def runtime(path: Path, fmt: str) -> Callable[..., torch.Tensor]:
    """The artefact run by its own runtime, as its users run it (only on files this test wrote)."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    if fmt == "export":
        return torch.export.load(str(path)).module()
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda *xs: torch.from_numpy(session.run(None, {n: x.numpy() for n, x in zip(names, xs)})[0])


def photos() -> list[torch.Tensor]:
    torch.manual_seed(1)  # odd sizes; a batch of two different images catches batch statistics
    return [torch.rand(1, 3, 37, 45), torch.rand(2, 3, 41, 33)]


@pytest.mark.parametrize("baked", [False, True], ids=["stats", "baked"])
@pytest.mark.parametrize(("transform", "fmt"), PAIRS)
def test_each_format_gives_the_checkpoints_output(transform: str, fmt: str, baked: bool,
                                                  exports: Callable[[str, str, bool], Path]) -> None:
    path = exports(transform, fmt, baked)
    net = tiny(transform)
    stats = stats_of(net)
    model, meta = load_exported(path)
    assert meta["kind"] == "universal" and (meta["painting"] is not None) == baked
    for run in (model, runtime(path, fmt)):
        for x in photos():
            with torch.no_grad():
                got = run(x) if baked else run(x, stats)
                expected = net(x, stats)
            assert got.shape == x.shape and got.dtype == torch.float32
            assert (got - expected).abs().max().item() < 1e-4, (transform, fmt, baked)


@pytest.mark.parametrize(("transform", "fmt"), PAIRS)
def test_fst_stylize_of_an_artefact_is_the_checkpoints_image(transform: str, fmt: str, ckpts: dict[str, Path],
                                                             exports: Callable[[str, str, bool], Path],
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fst.cli import main as cli

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    common = [str(tmp_path / "in.png"), "--device", "cpu", "--quiet"]
    style = ["--style-image", str(PAINTING), "--style-size", str(STYLE_SIZE)]
    runs = {"checkpoint": ["--model", str(ckpts[transform]), *style, "--dtype", "fp32"],
            "stats": ["--model", str(exports(transform, fmt, False)), *style],
            "baked": ["--model", str(exports(transform, fmt, True))]}
    images = {}
    for name, argv in runs.items():
        assert cli(["stylize", *common, *argv, "--out", str(tmp_path / f"{name}.png")]) == 0, capsys.readouterr().err
        images[name] = np.asarray(Image.open(tmp_path / f"{name}.png")).astype(int)
    assert images["checkpoint"].std() > 1  # not one flat colour
    assert np.abs(images["stats"] - images["checkpoint"]).max() == 0
    assert np.abs(images["baked"] - images["checkpoint"]).max() <= 1  # statistics stored, then read back


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_metadata_names_the_network_and_the_painting(fmt: str, exports: Callable[[str, str, bool], Path]) -> None:
    _, meta = load_exported(exports("intra", fmt, False))
    assert meta["universal"] == {"transform": "intra", "layer": "relu2_1", "width": 0.25}
    assert meta["stats_shape"] == [2, 128] and meta["painting"] is None and meta["global_step"] == 42
    assert meta["source"] == "intra.ckpt" and len(meta["weights_sha256"]) == 64 and meta["format"] == fmt
    _, meta = load_exported(exports("intra", fmt, True))
    assert meta["painting"] == {"file": PAINTING.name, "sha256": sha256_file(PAINTING), "style_size": STYLE_SIZE}
    assert meta["style_name"] == "arcimboldo_spring" and meta["styles"] == ["arcimboldo_spring"]


def test_onnx_of_inter_is_refused_in_one_line(ckpts: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    for extra in ([], ["--style-image", str(PAINTING)]):
        err = one_line_error(["export", str(ckpts["inter"]), "--out", str(tmp_path / "m.onnx"), *extra], capsys)
        assert "ONNX has no eigendecomposition operator" in err and "torchscript (.pt)" in err, err
    assert list(tmp_path.iterdir()) == []


def test_statistics_of_the_wrong_shape_are_one_line(exports: Callable[[str, str, bool], Path]) -> None:
    path = exports("intra", "torchscript", False)
    model, _ = load_exported(path)
    x = torch.rand(1, 3, 37, 45)
    with pytest.raises(FstError, match=r"takes one painting's statistics of shape \(2, 128\).*got \(3, 128\)"):
        model(x, torch.zeros(3, 128))
    with pytest.raises(FstError, match="got 0 inputs"):
        model(x)
    with pytest.raises(Exception, match=r"stats must be one painting's statistics, float32 of shape \(2, 128\)"):
        runtime(path, "torchscript")(x, torch.zeros(2, 64))  # the file's own check, without fst


def test_style_image_where_it_does_not_belong_and_missing_where_it_does(
        exports: Callable[[str, str, bool], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    per_painting = export_model(save_checkpoint(tmp_path / "tiny.ckpt"), tmp_path / "tiny.pt")
    out = tmp_path / "out.png"

    def refused(model: Path, *extra: str) -> str:
        return one_line_error(["stylize", str(tmp_path / "in.png"), "--model", str(model), "--out", str(out), *extra], capsys)

    assert "a universal network that takes a painting's statistics; give the painting with --style-image" in refused(
        exports("intra", "torchscript", False))
    assert "has its painting (arcimboldo_spring.jpg) baked in" in refused(
        exports("intra", "torchscript", True), "--style-image", str(PAINTING))
    assert "a per-painting network; --style-image takes a universal network" in refused(
        per_painting, "--style-image", str(PAINTING))
    assert "exported with the intra transform" in refused(
        exports("intra", "torchscript", False), "--style-image", str(PAINTING), "--transform", "inter")
    assert "--style-image is for a universal network's checkpoint" in one_line_error(
        ["export", str(tmp_path / "tiny.ckpt"), "--out", str(tmp_path / "x.pt"), "--style-image", str(PAINTING)], capsys)
    assert not out.exists() and not (tmp_path / "x.pt").exists()


def test_bad_paintings_to_bake_are_one_line(ckpts: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "flat.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (2, 40, 3), dtype=np.uint8)).save(tmp_path / "thin.png")
    (tmp_path / "folder").mkdir()
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    cases = {"flat.png": "one flat colour", "thin.png": "too small for a style image", "folder": "a folder",
             "broken.jpg": "broken.jpg", "missing.jpg": "missing.jpg"}
    for name, says in cases.items():
        err = one_line_error(["export", str(ckpts["intra"]), "--out", str(tmp_path / "m.pt"),
                              "--style-image", str(tmp_path / name), "--style-size", str(STYLE_SIZE)], capsys)
        assert says in err, err
    assert not (tmp_path / "m.pt").exists()


def test_damaged_weights_and_statistics_are_refused(exports: Callable[[str, str, bool], Path], tmp_path: Path) -> None:
    """ONNX has no checksum: the digest recorded at export catches a changed weight, and a changed baked
    painting (its statistics are weights); zips' CRCs and the digest guard the others."""
    import onnx

    for baked in (False, True):
        proto = onnx.load(str(exports("intra", "onnx", baked)))
        target = next(t for t in proto.graph.initializer if list(t.dims) == ([1, 2, 128] if baked else list(t.dims)))
        values = onnx.numpy_helper.to_array(target).copy()
        values.flat[0] += 1.0
        target.CopyFrom(onnx.numpy_helper.from_array(values, target.name))
        onnx.save(proto, str(tmp_path / "changed.onnx"))
        with pytest.raises(FstError, match="changed.onnx: damaged: its weights do not match the digest"):
            load_exported(tmp_path / "changed.onnx")


def test_metadata_that_does_not_match_the_weights_is_one_line(exports: Callable[[str, str, bool], Path],
                                                              tmp_path: Path) -> None:
    path = exports("intra", "torchscript", False)
    name = member(path, "extra/fst.json")
    meta = json.loads(_member_text(path, name))
    for change, says in [({"stats_shape": [2, 64]}, "stats_shape [2, 64]"),
                         ({"universal": {**meta["universal"], "layer": "relu3_1"}}, "statistics of shape [2, 256]"),
                         ({"universal": {**meta["universal"], "width": 0.5}}, "universal network weights do not match"),
                         ({"painting": {"file": "p.jpg", "sha256": "x", "style_size": 64}}, "is not a file name, a sha256"),
                         ({"universal": {**meta["universal"], "transform": "hist"}}, "universal network config")]:
        crafted = rewrite_zip(path, tmp_path / "crafted.pt", {name: json.dumps({**meta, **change}).encode()})
        with pytest.raises(FstError, match="crafted.pt: ") as e:
            load_exported(crafted)
        assert says in str(e.value) and "\n" not in str(e.value), e.value


def _member_text(path: Path, name: str) -> str:
    import zipfile

    with zipfile.ZipFile(path) as z:
        return z.read(name).decode()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_non_finite_weights_are_refused(fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    net = tiny("intra")
    with torch.no_grad():
        net.decoder.out[1].bias[1] = float("nan")
    torch.save(payload(net), tmp_path / "diverged.ckpt")
    err = one_line_error(["export", str(tmp_path / "diverged.ckpt"), "--out", str(tmp_path / "m.pt")], capsys)
    assert "refused: weight decoder.out.1.bias holds 1 NaN or infinite values of 3" in err, err
    with monkeypatch.context() as m:  # an artefact as a tool without the check wrote it, its digest true
        for module in (checkpoint, exported, universal_export):
            m.setattr(module, "check_finite", lambda state, origin: None)
        path = export_model(tmp_path / "diverged.ckpt", tmp_path / f"nan{SUFFIXES[fmt]}", fmt)
    with pytest.raises(FstError, match=f"nan{SUFFIXES[fmt]}: refused: weight decoder.out.1.bias holds 1 NaN"):
        load_exported(path)


def test_the_statistics_artefact_runs_without_fst(exports: Callable[[str, str, bool], Path], tmp_path: Path) -> None:
    """Given a stats tensor, a plain torch.jit.load runs the file in a fresh interpreter where fst cannot be imported."""
    import subprocess
    import sys
    import textwrap

    path = exports("inter", "torchscript", False)
    net = tiny("inter")
    x, stats = torch.rand(1, 3, 37, 45), stats_of(net)
    torch.save({"x": x, "stats": stats}, tmp_path / "in.pt")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["fst"] = None  # any `import fst` now fails
        import torch
        extra = {{"fst.json": ""}}
        m = torch.jit.load({str(path)!r}, map_location="cpu", _extra_files=extra)
        inputs = torch.load({str(tmp_path / "in.pt")!r}, weights_only=True)
        torch.save(m(inputs["x"], inputs["stats"]), {str(tmp_path / "y.pt")!r})
        print(extra["fst.json"].decode())
        """)
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stats_shape"] == [129, 128]
    with torch.no_grad():
        assert (torch.load(tmp_path / "y.pt", weights_only=True) - net(x, stats)).abs().max().item() < 1e-4
