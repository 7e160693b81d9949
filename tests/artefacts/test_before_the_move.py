"""Files written by the tree of 2026-12-04 before fst/ became one folder per layer (commit 5ef50f6):
a real `fst fit` checkpoint (tests/configs/tiny.yaml, 4 steps, Lightning's full format with optimizer
state), its TorchScript export (whose code names `__torch__.fst.export.InferenceNet`, a module path
that no longer exists), that tree's network outputs on a fixed input and its `fst stylize` PNGs.
They still load, stylize identically, export and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fst.artefacts.checkpoint import load_checkpoint, transformer_from_checkpoint
from fst.artefacts.export import export_model
from fst.artefacts.exported import load_exported
from fst.cli import main as cli

from runs import run_args

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TAG = "2026-12-04_5ef50f6"
CKPT = FIXTURES / f"checkpoint_{TAG}.ckpt"
EXPORT = FIXTURES / f"export_{TAG}.pt"
PHOTO = FIXTURES / "photo_48x36.png"
# Same code, same weights: only the order of float operations may differ between CPUs.
ATOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def recorded() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURES / f"outputs_{TAG}.pt", weights_only=True)


def test_the_export_names_the_module_path_of_before_the_move() -> None:
    import zipfile

    with zipfile.ZipFile(EXPORT) as z:
        assert any("/code/__torch__/fst/export" in n and "/artefacts/" not in n for n in z.namelist())


def test_the_checkpoint_and_the_export_compute_what_they_computed(recorded: dict[str, torch.Tensor]) -> None:
    net, meta = transformer_from_checkpoint(CKPT)
    assert meta["styles"] == ["the_scream"] and meta["global_step"] == 4
    model, exported_meta = load_exported(EXPORT)
    assert exported_meta["global_step"] == 4
    with torch.no_grad():
        torch.testing.assert_close(net(recorded["x"]), recorded["y"], rtol=0, atol=ATOL)
        torch.testing.assert_close(model(recorded["x"]), recorded["y_export"], rtol=0, atol=ATOL)
    assert recorded["y"].std() > 1e-3, "a constant output would make this comparison say nothing"


@pytest.mark.parametrize(("model", "png"), [(CKPT, "ckpt"), (EXPORT, "pt")])
def test_fst_stylize_writes_the_same_pixels(model: Path, png: str, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    assert cli(["stylize", str(PHOTO), "--model", str(model), "--out", str(out), "--dtype", "fp32",
                "--compile", "no", "--quiet"]) == 0
    before = np.asarray(Image.open(FIXTURES / f"stylized_{TAG}_{png}.png"), dtype=np.int16)
    after = np.asarray(Image.open(out), dtype=np.int16)
    assert before.shape == after.shape == (36, 48, 3)
    assert np.abs(before - after).max() <= 1  # a float rounding at a .5 boundary at most


def test_the_checkpoint_exports_again_to_the_same_network(recorded: dict[str, torch.Tensor], tmp_path: Path) -> None:
    model, _ = load_exported(export_model(CKPT, tmp_path / "again.pt", "torchscript"))
    with torch.no_grad():
        torch.testing.assert_close(model(recorded["x"]), recorded["y"], rtol=0, atol=ATOL)


@pytest.mark.slow
def test_fst_fit_resumes_the_checkpoint(tmp_path: Path) -> None:
    assert cli(run_args(tmp_path, "--ckpt_path", str(CKPT), "--trainer.max_steps", "6")) == 0
    assert load_checkpoint(tmp_path / "ckpt" / "last.ckpt")["global_step"] == 6
