"""A style corpus for universal training: `fst shards` of a folder of paintings with broken files in it
(each named on one line, none the run's problem), and the paintings joined to each photo batch by the
real loader (one per photo or one per batch; a bad painting inside a shard skipped and counted; a
corpus of bad paintings only ends in one line)."""

from __future__ import annotations

import itertools
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from fst.core.errors import FstError
from fst.data import shards
from fst.data.datamodule import ShardDataModule
from fst.data.manifest import Settings

from nets import random_photo_shards


def painting(seed: int, size: tuple[int, int]) -> Image.Image:
    """A smooth random picture: a colour grid scaled up."""
    grid = np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three paintings, one file of garbage with a painting's name, one empty file."""
    root = tmp_path_factory.mktemp("paintings") / "wikiart"
    (root / "baroque").mkdir(parents=True)
    painting(0, (60, 40)).save(root / "a.jpg")
    painting(1, (40, 52)).save(root / "baroque" / "b.png")
    painting(2, (48, 48)).save(root / "c.webp")
    (root / "baroque" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG at all")
    (root / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def style_shards(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("style_shards")
    assert shards.main([str(folder), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def photo_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_photo_shards(tmp_path_factory.mktemp("photos"), [(40, 48)] * 6, Settings("p", 3, 512, 90))


def test_fst_shards_names_each_broken_painting_and_keeps_the_rest(folder, tmp_path, capsys):
    assert shards.main([str(folder), "--out", str(tmp_path), "--quiet", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    skipped = sorted(line.split(":")[0] for line in captured.err.splitlines() if line.startswith("skipped "))
    assert skipped == ["skipped baroque/broken.jpg", "skipped empty.png"], captured.err
    assert "3 samples in 1 shards" in captured.out


def module(photos: Path, paintings: Path | str, draw: str = "image") -> ShardDataModule:
    dm = ShardDataModule(str(photos), val_photos=None, crop_size=32, batch_size=3, num_workers=0, resampled=True,
                         epoch_length=4, style_shards=str(paintings), style_draw=draw, shuffle_buffer=4)
    dm.check_inputs()
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("draw, count", [("image", 3), ("batch", 1)])
def test_each_batch_carries_paintings_cropped_as_the_photos(photo_shards, style_shards, draw, count):
    batches = list(module(photo_shards, style_shards, draw).train_dataloader())
    assert len(batches) == 4
    for b in batches:
        assert b["image"].shape == (3, 3, 32, 32) and b["style"].shape == (count, 3, 32, 32)
        assert b["style"].dtype == torch.float32 and 0 <= b["style"].min() and b["style"].max() <= 1
    # drawn at random: not the same painting crop every time
    assert len({tuple(b["style"][0].flatten()[:64].tolist()) for b in batches}) > 1


def corrupt(src: Path, out: Path, bad: int | None) -> Path:
    """`src`'s shard with the JPEG of sample `bad` (every sample if None) cut in half, in `out`."""
    shard = next(src.glob("*.tar"))
    with tarfile.open(shard) as tar:
        samples: dict[str, dict] = {}
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            samples.setdefault(key, {"__key__": key})[ext] = tar.extractfile(m).read()
    out.mkdir()
    with wds.TarWriter(str(out / shard.name), encoder=False) as sink:
        for i, key in enumerate(sorted(samples)):
            if bad is None or i == bad:
                samples[key]["jpg"] = samples[key]["jpg"][: len(samples[key]["jpg"]) // 2]
            sink.write(samples[key])
    return out


def test_a_bad_painting_in_a_shard_is_skipped_and_counted(photo_shards, style_shards, tmp_path):
    paintings = corrupt(style_shards, tmp_path / "one_bad", bad=1)
    with pytest.warns(UserWarning, match="skipping bad sample"):
        batches = list(itertools.islice(module(photo_shards, paintings).train_dataloader(), 4))
    assert len(batches) == 4 and all(b["style"].shape[0] == 3 for b in batches)
    assert sum(int(b["skipped"]) for b in batches) >= 1  # 12 draws from 3 paintings: the bad one came up


def test_a_corpus_of_bad_paintings_only_ends_in_one_line(photo_shards, style_shards, tmp_path):
    paintings = corrupt(style_shards, tmp_path / "all_bad", bad=None)
    with pytest.warns(UserWarning), pytest.raises(FstError, match=r"no decodable image in 100 samples in a row"):
        list(module(photo_shards, paintings).train_dataloader())


def test_missing_style_shards_are_one_line_naming_the_option(photo_shards, tmp_path):
    with pytest.raises(FstError, match=r"^style_shards: missing shard .*nowhere.*fst shards PAINTINGS_FOLDER"):
        module(photo_shards, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FstError, match=r"^style_shards: no \*\.tar shards in"):
        module(photo_shards, tmp_path / "empty")


def test_an_unknown_draw_is_refused():
    with pytest.raises(FstError, match="unknown style_draw 'photo'"):
        ShardDataModule(val_photos=None, style_draw="photo")
