"""Several paintings in one network (conditional instance norm): the network, training with the real
Trainer and VGG, adding a style, choosing and blending styles in `fst stylize`, and every export."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fst.artefacts.checkpoint import load_checkpoint, transformer_from_checkpoint, upgrade_state
from fst.artefacts.exported import FORMATS, load_exported
from fst.cli import main as cli
from fst.core.errors import FstError
from fst.losses.criterion import PerceptualLoss
from fst.models.transformer import TransformerNet, style_weights, with_new_styles
from fst.training.module import StyleTransferModule

from nets import export_all, make_net, make_styles_net, save_styles_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "tests" / "configs" / "tiny.yaml")
STYLES = ROOT / "fst" / "assets" / "styles"
PHOTOS = ROOT / "fst" / "assets" / "photos"
NAMES = ["the_scream", "great_wave", "udnie"]


def one_hot(n: int, k: int, batch: int = 1) -> torch.Tensor:
    return style_weights(n, {k: 1.0}, batch)


# --- the network ---------------------------------------------------------------------------------


def test_one_style_network_is_todays_network_and_each_style_of_several_starts_as_it() -> None:
    torch.manual_seed(0)
    plain = TransformerNet(8, 1)
    torch.manual_seed(0)
    several = TransformerNet(8, 1, n_styles=3)
    assert plain.config["n_styles"] == 1 and sorted(plain.state_dict()) == sorted(several.state_dict())
    assert all(isinstance(m, torch.nn.InstanceNorm2d) and m.affine for m in plain.modules()
               if isinstance(m, torch.nn.InstanceNorm2d))  # N = 1: the plain affine norm, same keys and shapes
    x = torch.rand(2, 3, 29, 37)
    plain.eval(), several.eval()
    for k in range(3):
        assert torch.equal(several(x, one_hot(3, k, 2)), plain(x))


def test_a_style_row_holding_a_plain_networks_norms_gives_that_network() -> None:
    plain = make_net(1)
    grown = with_new_styles(plain, 2).eval()
    x = torch.rand(1, 3, 33, 21)
    assert torch.allclose(grown(x, one_hot(3, 0)), plain(x), atol=1e-5)
    for key, value in grown.state_dict().items():  # shared weights copied; new rows: the existing rows' mean
        old = plain.state_dict()[key]
        assert torch.equal(value, old) if value.shape == old.shape else (
            torch.equal(value[0], old) and torch.equal(value[1], old) and torch.equal(value[2], old))


def test_style_weights_blend_linearly_in_the_norms_and_are_checked() -> None:
    net = make_styles_net(3)
    x = torch.rand(1, 3, 24, 24)
    half = style_weights(3, {0: 1.0, 2: 3.0})
    assert torch.allclose(half, torch.tensor([[0.25, 0.0, 0.75]]))
    # A blend is a blend of the norms' (gamma, beta), not of the pictures: differs from both styles.
    y = net(x, half)
    assert (y - net(x, one_hot(3, 0))).abs().max() > 1e-3 and (y - net(x, one_hot(3, 2))).abs().max() > 1e-3
    for bad in ({3: 1.0}, {0: -1.0}, {0: 0.0}, {0: float("nan")}, {}):
        with pytest.raises(FstError):
            style_weights(3, bad)
    with pytest.raises(FstError, match="holds 3 styles"):
        net(x)


@pytest.mark.parametrize("loss", ["inter", "intra"])  # either family
def test_each_image_is_scored_against_its_own_painting(loss: str) -> None:
    criterion = PerceptualLoss(loss)
    paintings = [torch.rand(1, 3, 40, 40) for _ in range(3)]
    for p in paintings:
        criterion.add_style(p)
    y, x = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    styles = torch.tensor([2, 0, 1, 2])
    per_image = criterion(y, x, styles)["style_per_image"]
    for i, k in enumerate(styles.tolist()):
        alone = PerceptualLoss(loss)
        alone.add_style(paintings[k])
        assert torch.allclose(per_image[i], alone(y[i:i + 1], x[i:i + 1])["style"], rtol=1e-4)


def test_old_single_style_statistics_are_renamed_on_load() -> None:
    state = {"criterion.targets.relu1_2__gram": torch.ones(2), "criterion.targets.0.relu2_2__gram": torch.ones(2),
             "transformer.conv_in.1.weight": torch.ones(1)}
    assert sorted(upgrade_state(state)) == ["criterion.targets.0.relu1_2__gram", "criterion.targets.0.relu2_2__gram",
                                            "transformer.conv_in.1.weight"]


# --- training ------------------------------------------------------------------------------------


def fit(tmp: Path, *extra: str) -> Path:
    args = ["fit", "--config", TINY, "--trainer.default_root_dir", str(tmp), "--trainer.logger", "TensorBoardLogger",
            "--trainer.logger.save_dir", str(tmp), "--trainer.logger.name", "tb",
            "--checkpoint.dirpath", str(tmp / "ckpt"), *extra]
    assert cli(args) == 0
    return tmp / "ckpt" / "last.ckpt"


def events(tmp: Path) -> EventAccumulator:
    acc = EventAccumulator(str(sorted((tmp / "tb").rglob("events.out.tfevents.*"))[-1].parent),
                           size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def paintings(tmp_path_factory) -> list[str]:
    """Copies of three shipped paintings (a test deletes them to resume without them)."""
    folder = tmp_path_factory.mktemp("paintings")
    return [str(shutil.copy(STYLES / f"{n}.jpg", folder / f"{n}.jpg")) for n in NAMES]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, paintings) -> Path:
    tmp = tmp_path_factory.mktemp("three")
    fit(tmp, "--model.style_images", f"[{', '.join(paintings)}]")
    return tmp


@pytest.mark.slow
def test_fit_of_three_paintings_logs_each_and_previews_a_row_per_style(trained: Path) -> None:
    ckpt = load_checkpoint(trained / "ckpt" / "last.ckpt")
    assert ckpt["fst"]["styles"] == NAMES and ckpt["fst"]["net"]["n_styles"] == 3
    for k in range(3):  # each style's statistics, carried by the checkpoint
        assert any(key.startswith(f"criterion.targets.{k}.relu1_2__") for key in ckpt["state_dict"])
    acc = events(trained)
    scalars = set(acc.Tags()["scalars"])
    for name in NAMES:
        assert f"loss/style_of/{name}" in scalars and f"val/style_of/{name}" in scalars
    assert {f"style/{n}" for n in NAMES} <= set(acc.Tags()["images"])
    grid = acc.Images("preview/photos_vs_stylized")[-1]
    rows = (grid.height - 2) // (32 + 2)  # tiny.yaml: 32 px previews, 2 px padding
    assert rows == 1 + 3
    net, _ = transformer_from_checkpoint(trained / "ckpt" / "last.ckpt")
    x = torch.rand(1, 3, 32, 32)
    outs = [net(x, one_hot(3, k)) for k in range(3)]
    assert (outs[0] - outs[1]).abs().max() > 0 and (outs[1] - outs[2]).abs().max() > 0


@pytest.mark.slow
def test_resume_needs_no_painting_files(trained: Path, paintings: list[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    gone = [Path(p).rename(Path(p).with_suffix(".moved")) for p in paintings]
    try:
        fit(run, "--model.style_images", f"[{', '.join(paintings)}]", "--trainer.max_steps", "6",
            "--ckpt_path", str(run / "ckpt" / "last.ckpt"))
    finally:
        for p in gone:
            p.rename(p.with_suffix(".jpg"))
    # (a copied run folder: Lightning keeps the original's last.ckpt and versions its own)
    before, after = load_checkpoint(trained / "ckpt" / "last.ckpt"), load_checkpoint(run / "ckpt" / "step0000006.ckpt")
    assert after["global_step"] == 6
    targets = [k for k in before["state_dict"] if k.startswith("criterion.targets.")]
    assert len(targets) == 3 * 4 and all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in targets)


def test_style_assignment_round_robin_per_image_or_per_batch(tmp_path: Path) -> None:
    per_image = StyleTransferModule(style_images=[str(STYLES / f"{n}.jpg") for n in NAMES], channels=4, n_residual=0)
    assert per_image.styles_for(4, 0).tolist() == [0, 1, 2, 0] and per_image.styles_for(4, 1).tolist() == [1, 2, 0, 1]
    per_batch = StyleTransferModule(style_images=[str(STYLES / f"{n}.jpg") for n in NAMES], channels=4, n_residual=0,
                                    style_assignment="batch")
    assert [per_batch.styles_for(2, s).tolist() for s in range(4)] == [[0, 0], [1, 1], [2, 2], [0, 0]]
    assert StyleTransferModule(channels=4, n_residual=0).styles_for(4, 0) is None
    with pytest.raises(FstError, match="share a name"):
        StyleTransferModule(style_images=[str(STYLES / "udnie.jpg"), str(STYLES / "udnie.jpg")])
    with pytest.raises(FstError, match="style_assignment"):
        StyleTransferModule(style_assignment="pixel")


@pytest.mark.slow
def test_adding_a_style_trains_only_its_norm_rows_and_keeps_every_style(trained: Path, tmp_path: Path) -> None:
    base_path = trained / "ckpt" / "last.ckpt"
    module = StyleTransferModule(style_images=["sample:starry_night"], base_checkpoint=str(base_path),
                                 channels=8, n_residual=1)
    trainable = {n for n, p in module.transformer.named_parameters() if p.requires_grad}
    norms = {n for n, m in module.transformer.named_modules() if hasattr(m, "norm")}
    assert trainable == {f"{n}.{w}" for n in norms for w in ("weight", "bias")}  # all else frozen
    added = fit(tmp_path, "--model.style_images", "[sample:starry_night]", "--model.base_checkpoint", str(base_path))
    base, grown = load_checkpoint(base_path), load_checkpoint(added)
    assert grown["fst"]["styles"] == [*NAMES, "starry_night"] and grown["fst"]["net"]["n_styles"] == 4
    changed = 0
    for key, value in grown["state_dict"].items():
        old = base["state_dict"].get(key)
        if key.startswith("criterion.targets.3."):
            continue  # the new painting's statistics
        assert old is not None, key
        if value.shape == old.shape:
            assert torch.equal(value, old), f"{key} moved"
        else:  # a conditional norm: the three kept styles exactly, the new one trained
            assert torch.equal(value[:3], old), f"{key}: a kept style moved"
            changed += not torch.equal(value[3], old.mean(0))
    assert changed > 0
    with pytest.raises(FstError, match="same loss"):
        StyleTransferModule(style_images=["sample:starry_night"], base_checkpoint=str(base_path), style_loss="mean_std")
    with pytest.raises(FstError, match="same arch and style_layers"):
        StyleTransferModule(style_images=["sample:starry_night"], base_checkpoint=str(base_path), arch="vgg19")
    with pytest.raises(FstError, match="adamw"):
        StyleTransferModule(style_images=["sample:starry_night"], base_checkpoint=str(base_path), optimizer="adamw")


# --- stylize and export ---------------------------------------------------------------------------


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


@pytest.fixture(scope="module")
def styles_ckpt(tmp_path_factory) -> Path:
    return save_styles_checkpoint(tmp_path_factory.mktemp("styles") / "three.ckpt", NAMES)


def test_stylize_writes_every_style_by_default_and_picks_or_blends_on_request(styles_ckpt: Path, tmp_path: Path) -> None:
    photo = PHOTOS / "alpaca.jpg"
    out = tmp_path / "all"
    out.mkdir()
    assert cli(["stylize", str(photo), "--model", str(styles_ckpt), "--out", str(out), "--max-size", "48",
                "--quiet", "--ext", "png"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"alpaca_{n}.png" for n in NAMES)
    assert cli(["stylize", str(photo), "--model", str(styles_ckpt), "--out", str(tmp_path / "one.png"),
                "--max-size", "48", "--style", "1", "--quiet"]) == 0
    assert np.array_equal(read(tmp_path / "one.png"), read(out / "alpaca_great_wave.png"))
    assert cli(["stylize", str(photo), "--model", str(styles_ckpt), "--out", str(tmp_path / "mix.png"),
                "--max-size", "48", "--mix", "the_scream=1,udnie=1", "--quiet"]) == 0
    net, _ = transformer_from_checkpoint(styles_ckpt)
    img = Image.open(photo).convert("RGB")
    img = img.resize((48, round(img.height * 48 / img.width)) if img.width >= img.height else
                     (round(img.width * 48 / img.height), 48), Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    expected = net(x, style_weights(3, {0: 0.5, 2: 0.5}))[0].detach().permute(1, 2, 0).numpy() * 255
    assert np.abs(read(tmp_path / "mix.png") - expected).max() <= 1.01  # 8-bit rounding
    assert cli(["stylize", str(photo), "--model", str(styles_ckpt), "--out", str(tmp_path / "plain.png"),
                "--max-size", "48", "--style", "udnie", "--strength", "0", "--quiet"]) == 0  # per-image options apply
    assert np.abs(read(tmp_path / "plain.png") - x[0].permute(1, 2, 0).numpy() * 255).max() <= 1.01


@pytest.mark.parametrize("flags, problem", [
    (["--style", "nope"], "unknown style 'nope'"),
    (["--style", "7"], "unknown style '7'"),
    (["--mix", "udnie"], "not NAME=WEIGHT"),
    (["--mix", "udnie=x"], "not NAME=WEIGHT"),
    (["--mix", "udnie=1,udnie=2"], "given twice"),
    (["--mix", "udnie=0"], "not all 0"),
    (["--style", "udnie", "--mix", "udnie=1"], "exclude each other"),
])
def test_bad_style_choices_are_one_line_errors(styles_ckpt: Path, tmp_path: Path, flags: list[str], problem: str,
                                               capsys) -> None:
    assert cli(["stylize", str(PHOTOS / "alpaca.jpg"), "--model", str(styles_ckpt), "--out", str(tmp_path / "o.png"),
                "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert problem in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


@pytest.fixture(scope="module")
def artefacts(styles_ckpt: Path, tmp_path_factory) -> dict[str, Path]:
    return export_all(styles_ckpt, tmp_path_factory.mktemp("exported"))


@pytest.mark.parametrize("format", FORMATS)
def test_every_export_takes_style_weights_and_matches_per_style_and_blend(styles_ckpt: Path, artefacts, format: str) -> None:
    net, _ = transformer_from_checkpoint(styles_ckpt)
    x = torch.rand(3, 3, 37, 45)
    w = torch.cat([one_hot(3, 0), one_hot(3, 2), style_weights(3, {0: 0.2, 1: 0.3, 2: 0.5})])
    expected = net(x, w)
    path = artefacts[format]
    if format == "torchscript":
        got = torch.jit.load(str(path))(x, w)
    elif format == "export":
        got = torch.export.load(str(path)).module()(x, w)
    else:
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(path))
        assert [i.name for i in session.get_inputs()] == ["image", "style_weights"]
        got = torch.from_numpy(session.run(None, {"image": x.numpy(), "style_weights": w.numpy()})[0])
    assert torch.allclose(got, expected, atol=1e-5), format
    run, meta = load_exported(path)  # fst's reader: the artefact's weights in fst's network
    assert meta["styles"] == NAMES and meta["net"]["n_styles"] == 3 and "style weights" in meta["input"]
    assert torch.allclose(run(x, w), expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("g++") and not shutil.which("c++"), reason="AOTInductor needs a C++ compiler")
def test_a_compiled_package_takes_style_weights_too(styles_ckpt: Path, tmp_path: Path) -> None:
    from fst.artefacts.export import export_model
    from fst.artefacts.exported import load_compiled
    from fst.stylize.stylizer import Stylizer

    package = export_model(styles_ckpt, tmp_path / "three.pt2", "aoti")
    net, _ = transformer_from_checkpoint(styles_ckpt)
    x = torch.rand(2, 3, 40, 56)
    w = torch.cat([one_hot(3, 1), style_weights(3, {0: 0.5, 2: 0.5})])
    run, meta = load_compiled(package, trusted=True)
    assert meta["styles"] == NAMES
    assert torch.allclose(run(x, w), net(x, w), atol=1e-4)
    stylizer = Stylizer(package, "cpu", trust_compiled=True)  # whole passes: the package; tiles: fst's network
    stylizer.style = w[1]
    assert torch.allclose(stylizer(x[:1]), net(x[:1], w[1:]), atol=1e-4)
    from_checkpoint = Stylizer(styles_ckpt, "cpu", "fp32")
    from_checkpoint.style = w[1]
    assert torch.allclose(stylizer(x[:1], tile=32, overlap=8), from_checkpoint(x[:1], tile=32, overlap=8), atol=1e-5)


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_a_valid_fit_config(config: Path, capsys) -> None:
    with pytest.raises(SystemExit) as done:  # LightningCLI exits after printing
        cli(["fit", "--config", str(config), "--print_config"])
    assert done.value.code in (0, None)
    printed = capsys.readouterr().out
    model_key = "transform:" if config.name == "universal.yaml" else "style_loss:"  # a universal network's schema
    assert model_key in printed and "max_steps:" in printed
