"""A shard's file name is a path, never a URL: a file named like a `pipe:` command or a
`scheme:` URL in the folder being read is read as the shard it is, and no command runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fst.core.errors import FstError
from fst.data.datamodule import ShardDataModule
from fst.data.manifest import MANIFEST, Settings, read_manifest
from fst.data.specs import resolve_shards

from nets import random_photo_shards

HOSTILE = ("pipe:touch pwned;.tar", "http:pwned.tar", "c:pwned.tar")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 photos in 2 real shards of 2, with their manifest."""
    return random_photo_shards(tmp_path_factory.mktemp("names"), [(40, 40)] * 4, Settings("t", 2, 512, 90))


@pytest.fixture
def hostile_folder(built: Path, tmp_path: Path) -> Path:
    """A shard folder whose one shard is t-000000.tar and whose others are real shards under
    names a scheme parser would take for a command or a URL."""
    folder = tmp_path / "shards"
    folder.mkdir()
    shutil.copy(built / "t-000000.tar", folder / "t-000000.tar")
    for name in HOSTILE:
        shutil.copy(built / "t-000001.tar", folder / name)
    return folder


@pytest.mark.parametrize("spec", [".", "./", "{folder}"])
def test_a_listed_shard_named_like_a_command_is_read_as_a_file(hostile_folder: Path, spec: str,
                                                               monkeypatch: pytest.MonkeyPatch, recwarn) -> None:
    """Seen: with `train_shards: .` the file `pipe:touch pwned;.tar` ran `touch pwned` in a shell."""
    monkeypatch.chdir(hostile_folder)
    dm = ShardDataModule(spec.format(folder=hostile_folder), val_photos=None, crop_size=32, batch_size=2,
                         num_workers=0)
    dm.setup("fit")
    keys = sorted(k for b in dm.train_dataloader() for k in b["key"])
    assert not (hostile_folder / "pwned").exists()
    assert not [w for w in recwarn if "skipping" in str(w.message)]
    assert dm.urls == sorted(str(hostile_folder / n) for n in ("t-000000.tar", *HOSTILE))
    # every hostile name was read as the real shard it is: its two samples, once per copy
    assert keys == sorted(["000000000", "000000001"] + ["000000002", "000000003"] * len(HOSTILE))


def test_a_local_shard_typed_with_a_colon_is_a_file_too(hostile_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative name typed in the spec without `pipe:` or `://` is a path, whatever its colons."""
    monkeypatch.chdir(hostile_folder)
    assert resolve_shards("c:pwned.tar, t-{000000..000000}.tar") == [
        str(hostile_folder / "c:pwned.tar"), str(hostile_folder / "t-000000.tar")]


def test_a_manifest_cannot_name_a_shard_a_command(built: Path, tmp_path: Path) -> None:
    """Shard names in a manifest are the ones fst gives each index, so none can be a `pipe:` URL."""
    manifest = json.loads((built / MANIFEST).read_text())
    manifest["shards"][0]["name"] = "pipe:touch pwned;.tar"
    path = tmp_path / MANIFEST
    path.write_text(json.dumps(manifest))
    with pytest.raises(FstError, match="not a manifest fst wrote.*pipe:touch pwned"):
        read_manifest(path)
