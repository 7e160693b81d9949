"""One folder per run: the configs name only trainer.default_root_dir, and the logger's save_dir and
the checkpoint dirpath follow it (fst.training.run_folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fst.cli import main as cli
from fst.training.run_folder import follow_root

from runs import ROOT

QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
# The quickstart made as small as the tests' tiny run: its folders are what is checked, not its training.
SMALL = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--checkpoint.every_n_train_steps", "2",
         "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false",
         "--model.channels", "8", "--model.n_residual", "1", "--model.style_size", "64",
         "--data.crop_size", "32", "--data.val_size", "32", "--data.num_workers", "0", "--data.val_count", "2"]


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_default_root_dir_alone_moves_logs_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / ".")
    run = tmp_path / "elsewhere"
    assert cli(["fit", "--config", QUICKSTART, *SMALL, "--trainer.default_root_dir", str(run)]) == 0
    assert not (tmp_path / "runs").exists()  # nothing in the config's own folder
    written = files(run)
    assert {"checkpoints/last.ckpt", "checkpoints/step0000002.ckpt", "tensorboard/version_0/config.yaml"} <= written
    assert any(f.startswith("tensorboard/version_0/events.out.tfevents.") for f in written)
    saved = yaml.safe_load((run / "tensorboard/version_0/config.yaml").read_text())
    assert saved["checkpoint"]["dirpath"] == str(run / "checkpoints")  # the saved config records where it went
    assert saved["trainer"]["logger"]["init_args"]["save_dir"] == str(run)


@pytest.mark.slow
def test_quickstart_still_writes_to_runs_quickstart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `make demo` and the README read runs/quickstart/{tensorboard,checkpoints}
    assert cli(["fit", "--config", QUICKSTART, *SMALL]) == 0
    written = files(tmp_path / "runs" / "quickstart")
    assert {"checkpoints/last.ckpt", "tensorboard/version_0/config.yaml"} <= written
    assert {p.name for p in tmp_path.iterdir()} == {"runs"}


def namespace(**kw):
    from jsonargparse import Namespace
    return Namespace(**kw)


def test_an_explicit_folder_is_kept():
    logger = namespace(class_path="pytorch_lightning.loggers.TensorBoardLogger",
                       init_args=namespace(save_dir="logs_here", name="tb"))
    config = namespace(trainer=namespace(default_root_dir="root", logger=[logger]),
                       checkpoint=namespace(dirpath="ckpts_here"))
    follow_root(config)
    assert config.checkpoint.dirpath == "ckpts_here" and logger.init_args.save_dir == "logs_here"
    logger.init_args.save_dir, config.checkpoint.dirpath = None, None
    follow_root(config)
    assert config.checkpoint.dirpath == str(Path("root") / "checkpoints") and logger.init_args.save_dir == "root"


def test_no_root_leaves_lightning_defaults():
    config = namespace(trainer=namespace(default_root_dir=None, logger=True), checkpoint=namespace(dirpath=None))
    follow_root(config)
    assert config.checkpoint.dirpath is None
