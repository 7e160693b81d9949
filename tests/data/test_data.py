"""The training loader on real shards: batch contract, bad samples, rank/worker splitting,
resampled epochs, determinism, and a real Lightning Trainer run."""

from __future__ import annotations

import shutil
import tarfile
from contextlib import nullcontext
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import webdataset as wds
from PIL import Image

from fst.core.errors import FstError
from fst.data.datamodule import ShardDataModule
from fst.data.manifest import Settings
from fst.data.specs import resolve_shards

from nets import random_photo_shards

N_IMAGES, SHARD_SIZE = 16, 4


def _epoch(dm: ShardDataModule) -> list[dict]:
    return list(dm.train_dataloader())


def _keys(batches: list[dict]) -> list[str]:
    return [k for b in batches for k in b["key"]]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 photos (40x56 px, short side 40) in 4 shards of 4, made by the real builder."""
    sizes = [(56, 40) if i % 2 else (40, 56) for i in range(N_IMAGES)]
    return random_photo_shards(tmp_path_factory.mktemp("data"), sizes, Settings("t", SHARD_SIZE, 512, 90))


@pytest.fixture(scope="module")
def corrupt_shards(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The same shards, with the JPEG of one sample in the third shard cut in half."""
    out = tmp_path_factory.mktemp("corrupt")
    for p in shards.glob("*.tar"):
        shutil.copy(p, out / p.name)
    victim = out / "t-000002.tar"
    with tarfile.open(victim) as tar:
        samples: dict[str, dict] = {}
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            samples.setdefault(key, {"__key__": key})[ext] = tar.extractfile(m).read()
    bad_key = sorted(samples)[1]
    samples[bad_key]["jpg"] = samples[bad_key]["jpg"][: len(samples[bad_key]["jpg"]) // 2]
    with wds.TarWriter(str(victim), encoder=False) as sink:
        for key in sorted(samples):
            sink.write(samples[key])
    return out, bad_key


def test_batches_follow_the_contract(shards: Path) -> None:
    dm = ShardDataModule(str(shards), val_photos=None, crop_size=32, batch_size=4, num_workers=0)
    dm.setup("fit")
    batches = _epoch(dm)
    assert len(batches) == N_IMAGES // 4
    for b in batches:
        assert b["image"].shape == (4, 3, 32, 32) and b["image"].dtype == torch.float32
        assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0 and b["image"].std() > 0.1
        assert b["skipped"].dtype == torch.long and b["skipped"].shape == () and b["skipped"] == 0
        assert len(b["key"]) == 4
    assert sorted(_keys(batches)) == [f"{i:09d}" for i in range(N_IMAGES)]


def test_short_side_below_crop_is_resized_up_to_the_crop(shards: Path) -> None:
    dm = ShardDataModule(str(shards), val_photos=None, crop_size=64, batch_size=3, num_workers=0, flip=False)
    dm.setup("fit")
    batches = _epoch(dm)
    assert [b["image"].shape for b in batches] == [(3, 3, 64, 64)] * 5 + [(1, 3, 64, 64)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_sample_is_skipped_and_counted(corrupt_shards: tuple[Path, str], num_workers: int) -> None:
    folder, bad_key = corrupt_shards
    dm = ShardDataModule(str(folder), val_photos=None, crop_size=32, batch_size=4, num_workers=num_workers)
    dm.setup("fit")
    with pytest.warns(UserWarning, match="skipping bad sample") if num_workers == 0 else nullcontext():
        batches = _epoch(dm)
    keys = _keys(batches)
    assert sum(int(b["skipped"]) for b in batches) == 1
    assert len(keys) == len(set(keys)) == N_IMAGES - 1 and bad_key not in keys


def test_finite_epoch_two_ranks_two_workers_sees_every_sample_once(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    for rank in (0, 1):
        # webdataset's split_by_node reads RANK/WORLD_SIZE (torch.distributed is not initialised).
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dm = ShardDataModule(str(shards), val_photos=None, crop_size=16, batch_size=3, num_workers=2)
        dm.setup("fit")
        keys = _keys(_epoch(dm))
        assert len(keys) == N_IMAGES // 2  # 2 of the 4 shards per rank
        seen += keys
    assert sorted(seen) == [f"{i:09d}" for i in range(N_IMAGES)]


def test_resampled_mode_yields_the_epoch_length_on_every_rank(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dm = ShardDataModule(str(shards), val_photos=None, crop_size=16, batch_size=3, num_workers=2, resampled=True, epoch_length=7)
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert len(loader) == 7
        for _ in range(2):  # two epochs, both exactly 7 full batches
            assert [b["image"].shape[0] for b in loader] == [3] * 7


def test_resampled_without_epoch_length_is_refused() -> None:
    with pytest.raises(FstError, match="epoch_length"):
        ShardDataModule(resampled=True)


@pytest.mark.parametrize("resampled", [False, True])
def test_same_seed_same_batches_and_each_epoch_differs(shards: Path, resampled: bool) -> None:
    def run(seed: int) -> tuple[list[dict], list[dict]]:
        dm = ShardDataModule(
            str(shards), val_photos=None, crop_size=24, batch_size=4, num_workers=2, seed=seed,
            resampled=resampled, epoch_length=4 if resampled else None,
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        return list(loader), list(loader)

    a1, a2 = run(0)
    b1, b2 = run(0)
    c1, _ = run(1)
    assert _keys(a1) == _keys(b1) and _keys(a2) == _keys(b2)
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a1 + a2, b1 + b2))
    assert _keys(a1) != _keys(a2) and _keys(a1) != _keys(c1)
    if not resampled:  # a finite epoch is a permutation of the whole set
        assert sorted(_keys(a2)) == sorted(_keys(a1)) == [f"{i:09d}" for i in range(N_IMAGES)]


def test_shard_specs_and_missing_shards(shards: Path, tmp_path: Path) -> None:
    tars = sorted(str(p) for p in shards.glob("*.tar"))
    assert resolve_shards(str(shards)) == tars
    assert resolve_shards(f"{shards}/t-{{000000..000003}}.tar") == tars
    assert resolve_shards(f"{tars[0]}, {shards}/t-{{000001,000002}}.tar") == tars[:3]
    assert resolve_shards("pipe:aws s3 cp s3://b/x-{0..1}.tar -") == ["pipe:aws s3 cp s3://b/x-0.tar -", "pipe:aws s3 cp s3://b/x-1.tar -"]
    with pytest.raises(FstError, match=r"missing shard .*t-000004\.tar \(and 1 more\)"):
        resolve_shards(f"{shards}/t-{{000000..000005}}.tar")
    with pytest.raises(FstError, match="no \\*.tar shards"):
        resolve_shards(str(tmp_path))
    dm = ShardDataModule(str(tmp_path / "nope-{000000..000001}.tar"), val_photos=None)
    with pytest.raises(FstError, match="nope-000000.tar"):
        dm.setup("fit")


def test_val_loader_gives_fixed_centre_crops(tmp_path: Path) -> None:
    for i, size in enumerate([(60, 40), (40, 70), (50, 50)]):
        Image.new("RGB", size, (i * 100, 20, 30)).save(tmp_path / f"v{i}.png")
    dm = ShardDataModule(val_photos=str(tmp_path), val_size=32, val_count=2, batch_size=4)
    dm.setup("validate")
    (batch,) = list(dm.val_dataloader())
    assert batch["image"].shape == (2, 3, 32, 32) and batch["skipped"] == 0 and batch["key"] == ["v0", "v1"]
    assert batch["image"][1, 0, 0, 0].item() == pytest.approx(100 / 255, abs=1e-3)


class _TinyModel(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.shapes: list[tuple[int, ...]] = []
        self.val_shapes: list[tuple[int, ...]] = []
        self.skipped = 0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.shapes.append(tuple(batch["image"].shape))
        self.skipped += int(batch["skipped"])
        self.log("data/skipped", float(self.skipped))
        return (self.conv(batch["image"]) - batch["image"]).pow(2).mean()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_shapes.append(tuple(batch["image"].shape))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_datamodule_feeds_a_lightning_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FST_CACHE", str(tmp_path / "cache"))  # "sample" builds its shards here
    dm = ShardDataModule(crop_size=32, val_size=32, batch_size=2, num_workers=1, val_count=2)
    model = _TinyModel()
    trainer = pl.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
        num_sanity_val_steps=0, default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2
    assert model.shapes == [(2, 3, 32, 32)] * 2
    assert model.skipped == 0
    assert (tmp_path / "cache" / "sample_shards" / "manifest.json").exists()
    trainer.validate(model, datamodule=dm, verbose=False)
    assert model.val_shapes == [(2, 3, 32, 32)]


def test_resumed_run_continues_with_new_data_not_a_replay(shards: Path) -> None:
    def first_keys(state: dict | None) -> list[str]:
        dm = ShardDataModule(str(shards), val_photos=None, crop_size=24, batch_size=4, num_workers=0,
                             resampled=True, epoch_length=4)
        if state is not None:
            dm.load_state_dict(state)
        dm.setup("fit")
        return _keys(list(dm.train_dataloader()))

    fresh, resumed, resumed_again = first_keys(None), first_keys({"global_step": 40}), first_keys({"global_step": 40})
    assert resumed != fresh  # not the batches the first run already trained on
    assert resumed == resumed_again  # still reproducible
    assert ShardDataModule(str(shards)).state_dict()["global_step"] == 0


def test_decode_on_device_keeps_the_contract_and_counts_bad_samples(corrupt_shards: tuple[Path, str]) -> None:
    """decode_on_device: workers pass raw JPEG bytes, the datamodule decodes them in
    on_before_batch_transfer (here on the CPU device; nvJPEG on CUDA)."""
    folder, bad_key = corrupt_shards
    dm = ShardDataModule(str(folder), val_photos=None, crop_size=24, batch_size=4, num_workers=0, decode_on_device=True)
    dm.setup("fit")
    raw_batches = _epoch(dm)
    assert all("jpeg" in b and "image" not in b for b in raw_batches)
    with pytest.warns(UserWarning, match="skipping bad sample"):
        batches = [dm.on_before_batch_transfer(b, 0) for b in raw_batches]
    for b in batches:
        assert b["image"].dtype == torch.float32 and b["image"].shape[1:] == (3, 24, 24)
        assert 0 <= b["image"].min() and b["image"].max() <= 1 and len(b["key"]) == b["image"].shape[0]
    keys = _keys(batches)
    assert sum(int(b["skipped"]) for b in batches) == 1 and bad_key not in keys
    assert len(keys) == len(set(keys)) == N_IMAGES - 1
