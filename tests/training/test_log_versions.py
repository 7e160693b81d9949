"""Runs that share one logs folder each get a version folder of their own (fst.training.run_folder):
the folder is claimed by mkdir, not taken from a listing that another run may have made at the
same moment. The race is made deterministic by handing each run the listing both would have seen
had they started together (no version yet), instead of by timing two processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from fst.cli import main as cli
from fst.training.run_folder import claim_log_versions, claim_version

from runs import TINY


def test_a_version_another_run_claimed_after_our_listing_is_not_taken(tmp_path: Path) -> None:
    root = tmp_path / "tb"
    assert claim_version(root, 0) == 0  # run A listed an empty folder and claimed version_0
    assert claim_version(root, 0) == 1  # run B had listed it before A's claim: it gets the next one
    (root / "version_2").write_text("")  # whatever holds the name, it is not ours
    assert claim_version(root, 1) == 3
    assert sorted(p.name for p in root.iterdir()) == ["version_0", "version_1", "version_2", "version_3"]


def args(root: Path, checkpoints: str) -> list[str]:
    return ["fit", "--config", TINY, "--trainer.default_root_dir", str(root), "--trainer.logger", "TensorBoardLogger",
            "--trainer.logger.save_dir", str(root), "--trainer.logger.name", "tb",
            "--checkpoint.dirpath", str(root / checkpoints), "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"]


def test_two_runs_into_one_logs_folder_keep_their_own_logs_and_config(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen: two `fst fit` with one default_root_dir and two checkpoint folders, started together,
    both logged into tb/version_0, and one run's config.yaml was lost (2 of 5 tries)."""
    # Both runs see the listing of a folder with no version yet, as when they start at once.
    monkeypatch.setattr(TensorBoardLogger, "_get_next_version", lambda self: 0)
    for checkpoints in ("ckpt_a", "ckpt_b"):
        assert cli(args(tmp_path, checkpoints)) == 0
    versions = sorted((tmp_path / "tb").iterdir())
    assert [v.name for v in versions] == ["version_0", "version_1"]
    saved = [yaml.safe_load((v / "config.yaml").read_text())["checkpoint"]["dirpath"] for v in versions]
    assert saved == [str(tmp_path / "ckpt_a"), str(tmp_path / "ckpt_b")]
    assert all(len(list(v.glob("events.out.tfevents.*"))) == 1 for v in versions)


def test_each_numbering_logger_gets_a_claimed_version_and_a_set_one_is_kept(tmp_path: Path) -> None:
    (tmp_path / "tb" / "version_0").mkdir(parents=True)
    numbered, csv = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    named = TensorBoardLogger(tmp_path, name="tb", version="mine")
    claim_log_versions([numbered, csv, named])
    assert (numbered.version, csv.version, named.version) == (1, 0, "mine")
    assert numbered.log_dir == str(tmp_path / "tb" / "version_1") and (tmp_path / "tb" / "version_1").is_dir()
    assert (tmp_path / "csv" / "version_0").is_dir() and not (tmp_path / "tb" / "mine").exists()
