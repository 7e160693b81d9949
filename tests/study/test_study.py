"""The loss study: metrics on hand cases, and `fst compare` end to end (real `fst fit` runs, real metrics)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from fst import losses
from fst.artefacts.checkpoint import load_checkpoint
from fst.cli import main as cli
from fst.core.color import srgb_to_lab
from fst.metrics.features import (
    SSIM_C1,
    FeatureMetrics,
    clipped_percent,
    color_distance,
    detail,
    off_palette_percent,
    ssim,
)
from fst.models.vgg import VGGFeatures
from fst.study.calibration import content_matched, gradient_norms
from fst.study.report import LABEL, PAD

CLASSIC = Path(__file__).resolve().parents[2] / "configs" / "classic.yaml"
TINY = ["--steps", "3", "--batch", "2", "--crop", "32", "--channels", "8", "--n-residual", "1",
        "--style-size", "64", "--eval-count", "2", "--eval-size", "32", "--tile", "32"]


# --- metrics -------------------------------------------------------------------------------------

def test_ssim_of_an_image_with_itself_is_one_and_of_its_negative_is_below_zero():
    x = torch.rand(2, 3, 40, 40)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    assert (ssim(x, 1 - x) < 0).all()  # noise against its negative: anticorrelated structure


def test_ssim_is_torchmetrics_formula_on_the_windows_inside_the_image():
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    from fst.core.color import luminance

    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 80)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    a, b = luminance(x.double()), luminance(y.double())
    theirs = tm_ssim(a, b, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0, reduction="none")
    padded = [torch.nn.functional.pad(t, (5, 5, 5, 5), mode="reflect").expand(-1, 3, -1, -1) for t in (a, b)]
    assert torch.allclose(ssim(*padded).double(), theirs, atol=1e-6)  # same formula, same windows
    assert 1e-4 < (ssim(x, y).double() - theirs).abs().max() < 0.01  # torchmetrics adds mirrored border windows


def test_ssim_of_two_flat_greys_is_the_luminance_term():
    a, b = torch.full((1, 3, 16, 16), 0.2), torch.full((1, 3, 16, 16), 0.6)
    expected = (2 * 0.2 * 0.6 + SSIM_C1) / (0.2**2 + 0.6**2 + SSIM_C1)  # σ = 0: the structure term is 1
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-4)
    assert ssim(a[..., :7, :9], b[..., :7, :9]).item() == pytest.approx(expected, rel=1e-4)  # smaller than the window


def test_detail_is_zero_when_flat_and_counts_an_edge():
    assert detail(torch.full((1, 3, 8, 8), 0.5)).item() == 0
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0  # one vertical edge of height 1: 7 unit gradients among 7 x 7 positions
    assert detail(step).item() == pytest.approx(1 / 7, rel=1e-5)


def test_clipped_percent_counts_pixels_pinned_at_either_end():
    x = torch.full((1, 3, 10, 10), 0.5)
    assert clipped_percent(x).item() == 0
    x[0, 0, 0, :5] = 1.0  # five pixels with one channel at 255
    x[0, 2, 1, :3] = 1.5 / 255  # three with one channel at 2 (as saved: rounds to 2)
    x[0, 1, 2, :4] = 3 / 255  # four at 3: not clipped
    assert clipped_percent(x).item() == pytest.approx(8.0)
    assert clipped_percent(torch.cat([x, torch.zeros_like(x)])).tolist() == pytest.approx([8.0, 100.0])


def test_lab_of_known_colours_and_color_distance():
    colours = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).view(3, 3, 1, 1)
    lab = srgb_to_lab(colours).flatten()
    # CIE references (D65): white L=100, black L=0, sRGB red L=53.24 a=80.09 b=67.20
    assert lab.tolist() == pytest.approx([100, 0, 0, 0, 0, 0, 53.24, 80.09, 67.20], abs=0.02)
    painting = torch.rand(1, 3, 16, 16)
    assert color_distance(painting, painting).item() == pytest.approx(0, abs=1e-4)
    grey, darker = torch.full((1, 3, 8, 8), 0.5), torch.full((1, 3, 8, 8), 0.4)
    # flat images: only the L means differ (std 0, a = b = 0 for grey)
    expected = (srgb_to_lab(grey) - srgb_to_lab(darker)).abs()[0, 0, 0, 0].item()
    assert color_distance(darker, grey).item() == pytest.approx(expected, rel=1e-4)
    assert color_distance(torch.cat([grey, darker]), grey).tolist() == pytest.approx([0, expected], abs=1e-3)


def test_off_palette_pixels_are_the_ones_far_from_the_paintings_colours():
    torch.manual_seed(0)
    painting = 0.1 + 0.3 * torch.rand(1, 3, 40, 40) * torch.tensor([0.3, 0.5, 1.0]).view(1, 3, 1, 1)  # dark blues
    assert off_palette_percent(painting, painting).item() == pytest.approx(1.0, abs=0.1)  # its own 99th percentile
    y = painting.clone()
    y[..., :10, :16] = 1.0  # a white blob on 10% of the image
    assert off_palette_percent(y, painting).item() == pytest.approx(11.0, abs=1.0)
    assert off_palette_percent(torch.cat([painting, y]), painting).tolist() == pytest.approx([1.0, 11.0], abs=1.0)


def test_style_and_content_distances_are_zero_for_the_painting_itself():
    metrics = FeatureMetrics("vgg19")
    painting, photo = torch.rand(1, 3, 48, 48), torch.rand(1, 3, 48, 48)
    target = metrics.target(painting)
    same = metrics.distances(painting, painting, target)
    other = metrics.distances(photo, painting, target)
    assert set(same) == {"style_gram", "style_mean_std", "style_sliced_wasserstein", "content"}
    for key in same:
        assert same[key].item() < 1e-6 and other[key].item() > 1e-3, key


def test_calibration_gradient_is_zero_at_the_style_itself(vgg16_weights):
    vgg = VGGFeatures("vgg16", weights=vgg16_weights)
    painting = torch.rand(1, 3, 32, 32)
    g = gradient_norms(vgg, torch.cat([painting, torch.rand(1, 3, 32, 32)]), painting, losses.get("mean"), 1)
    assert g[0].item() < 1e-6 < g[1].item()


# --- the command ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_compare_trains_evaluates_and_reports(tmp_path):
    out = tmp_path / "study"
    args = ["compare", "--out", str(out), "--losses", "gram", "intra", "--styles", "sample:the_scream", *TINY,
            "--baselines", str(CLASSIC)]
    assert cli(args) == 0

    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["loss"] for r in rows] == ["photo (untrained)", "gram", "mean_std", "classic"]  # `intra` -> its default
    for r in rows[1:]:
        loss = losses.get(r["loss"] if r["loss"] != "classic" else "gram_mse")
        assert r["family"] == loss.family and float(r["weight"]) == loss.weight
        numbers = {k: float(v) for k, v in r.items() if k not in ("style", "loss", "family")}
        assert all(math.isfinite(v) for v in numbers.values()), r
        assert numbers["train_ms_per_step"] > 0 and numbers["loss_ms_per_step"] > 0 and numbers["peak_mem_mb"] > 0
        assert numbers["content"] > 0 and numbers["ssim"] < 1  # trained models change the photo
    assert float(rows[0]["content"]) == 0 and float(rows[0]["ssim"]) == pytest.approx(1, abs=1e-5)
    for r in rows:  # the artefact columns, for the untrained photos too
        assert float(r["color_vs_painting"]) > 0 and 0 <= float(r["clipped_pct"]) <= 100
        assert 0 <= float(r["off_palette_pct"]) <= 100

    with Image.open(out / "grid_the_scream.jpg") as grid:  # 2 photos x (photo + 2 losses + classic), 32 px tiles
        assert grid.size == (4 * (32 + PAD) + PAD, PAD + LABEL + 32 + PAD + LABEL + 2 * (32 + PAD))
    assert "| gram | inter |" in (out / "metrics.md").read_text() and (out / "report.md").is_file()
    for loss in ("gram", "mean_std"):
        run = out / "runs" / f"the_scream__{loss}"
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["model"]["style_loss"] == loss and config["trainer"]["max_steps"] == 3
        assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 3
    # the classic column trains the recipe's model section on the budget's painting and network
    model = yaml.safe_load((out / "runs" / "the_scream__classic" / "config.yaml").read_text())["model"]
    recipe = yaml.safe_load(CLASSIC.read_text())["model"]
    assert {k: model[k] for k in ("style_loss", "content_loss", "content_weight", "style_weight", "tv_weight",
                                  "output", "lr")} == {k: recipe[k] for k in ("style_loss", "content_loss",
                                  "content_weight", "style_weight", "tv_weight", "output", "lr")}
    assert (model["style_image"], model["style_size"], model["channels"], model["n_residual"]) == (
        "sample:the_scream", 64, 8, 1)
    classic = load_checkpoint(out / "runs" / "the_scream__classic" / "checkpoints" / "last.ckpt")
    assert classic["fst"]["net"]["output"] == "linear" and classic["fst"]["style_loss"] == "gram_mse"

    # a rerun with the same budget reuses the finished runs: nothing is trained again
    logs = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/train.log")}
    assert cli(args) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/train.log")} == logs


def test_calibrate_writes_a_weight_per_loss_with_the_reference_unchanged(tmp_path):
    args = ["compare", "--calibrate", "--out", str(tmp_path), "--losses", "gram", "mean",
            "--styles", "sample:the_scream", "--eval-count", "2", "--crop", "32", "--style-size", "64", "--draws", "1"]
    assert cli(args) == 0
    rows = {r["loss"]: r for r in csv.DictReader(open(tmp_path / "calibration_gradient.csv"))}
    assert float(rows["gram"]["new_weight"]) == pytest.approx(losses.get("gram").weight, rel=1e-3)
    assert 0 < float(rows["mean"]["new_weight"]) < math.inf and float(rows["mean"]["grad_norm"]) > 0
    assert (tmp_path / "calibration_gradient.md").is_file()


def test_content_matching_solves_each_loss_for_the_reference_content_distance():
    w_ref = losses.get("gram").weight
    law = {"gram": lambda e: 2 * e, "mean": lambda e: 0.5 * e**0.5}  # content distance vs effective weight
    rows = [{"style": "s", "loss": loss, "family": losses.get(loss).family, "weight": str(w),
             "style_weight": str(sw), "content": str(f(w * sw))}
            for loss, f in law.items() for w in (0.2, 1.0) for sw in (1.0, 0.3)]
    out = {r["loss"]: r for r in content_matched(rows, "gram")}
    assert out["gram"]["new_weight"] == pytest.approx(w_ref)
    assert out["mean"]["new_weight"] == pytest.approx((2 * w_ref / 0.5) ** 2)  # 0.5·√e = 2·w_ref
    assert out["mean"]["slope"] == pytest.approx(0.5)


def test_content_matching_interpolates_between_the_runs_that_bracket_the_target():
    w_ref = losses.get("gram").weight  # gram: content 2·e, so the target is 2·w_ref at style_weight 1
    runs = [("gram", w_ref, 1.0, 2 * w_ref), ("gram", w_ref, 0.5, w_ref),
            ("mean", 1.0, 1.0, 0.25), ("mean", 1.0, 4.0, 0.5), ("mean", 1.0, 16.0, 0.6)]  # a kinked curve
    rows = [{"style": "s", "loss": loss, "family": "x", "weight": str(w), "style_weight": str(sw), "content": str(c)}
            for loss, w, sw, c in runs]
    mean = next(r for r in content_matched(rows, "gram") if r["loss"] == "mean")
    slope = math.log(0.6 / 0.5) / math.log(4)  # the segment from e = 4 to 16 holds the target 0.54
    assert mean["slope"] == pytest.approx(slope)
    assert mean["new_weight"] == pytest.approx(4 * (2 * w_ref / 0.5) ** (1 / slope))


@pytest.mark.parametrize("extra,message", [
    (["--losses", "gramm"], "unknown style loss 'gramm'"),
    (["--styles", "/no/such.jpg"], "/no/such.jpg: style image not found"),
    (["--eval-photos", "/no/photos"], "/no/photos: evaluation photo folder not found"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--from-studies", "runs/a", "runs/b"], "--from-studies goes with --calibrate"),
    (["--baselines", "/no/classic.yaml"], "/no/classic.yaml: recipe config not found"),
    (["--losses", "gram", "--baselines", "tests/configs/tiny.yaml", "tests/configs/tiny.yaml"],
     "baseline config names (tiny, tiny) must differ"),
    (["--losses"], "nothing to compare"),
])
def test_bad_input_fails_before_training_with_one_line(tmp_path, capsys, extra, message):
    assert cli(["compare", "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fst compare: error:") and message in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("path", sorted((CLASSIC.parent / "ablation").glob("*.yaml")) + [CLASSIC],
                         ids=lambda p: p.stem)
def test_shipped_recipes_load_and_keep_the_budget_keys_out(path: Path) -> None:
    from fst.study.runs import SHARED_MODEL_KEYS, load_recipe

    recipe = load_recipe(path)
    assert recipe["style_loss"] and not set(recipe) & set(SHARED_MODEL_KEYS)
    assert len(recipe.get("style_layer_weights", [])) == len(recipe.get("style_layers", []))


def test_a_recipe_with_an_unknown_key_is_one_line(tmp_path, capsys) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("model:\n  style_loss: gram\n  styel_weight: 3\n")
    assert cli(["compare", "--out", str(tmp_path / "o"), "--losses", "--baselines", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "typo.yaml: unknown model keys ['styel_weight']" in err[0]
