"""`fst stylize --color-match`: a universal network's output given the painting's RGB statistics (per
channel mean/std, or mean and 3x3 covariance), over the whole output (tiles joined), before
--strength; refused in one line where there is no painting to read or with --preserve-color."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fst.artefacts.universal_checkpoint import payload
from fst.cli import main as cli
from fst.io.style_images import load_painting
from fst.models.universal import UniversalNet
from fst.stylize.colour_match import ColourMatch, match, mixed, moments
from fst.stylize.command import default_overlap
from fst.stylize.image import Options, finished
from fst.stylize.stylizer import Stylizer

from crafted import one_line_error
from nets import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

PAINTING = Path(__file__).resolve().parents[2] / "fst" / "assets" / "styles" / "arcimboldo_spring.jpg"
STYLE_SIZE = 64


def image(seed: int, shape: tuple[int, ...] = (1, 3, 24, 32)) -> torch.Tensor:
    """Colours with correlated channels (a shared term), so the covariance has off-diagonal terms."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(shape, generator=g)
    return 0.5 * base + 0.5 * base[:, :1] * torch.rand(3, generator=g)[:, None, None]


def test_covariance_gives_the_targets_mean_and_covariance() -> None:
    target = moments(image(1))[0]
    out = match(image(2, (2, 3, 24, 32)), target, "covariance")
    for b in range(2):
        torch.testing.assert_close(moments(out[b:b + 1])[0], target, atol=1e-6, rtol=1e-4)


def test_mean_std_gives_each_channels_mean_and_std_and_only_those() -> None:
    target, x = moments(image(1))[0], image(2)
    got = moments(match(x, target, "mean-std"))[0]
    torch.testing.assert_close(got[:3], target[:3], atol=1e-6, rtol=1e-4)  # means
    diag = [3, 7, 11]  # the covariance's diagonal: each channel's variance
    torch.testing.assert_close(got[diag], target[diag], atol=1e-6, rtol=1e-4)
    # each channel scaled alone: the output's correlations stay the photo's, not the painting's
    corr = lambda m: m[4] / (m[3] * m[7]).sqrt()  # noqa: E731  (red-green)
    assert corr(got) == pytest.approx(float(corr(moments(x)[0])), abs=1e-6)
    assert abs(float(corr(got) - corr(target))) > 1e-3


def test_a_flat_output_is_moved_not_divided_by_zero() -> None:
    out = match(torch.full((1, 3, 8, 8), 0.3), moments(image(1))[0], "covariance")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.mean((2, 3))[0], moments(image(1))[0, :3].float(), atol=1e-5, rtol=0)


def test_a_mix_targets_the_pooled_pixels() -> None:
    a, b = image(1), image(2)
    stats = torch.cat([moments(a), moments(b)])
    torch.testing.assert_close(mixed(stats, torch.tensor([0.0, 1.0])), stats[1])
    torch.testing.assert_close(mixed(stats, torch.tensor([0.5, 0.5])), moments(torch.cat([a, b], -1))[0])


def test_strength_blends_the_matched_output_with_the_photo() -> None:
    photo, out = image(3), image(4)
    colour = ColourMatch("covariance", moments(image(1)))
    want = 0.5 * match(out, colour.stats[0], "covariance") + 0.5 * photo
    got = finished(out.clone(), photo, Options(strength=0.5, colour=colour))
    assert (got.int() - want.mul(255).round().clamp(0, 255).int()).abs().max() <= 1


@pytest.fixture(scope="module")
def universal_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("colour") / "inter.ckpt"
    torch.save(payload(UniversalNet("inter", "relu2_1", 0.25).eval(), global_step=1), path)
    return path


def stylize(ckpt: Path, photo: Path, out: Path, *extra: str) -> np.ndarray:
    argv = ["stylize", str(photo), "--model", str(ckpt), "--style-image", str(PAINTING), "--style-size",
            str(STYLE_SIZE), "--device", "cpu", "--dtype", "fp32", "--quiet", "--out", str(out), *extra]
    assert cli(argv) == 0
    return np.asarray(Image.open(out)).astype(np.float64) / 255


def rgb_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = x.reshape(-1, 3)
    return flat.mean(0), np.cov(flat.T, bias=True)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "in.png"
    pixels = image(5, (1, 3, 80, 96))[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    Image.fromarray(pixels).save(path)
    return path


def test_fst_stylize_matches_the_whole_output_tiled_or_not(universal_ckpt: Path, photo: Path, tmp_path: Path) -> None:
    """The written image is the network's whole output (tiles joined) matched to the painting's pixels at
    --style-size, in 8 bits: statistics of each tile alone would give another image."""
    target = moments(load_painting(PAINTING, STYLE_SIZE, 1))[0]
    stylizer = Stylizer(str(universal_ckpt), "cpu", "fp32", style_images=[PAINTING], style_size=STYLE_SIZE)
    x = torch.from_numpy(np.array(Image.open(photo))).permute(2, 0, 1)[None].float() / 255
    for tile in (None, 48):
        extra = ["--tile", str(tile)] if tile else []
        got = stylize(universal_ckpt, photo, tmp_path / f"colour{tile}.png", "--color-match", "covariance", *extra)
        network = stylizer(x, tile, default_overlap(tile))
        want = match(network, target, "covariance")[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).numpy() / 255
        assert np.abs(got - want).max() <= 1 / 255 + 1e-9
        assert np.abs(rgb_moments(got)[0] - target[:3].numpy()).max() < 0.01  # the painting's mean (clamped a little)
        plain = stylize(universal_ckpt, photo, tmp_path / f"plain{tile}.png", *extra)
        assert np.abs(rgb_moments(plain)[0] - target[:3].numpy()).max() > 0.05  # the network alone is not there
        if tile:
            per_tile = match(network[..., :48], target, "covariance")[0].permute(1, 2, 0).numpy()
            assert np.abs(got[:, :48] - per_tile).max() > 2 / 255  # one tile's own statistics: not what is written


@pytest.mark.parametrize("case", ["preserve", "per-painting", "no painting", "bad mode"])
def test_bad_combinations_are_one_line(case: str, universal_ckpt: Path, photo: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    common = ["stylize", str(photo), "--device", "cpu", "--out", str(tmp_path / "o.png")]
    style = ["--style-image", str(PAINTING), "--style-size", str(STYLE_SIZE)]
    argv = {"preserve": [*common, "--model", str(universal_ckpt), *style, "--color-match", "mean-std",
                         "--preserve-color"],
            "per-painting": [*common, "--model", str(save_checkpoint(tmp_path / "pp.ckpt")), "--color-match",
                             "covariance"],
            "no painting": [*common, "--model", str(universal_ckpt), "--color-match", "covariance"],
            "bad mode": [*common, "--model", str(universal_ckpt), *style, "--color-match", "lab"]}
    err = one_line_error(argv[case], capsys)
    assert ("--style-image" if case == "no painting" else "--color-match") in err
    assert not (tmp_path / "o.png").exists()


def test_each_clip_frame_is_matched_as_a_whole(universal_ckpt: Path) -> None:
    """Clips: every frame of a batch gets the painting's statistics from its own whole output."""
    from fst.stylize.video import stylize_batch

    stylizer = Stylizer(str(universal_ckpt), "cpu", "fp32", style_images=[PAINTING], style_size=STYLE_SIZE)
    colour = ColourMatch("covariance", moments(load_painting(PAINTING, STYLE_SIZE, 1)))
    frames = [image(seed, (1, 3, 48, 64))[0].permute(1, 2, 0).mul(255).round().byte().numpy() for seed in (6, 7)]
    got = stylize_batch(stylizer, frames, None, Options(colour=colour)).astype(np.float64) / 255
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    want = match(stylizer(x), colour.stats[0], "covariance").permute(0, 2, 3, 1).mul(255).round().clamp(0, 255) / 255
    assert np.abs(got - want.numpy()).max() <= 1 / 255 + 1e-9
    for frame in got:
        assert np.abs(rgb_moments(frame)[0] - colour.stats[0, :3].numpy()).max() < 0.01


def test_fst_sheet_cells_are_matched_as_fst_stylize_writes_them(universal_ckpt: Path, photo: Path, tmp_path: Path) -> None:
    """`fst sheet --color-match`: its cell is `fst stylize --color-match`'s image, shrunk to the cell."""
    written = stylize(universal_ckpt, photo, tmp_path / "one.png", "--color-match", "covariance", "--max-size", "64")
    assert cli(["sheet", str(photo), "--model", str(universal_ckpt), "--style-image", str(PAINTING), "--style-size",
                str(STYLE_SIZE), "--device", "cpu", "--dtype", "fp32", "--quiet", "--cell", "64", "--max-size", "64",
                "--color-match", "covariance", "--out", str(tmp_path / "sheet.png")]) == 0
    cells = np.asarray(Image.open(tmp_path / "sheet.png").convert("RGB")).astype(np.float64) / 255
    h, w = written.shape[:2]
    found = [np.abs(cells[y:y + h, x:x + w] - written).max() for y in range(cells.shape[0] - h + 1)
             for x in range(cells.shape[1] - w + 1)]
    assert min(found) <= 1 / 255 + 1e-9
